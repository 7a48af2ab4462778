"""Misbehaving plugins for the fault tests, registered the way a third party would: through an entry point.

`install(dir)` writes this module and a dist-info with entry_points.txt into `dir`; put `dir` on PYTHONPATH
(a subprocess, a Ray worker) and `load_registry()` finds `optbench-faultkit` like any installed package.
In-process tests pass the module to `load_registry(extra_plugins=...)` instead.

- task `tiny-quad`: a 10-dimensional quadratic, 30 steps (fast trials for grids that get killed).
- task `needs-data`: raises OptbenchError when its data directory lacks `train.bin` (a setup error).
- metric `faultkit-norm` (not a default one), so that metric names have something to be close to.
- optimizers: `slow-sgd` (SGD that sleeps `delay` s per step), `hang-step` (sleeps an hour in step),
  `raise-build`, `raise-step`, `nan-step` (writes NaN into the parameters).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from optbench import MetricSpec, OptimizerSpec, Preset, TaskInstance, TaskSpec, hookimpl
from optbench.errors import OptbenchError

DIST = "optbench_faultkit"


class TinyQuad(TaskInstance):
    dataset = "synthetic-tiny-quad"
    budget = 30
    eval_every = 10

    def __init__(self, seed: int, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = (torch.randn(10, generator=gen)).to(device).requires_grad_(True)
        self.scale = torch.linspace(1.0, 5.0, 10, device=device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.x]

    def batches(self) -> Iterator[Any]:
        while True:
            yield None

    def loss(self, batch: Any) -> torch.Tensor:
        return 0.5 * (self.scale * self.x**2).sum()

    def evaluate(self) -> dict[str, float]:
        return {"test_loss": float(self.loss(None))}


def _build_tiny(preset: str, seed: int, device: torch.device, data_dir: Path | None, **options: Any) -> TaskInstance:
    return TinyQuad(seed, device)


def _build_needs_data(preset: str, seed: int, device: torch.device, data_dir: Path | None,
                      **options: Any) -> TaskInstance:
    if data_dir is None or not (Path(data_dir) / "train.bin").is_file():
        raise OptbenchError(f"needs-data: no train.bin under {data_dir}.", "Put the dataset there.")
    return TinyQuad(seed, device)


class SlowSGD(torch.optim.SGD):
    def __init__(self, params: Any, lr: float = 0.1, delay: float = 0.0) -> None:
        super().__init__(params, lr=lr)
        self.delay = delay

    def step(self, closure: Any = None) -> None:
        time.sleep(self.delay)
        super().step()


class HangStep(torch.optim.SGD):
    def step(self, closure: Any = None) -> None:
        with contextlib.suppress(Exception):  # a careless plugin; the deadline must get through anyway
            time.sleep(3600)


class RaiseStep(torch.optim.SGD):
    def step(self, closure: Any = None) -> None:
        raise RuntimeError("raise-step broke on purpose")


class NanStep(torch.optim.SGD):
    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.fill_(float("nan"))


def _raise_build(params: Any, lr: float = 0.1) -> torch.optim.Optimizer:
    raise ValueError("raise-build refuses to build")


@hookimpl
def optbench_register_tasks() -> list[TaskSpec]:
    presets = {"smoke": Preset("30 steps")}
    return [
        TaskSpec(name="tiny-quad", build=_build_tiny, presets=presets, suites=("faultkit",), summary="tiny"),
        TaskSpec(name="needs-data", build=_build_needs_data, presets=presets, suites=("faultkit",), summary="data"),
    ]


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(name="slow-sgd", build=SlowSGD, defaults={"lr": 0.1, "delay": 0.0}),
        OptimizerSpec(name="hang-step", build=lambda params, lr=0.1: HangStep(params, lr=lr), defaults={"lr": 0.1}),
        OptimizerSpec(name="raise-build", build=_raise_build, defaults={"lr": 0.1}),
        OptimizerSpec(name="raise-step", build=lambda params, lr=0.1: RaiseStep(params, lr=lr), defaults={"lr": 0.1}),
        OptimizerSpec(name="nan-step", build=lambda params, lr=0.1: NanStep(params, lr=lr), defaults={"lr": 0.1}),
    ]


@hookimpl
def optbench_register_metrics() -> list[MetricSpec]:
    def compute(ctx: Any) -> dict[str, float]:
        return {"faultkit_norm": float(sum(float(p.norm()) for p in ctx.params))}

    return [MetricSpec(name="faultkit-norm", compute=compute, default=False, summary="parameter norm")]


def install(target: Path) -> Path:
    """Make `target` an importable location holding this plugin as distribution `optbench-faultkit`."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__), target / f"{DIST}.py")
    info = target / f"{DIST}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: optbench-faultkit\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[optbench]\noptbench-faultkit = {DIST}\n")
    return target
