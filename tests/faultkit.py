"""Misbehaving plugins for the fault tests, registered the way a third party would: through an entry point.

`install(dir)` writes this module and a dist-info with entry_points.txt into `dir`; put `dir` on PYTHONPATH
(a subprocess, a Ray worker) and `load_registry()` finds `optbench-faultkit` like any installed package.
In-process tests pass the module to `load_registry(extra_plugins=...)` instead.

- task `tiny-quad`: a 10-dimensional quadratic, 30 steps (fast trials for grids that get killed).
- task `needs-data`: raises OptbenchError when its data directory lacks `train.bin` (a setup error).
- metric `faultkit-norm` (not a default one), so that metric names have something to be close to.
- optimizers: `slow-sgd` (SGD that sleeps `delay` s per step), `hang-step` (sleeps an hour in step),
  `raise-build`, `raise-step`, `nan-step` (writes NaN into the parameters); crashes at step `at`:
  `exit-step` (os._exit(3)), `segv-step` (a real segfault), `sigkill-step` (SIGKILL, what the OOM killer
  sends); `deaf-hang` (blocks SIGALRM when built, then sleeps in step: stuck where the trial deadline cannot reach);
  `pause-sgd`: SGD that, at step 15 of the trial whose seed is written in the file named by $FAULTKIT_PAUSE,
  writes `<that file>.<pid>` and waits while the file exists: with one worker, seeds run in order, so a test
  pauses the grid mid-trial exactly after the k-th trial file appeared, and signals it at a known point;
  `term-driver`: sends SIGTERM to the process that started its worker (the driver) at step 1, then waits;
  `clip-sgd`: SGD with a `max_norm` whose default is inf (a spec that allows a non-finite value);
  `parallel-sgd`: SGD whose step also runs a large elementwise op (an OpenMP parallel region on every thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
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


class CrashStep(torch.optim.SGD):
    """Ends its process at step `at` the way `how` says."""

    def __init__(self, params: Any, lr: float = 0.1, at: int = 1, how: str = "exit") -> None:
        super().__init__(params, lr=lr)
        self.at, self.how, self.steps = at, how, 0

    def step(self, closure: Any = None) -> None:
        self.steps += 1
        if self.steps == self.at:
            if self.how == "exit":
                os._exit(3)
            elif self.how == "segv":
                ctypes.string_at(0)  # reads address 0: SIGSEGV in native code
            elif self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
        super().step()


class DeafHang(torch.optim.SGD):
    """Blocks SIGALRM when built (so the trial deadline cannot interrupt it, like native code that never
    returns to Python; at build time, before any deadline could have passed), then hangs in step."""

    def __init__(self, params: Any, lr: float = 0.1) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        super().__init__(params, lr=lr)

    def step(self, closure: Any = None) -> None:
        time.sleep(3600)


class PauseSGD(torch.optim.SGD):
    PAUSE_AT = 15

    def __init__(self, params: Any, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure: Any = None) -> None:
        self.steps += 1
        pause = os.environ.get("FAULTKIT_PAUSE")
        if self.steps == self.PAUSE_AT and pause and os.path.exists(pause):
            with contextlib.suppress(OSError, ValueError):
                if int(Path(pause).read_text()) == torch.initial_seed():  # the runner seeds torch with the trial's
                    Path(f"{pause}.{os.getpid()}").write_text(str(os.getpid()))
                    while os.path.exists(pause):
                        time.sleep(0.01)
        super().step()


class ParallelSGD(torch.optim.SGD):
    def step(self, closure: Any = None) -> None:
        big = torch.ones(1 << 21)  # well past ATen's grain size: an OpenMP parallel region on every torch thread
        (big * 2 + 1).sum()
        super().step()


class TermDriver(torch.optim.SGD):
    def step(self, closure: Any = None) -> None:
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(3600)  # the driver ends this worker as it unwinds


def _clip_sgd(params: Any, lr: float = 0.1, max_norm: float = float("inf")) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr)


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
        OptimizerSpec(name="exit-step", build=lambda params, lr=0.1, at=1: CrashStep(params, lr, at, "exit"),
                      defaults={"lr": 0.1, "at": 1}),
        OptimizerSpec(name="segv-step", build=lambda params, lr=0.1, at=1: CrashStep(params, lr, at, "segv"),
                      defaults={"lr": 0.1, "at": 1}),
        OptimizerSpec(name="sigkill-step", build=lambda params, lr=0.1, at=1: CrashStep(params, lr, at, "sigkill"),
                      defaults={"lr": 0.1, "at": 1}),
        OptimizerSpec(name="deaf-hang", build=lambda params, lr=0.1: DeafHang(params, lr=lr), defaults={"lr": 0.1}),
        OptimizerSpec(name="pause-sgd", build=PauseSGD, defaults={"lr": 0.1}),
        OptimizerSpec(name="term-driver", build=lambda params, lr=0.1: TermDriver(params, lr=lr),
                      defaults={"lr": 0.1}),
        OptimizerSpec(name="clip-sgd", build=_clip_sgd, defaults={"lr": 0.1, "max_norm": float("inf")}),
        OptimizerSpec(name="parallel-sgd", build=lambda params, lr=0.1: ParallelSGD(params, lr=lr),
                      defaults={"lr": 0.1}),
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
