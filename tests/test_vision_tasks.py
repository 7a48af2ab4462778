"""The classification tasks end to end: resnet-cifar10, vit-tiny-cifar10 (synthetic and on-disk CIFAR) and
cnn-digits (real data), through `optbench run`, plus determinism and the loss variants metrics and Sophia use.

The CIFAR smoke runs here use a shorter budget (a test-only patch of the preset table) to keep the file fast;
the digits smoke preset runs unchanged, so one real smoke preset is exercised as shipped.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from optbench.tasks import digits, vision
from optbench.tasks.cifar10 import OFFICIAL_URL
from test_cifar_loader import write_binary  # tests/ is on sys.path under pytest's default import mode

from optbench.errors import OptbenchError
from optbench.store import Store

CIFAR_TASKS = ("resnet-cifar10", "vit-tiny-cifar10")
ALL_TASKS = (*CIFAR_TASKS, "cnn-digits")


@pytest.fixture
def short_cifar_smoke(monkeypatch):
    """Test-only: CIFAR smoke presets with 12 steps instead of 40."""
    for name in CIFAR_TASKS:
        cfg = vision.CONFIGS[name]["smoke"]
        monkeypatch.setitem(vision.CONFIGS[name], "smoke", dataclasses.replace(cfg, budget=12, eval_every=6))


def _only_row(root):
    res = Store(root).read(with_curves=True)
    assert len(res.trials) == 1
    row = res.trials.iloc[0]
    curve = res.curves[(res.curves["split"] == "train") & (res.curves["name"] == "loss")].sort_values("step")
    return row, curve["value"].tolist()


def _assert_loss_went_down(losses: list[float]) -> None:
    k = max(2, len(losses) // 4)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < first - 0.05, f"training loss did not go down: first {losses[:k]}, last {losses[-k:]}"


def test_registered_in_default_suite_with_synthetic_suite_option(registry):
    assert "cnn-digits" in registry.suite("standard")
    for name in CIFAR_TASKS:
        assert name in registry.suite("diagnostics") and name not in registry.suite("standard")
        spec = registry.task(name).spec
        assert dict(spec.suite_options["diagnostics"]) == {"synthetic": True}
        assert spec.presets["full"].wants_gpu and not spec.presets["smoke"].wants_gpu
    assert not registry.task("cnn-digits").spec.suite_options  # real data, needs nothing


@pytest.mark.parametrize("task", CIFAR_TASKS)
def test_cifar_smoke_trains_through_optbench_run(cli, tmp_path, short_cifar_smoke, task):
    out = cli("run", "-o", "adamw", "-t", task, "--synthetic", "--no-metrics", "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    row, losses = _only_row(tmp_path)
    assert row["status"] == "ok", row["error"]
    assert row["dataset"] == "synthetic-cifar10" and bool(row["synthetic"])
    assert row["steps"] == 12 and len(losses) == 12
    assert 0.0 <= row["final_test_accuracy"] <= 1.0 and row["target_name"] == "val_accuracy"
    assert 0.0 <= row["final_val_accuracy"] <= 1.0
    _assert_loss_went_down(losses)


def test_digits_smoke_preset_as_shipped_learns_real_digits(cli, tmp_path):
    out = cli("run", "-o", "adamw", "-t", "cnn-digits", "--no-metrics", "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    row, losses = _only_row(tmp_path)
    assert row["status"] == "ok", row["error"]
    assert row["dataset"] == "sklearn-digits" and not bool(row["synthetic"])
    assert row["steps"] == digits.CONFIGS["smoke"].budget
    _assert_loss_went_down(losses)
    assert row["final_test_accuracy"] > 0.8  # chance is 0.1 on the fixed 360-image test split


def test_cifar_from_binary_files_through_optbench_run(cli, tmp_path, short_cifar_smoke):
    write_binary(tmp_path / "data", n_per_file=40)
    out = cli("run", "-o", "sgd", "-t", "resnet-cifar10", "--data-dir", str(tmp_path / "data"), "--no-metrics",
              "--results", str(tmp_path / "r"))
    assert out.exit_code == 0, out.output
    row, losses = _only_row(tmp_path / "r")
    assert row["status"] == "ok", row["error"]
    assert row["dataset"] == "cifar10-subset" and not bool(row["synthetic"])
    assert len(losses) == 12


def test_missing_cifar_is_one_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("OPTBENCH_DATA", raising=False)
    (tmp_path / "empty").mkdir()
    out = cli("run", "-o", "adamw", "-t", "resnet-cifar10", "--data-dir", str(tmp_path / "empty"),
              "--results", str(tmp_path / "r"))
    assert out.exit_code == 2
    assert str(tmp_path / "empty") in out.stderr and OFFICIAL_URL in out.stderr
    assert "Traceback" not in out.output
    out = cli("run", "-o", "adamw", "-t", "vit-tiny-cifar10", "--results", str(tmp_path / "r"))
    assert out.exit_code == 2 and "needs a data directory" in out.stderr and "--synthetic" in out.stderr


def _first_losses(name: str, seed: int, steps: int = 5) -> list[float]:
    spec = {s.name: s for s in vision.optbench_register_tasks() + digits.optbench_register_tasks()}[name]
    task = spec.build("smoke", seed, torch.device("cpu"), None, synthetic=True)
    opt = torch.optim.SGD(task.parameters(), lr=0.05, momentum=0.9)
    stream = task.batches()
    task.train()
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = task.loss(next(stream))
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


@pytest.mark.parametrize("name", ALL_TASKS)
def test_same_seed_same_first_five_losses(name):
    a, b = _first_losses(name, seed=0), _first_losses(name, seed=0)
    assert a == b
    assert _first_losses(name, seed=1) != a  # the seed reaches weights and batch order


class _Bias(torch.nn.Module):
    """Logits = a fixed bias, whatever the image: its softmax is the distribution labels are sampled from."""

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1)


def test_sampled_loss_uses_labels_from_the_models_softmax():
    from optbench.tasks.classifier import ClassifierTask
    from optbench.tasks.image_batches import DeviceImages

    x, y = digits.digits_split()[:2]
    data = DeviceImages(x, y, x[:10], y[:10], torch.device("cpu"), batch_size=256, seed=0, augment=False)
    peaked = torch.full((10,), -20.0)
    peaked[3] = 20.0
    task = ClassifierTask(_Bias(peaked), data, dataset="t", budget=1, eval_every=1, target=None, seed=0)
    batch = next(task.batches())
    assert float(task.loss(batch).detach()) > 10  # the true labels are mostly not 3
    assert float(task.sampled_loss(batch).detach()) < 1e-6  # every sampled label is 3
    flat = ClassifierTask(_Bias(torch.zeros(10)), data, dataset="t", budget=1, eval_every=1, target=None, seed=0)
    sampled = flat.sampled_loss(batch)
    assert float(sampled.detach()) == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=1e-6)
    sampled.backward()
    assert flat.model.bias.grad is not None


@pytest.mark.parametrize("name", CIFAR_TASKS)
def test_curvature_loss_is_fixed_eval_mode_and_twice_differentiable(name):
    spec = {s.name: s for s in vision.optbench_register_tasks()}[name]
    task = spec.build("smoke", 0, torch.device("cpu"), None, synthetic=True)
    task.train()
    first = task.curvature_loss()
    assert task.model.training  # the mode is restored
    assert float(first) == float(task.curvature_loss())  # eval mode: running stats are not updated
    x, y = task.data.curvature_batch
    task.model.eval()
    expected = torch.nn.functional.cross_entropy(task.model(x), y)
    task.model.train()
    assert float(first) == pytest.approx(float(expected), rel=1e-6)
    params = task.parameters()
    grads = torch.autograd.grad(first, params, create_graph=True)
    hvp = torch.autograd.grad(grads, params, [torch.ones_like(g) for g in grads])  # Sophia-H / metrics need this
    assert all(torch.isfinite(h).all() for h in hvp)


def test_amp_and_channels_last_options():
    spec = {s.name: s for s in vision.optbench_register_tasks()}["resnet-cifar10"]
    task = spec.build("smoke", 0, torch.device("cpu"), None, synthetic=True, amp="bf16", channels_last=True)
    x, y = next(task.batches())
    assert x.is_contiguous(memory_format=torch.channels_last)
    loss = task.loss((x, y))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    with pytest.raises(OptbenchError, match="amp='fp8'"):
        spec.build("smoke", 0, torch.device("cpu"), None, synthetic=True, amp="fp8")
