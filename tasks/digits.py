"""`cnn-digits`: a small CNN on scikit-learn's handwritten digits, a real-data task of the standard suite.

Why this dataset: it ships inside the scikit-learn wheel (`sklearn.datasets.load_digits`, 1,797 8x8 grey images
of the digits 0-9 from the UCI "Optical Recognition of Handwritten Digits" set), so the standard suite trains on
real data with no download and no --data-dir. Rows say `dataset = "sklearn-digits"`.

The split is fixed so every trial of every optimizer sees the same held-out sets: 360 test images (stratified,
random_state 0), then 360 validation images taken from the rest the same way, leaving 1,077 for training. Seeds
vary only the initial weights and the batch order. Targets and tuning use the validation set; the test set is
only reported.

Standard target (val accuracy 0.98), calibrated with
`OMP_NUM_THREADS=1 python benchmarks/calibrate_targets.py cnn-digits --lrs 3e-3,1e-2,3e-2 --jobs 2`: AdamW
with warm-up + cosine, lr 1e-2 (final val accuracy on seed 0: 3e-3 0.978, 1e-2 0.983, 3e-2 0.983 — a tie, the
smaller lr kept); val accuracy at 75% of the budget on seeds 0/1/2:
0.983 / 0.986 / 0.983, so the target is 0.98. Final test accuracy 0.972 / 0.978 / 0.978.

Pixels (0..16) are stored as uint8 scaled to 0..255 and go through the same on-device data path as CIFAR,
without augmentation (a flipped or shifted digit is a different digit more often than for natural images).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from optbench import Preset, Target, TaskSpec, hookimpl

from .classifier import ClassifierTask
from .image_batches import DeviceImages

SPLIT_SEED = 0
TEST_SIZE = 360
VAL_SIZE = 360


@dataclass(frozen=True)
class DigitsConfig:
    budget: int
    eval_every: int
    batch_size: int
    target_accuracy: float


CONFIGS = {
    "smoke": DigitsConfig(budget=150, eval_every=25, batch_size=64, target_accuracy=0.95),
    "standard": DigitsConfig(budget=600, eval_every=25, batch_size=64, target_accuracy=0.98),
    "full": DigitsConfig(budget=2000, eval_every=100, batch_size=128, target_accuracy=0.98),
}


@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, val_x, val_y, test_x, test_y): uint8 images (N, 1, 8, 8) and int64 labels, fixed
    stratified splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(images, labels, test_size=TEST_SIZE, stratify=labels,
                                              random_state=SPLIT_SEED)
    tr_x, va_x, tr_y, va_y = train_test_split(tr_x, tr_y, test_size=VAL_SIZE, stratify=tr_y, random_state=SPLIT_SEED)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (tr_x, tr_y, va_x, va_y, te_x, te_y))


def digits_cnn(num_classes: int = 10) -> nn.Module:
    """Two 3x3 conv layers, one 2x2 max-pool, two linear layers: about 40k parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def build(preset: str, seed: int, device: torch.device | str, data_dir: Any = None, *, amp: str | None = None,
          **options: Any) -> ClassifierTask:
    cfg = CONFIGS[preset]
    train_x, train_y, val_x, val_y, test_x, test_y = digits_split()
    data = DeviceImages(train_x, train_y, test_x, test_y, torch.device(device), batch_size=cfg.batch_size,
                        seed=seed, augment=False, curvature_size=128, val_x=val_x, val_y=val_y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = digits_cnn()
    return ClassifierTask(model, data, dataset="sklearn-digits", budget=cfg.budget, eval_every=cfg.eval_every,
                          target=Target("val_accuracy", cfg.target_accuracy, "max"), seed=seed, amp=amp)


@hookimpl
def optbench_register_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="cnn-digits",
            build=build,
            presets={
                "smoke": Preset("150 steps of batch 64 on 1,077 real 8x8 digits: seconds on a CPU"),
                "standard": Preset("600 steps of batch 64 (about 36 epochs), target val accuracy from calibration"),
                "full": Preset("2,000 steps of batch 128, target test accuracy 0.98 (still CPU-sized)"),
            },
            suites=("standard",),
            summary="Small CNN on scikit-learn's bundled handwritten digits (real data, no download)",
            paper="Alpaydin & Kaynak 1998, UCI Optical Recognition of Handwritten Digits",
        )
    ]
