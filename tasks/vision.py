"""The standard vision tasks: `resnet-cifar10` and `vit-tiny-cifar10`, timm models trained on CIFAR-10.

Both models come from `timm.create_model` (pretrained=False: nothing is downloaded); only the input end is
adapted to 32x32 images.

- resnet-cifar10 / full: timm `resnet18` with the usual CIFAR stem (the 7x7 stride-2 conv becomes a 3x3
  stride-1 conv, the max-pool is removed), batch 512, 40 epochs, target test accuracy 0.94.
- resnet-cifar10 / smoke: the same timm ResNet class and 32x32 stem with one BasicBlock per stage, stage widths
  16/32/64/128 instead of 2 blocks and 64/128/256/512, and a 16-wide stem; batch 32, 40 steps on 2,048
  training and 256 test images; curvature batch 32 images (512 for full).
- vit-tiny-cifar10 / full: timm `vit_tiny_patch16_224` built with img_size=32, patch_size=4 (64 patches +
  class token), embed dim 192, depth 12, 3 heads; batch 512, 100 epochs, target test accuracy 0.80.
- vit-tiny-cifar10 / smoke: the same builder with embed dim 64, depth 2, 2 heads, MLP ratio 2, batch 32,
  40 steps on the same small split.

Splits: the last tenth (5,000 images) of the official training files are the validation set (targets and tuning look
at it); the official test batch is only reported. Full trains on the first 45,000; smoke on the first 2,048,
validates on the first 256 of the held-out 5,000 and tests on the first 256 test images.

Data: the official CIFAR-10 from --data-dir (see cifar10.py), or, with `synthetic=True`, a deterministic
synthetic CIFAR-shaped set labelled "synthetic-cifar10". The diagnostics suite runs the smoke presets on the
synthetic set (declared in `suite_options`), because the real data cannot ship with optbench. Smoke on real
data uses the first 2,048 training and 256 test images and is labelled "cifar10-subset".

Options: `synthetic` (bool), `amp="bf16"` (autocast of the training forward pass), `channels_last` (bool),
both meant for CUDA; `fused_attn` (ViT, default False): timm's fused attention kernels have no double
backward, which Sophia-H (create_graph=True) and the Hessian-vector products of the geometry metrics need,
so the ViT uses timm's plain attention unless a run asks for speed over those.

There is no learning-rate schedule: the engine builds the optimizer from its hyperparameters alone, so every
optimizer runs at its constant learning rate for the budget. The targets are what a tuned schedule reaches;
with a constant rate they measure how close an optimizer gets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optbench import Preset, Target, TaskSpec, hookimpl

from .cifar10 import ImageSet, load_cifar10, synthetic_cifar10
from .classifier import ClassifierTask
from .image_batches import DeviceImages


@dataclass(frozen=True)
class VisionConfig:
    budget: int
    eval_every: int
    batch_size: int
    n_train: int | None  # None: the whole training set
    n_test: int | None  # also the validation set's size (None: all 5,000 held-out training images)
    target_accuracy: float
    curvature_size: int  # images in the fixed batch the geometry metrics take HVPs on


SMOKE_DATA = {"n_train": 2048, "n_test": 256, "curvature_size": 32}
CONFIGS = {
    "resnet-cifar10": {
        "smoke": VisionConfig(budget=40, eval_every=20, batch_size=32, **SMOKE_DATA, target_accuracy=0.5),
        "full": VisionConfig(budget=40 * 97, eval_every=97, batch_size=512, n_train=None, n_test=None,
                             target_accuracy=0.94, curvature_size=512),
    },
    "vit-tiny-cifar10": {
        "smoke": VisionConfig(budget=40, eval_every=20, batch_size=32, **SMOKE_DATA, target_accuracy=0.5),
        "full": VisionConfig(budget=100 * 97, eval_every=2 * 97, batch_size=512, n_train=None, n_test=None,
                             target_accuracy=0.80, curvature_size=512),
    },
}
SYNTHETIC_FULL = (50_000, 10_000)
#: the fraction at the end of the official training files held out as the validation set (5,000 of 50,000)
VAL_FRACTION = 10


def resnet_cifar(preset: str, num_classes: int = 10) -> nn.Module:
    """timm ResNet with a 32x32 stem: 3x3 stride-1 first conv, no max-pool.

    smoke: timm's plain stem is always 64 wide, so the scaled model asks for timm's deep stem with stem_width 8
    (16 output channels) only to get a 16-wide stem; that stem's convs are replaced like the plain one's.
    """
    import timm  # imported on first build, so listing tasks does not pay for timm

    scaled: dict[str, Any] = {}
    if preset == "smoke":
        scaled = {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128), "stem_type": "deep", "stem_width": 8}
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, **scaled)
    width = model.bn1.num_features
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm inits its convs
    model.maxpool = nn.Identity()
    return model


def vit_tiny_cifar(preset: str, num_classes: int = 10, fused_attn: bool = False) -> nn.Module:
    """timm vit_tiny_patch16_224 on 32x32 inputs with 4x4 patches."""
    import timm

    scaled = {"embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0} if preset == "smoke" else {}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4,
                              num_classes=num_classes, **scaled)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused_attn
    return model


@functools.lru_cache(maxsize=2)
def _synthetic(n_train: int, n_test: int, n_val: int) -> ImageSet:
    return synthetic_cifar10(n_train, n_test, n_val=n_val)


@functools.lru_cache(maxsize=2)
def _real(data_dir: str) -> ImageSet:
    return load_cifar10(data_dir)


def cifar_data(cfg: VisionConfig, data_dir: Path | str | None, synthetic: bool) -> ImageSet:
    """The images a preset trains, validates and tests on: synthetic when asked, else the official files (errors
    if absent), whose last 5,000 training images become the validation set."""
    if synthetic:
        data = _synthetic(cfg.n_train or SYNTHETIC_FULL[0], cfg.n_test or SYNTHETIC_FULL[1],
                          cfg.n_test or SYNTHETIC_FULL[0] // VAL_FRACTION)
        train_x, train_y, val_x, val_y = data.train_x, data.train_y, data.val_x, data.val_y
    else:
        data = _real(str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None)
        cut = len(data.train_y) - max(1, len(data.train_y) // VAL_FRACTION)
        train_x, train_y = data.train_x[:cut], data.train_y[:cut]
        val_x, val_y = data.train_x[cut:], data.train_y[cut:]
    assert val_x is not None and val_y is not None
    n_tr, n_te = cfg.n_train or len(train_y), cfg.n_test or len(data.test_y)
    n_va = cfg.n_test or len(val_y)
    return ImageSet(data.name if synthetic else "cifar10", train_x[:n_tr], train_y[:n_tr],
                    data.test_x[:n_te], data.test_y[:n_te], data.num_classes, val_x=val_x[:n_va], val_y=val_y[:n_va])


def _spec(name: str, make_model: Any, summary: str, paper: str, full_description: str) -> TaskSpec:
    def build(preset: str, seed: int, device: torch.device | str, data_dir: Any = None, *, synthetic: bool = False,
              amp: str | None = None, channels_last: bool = False, **options: Any) -> ClassifierTask:
        cfg = CONFIGS[name][preset]
        data = cifar_data(cfg, data_dir, bool(synthetic))
        images = DeviceImages(data.train_x, data.train_y, data.test_x, data.test_y, torch.device(device),
                              batch_size=cfg.batch_size, seed=seed, augment=True, channels_last=bool(channels_last),
                              curvature_size=cfg.curvature_size, val_x=data.val_x, val_y=data.val_y)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the initial weights depend on the trial seed only
            model = make_model(preset, data.num_classes, **options)
        # real smoke runs see a subset of the official split, and say so
        dataset = "cifar10-subset" if preset == "smoke" and not synthetic else data.name
        return ClassifierTask(model, images, dataset=dataset, budget=cfg.budget, eval_every=cfg.eval_every,
                              target=Target("val_accuracy", cfg.target_accuracy, "max"), seed=seed, amp=amp)

    return TaskSpec(
        name=name,
        build=build,
        presets={
            "smoke": Preset("scaled-down timm model, 40 steps of batch 32 on 2,048 images: seconds on a CPU"),
            "full": Preset(full_description, wants_gpu=True),
        },
        suites=("diagnostics",),
        suite_options={"diagnostics": {"synthetic": True}},
        summary=summary,
        paper=paper,
    )


def _resnet(preset: str, num_classes: int, **options: Any) -> nn.Module:
    return resnet_cifar(preset, num_classes)


def _vit(preset: str, num_classes: int, fused_attn: bool = False, **options: Any) -> nn.Module:
    return vit_tiny_cifar(preset, num_classes, fused_attn=bool(fused_attn))


@hookimpl
def optbench_register_tasks() -> list[TaskSpec]:
    return [
        _spec("resnet-cifar10", _resnet,
              "timm ResNet-18 with a 3x3 stride-1 stem (no max-pool) on CIFAR-10, crop+flip augmentation",
              "He et al. 2016, Deep Residual Learning for Image Recognition",
              "ResNet-18, batch 512, 40 epochs, target test accuracy 0.94"),
        _spec("vit-tiny-cifar10", _vit,
              "timm ViT-Tiny (img 32, patch 4) on CIFAR-10, crop+flip augmentation",
              "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words",
              "ViT-Tiny (dim 192, depth 12), batch 512, 100 epochs, target test accuracy 0.80"),
    ]
