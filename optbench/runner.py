"""Runs one trial to completion and turns it into one row plus its curves. It never raises for a trial's
own failure: a plugin that raises, a diverging loss and a time-out each end as a row with a status.

Timing follows the contract: a full training step (loss, backward, `optimizer.step`) and
`optimizer.step()` alone are timed separately with the device synchronised; evaluation and metrics are
kept out of the training clock, so time-to-target measures training time only.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import optbench
from optbench.closure import StepClosure
from optbench.config import config_label, normalise_schedule
from optbench.deadline import hard_deadline
from optbench.environment import environment
from optbench.errors import NotApplicable, OptbenchError
from optbench.measure import compute_metrics
from optbench.registry import Registered, Registry
from optbench.schedules import LRScheduler
from optbench.specs import MetricWhen, Needs, OptimizerSpec, TaskInstance
from optbench.trial import Trial, canonical_json

#: a loss this many times the first one counts as exploding
DIVERGENCE_FACTOR = 1e4
#: geometry metrics that get their own column in the trials table
GEOMETRY_COLUMNS = ("sharpness", "hessian_trace", "entropy_gap", "entropy_gap_alpha2")


@dataclass
class RunSettings:
    device: str = "cpu"
    data_dir: Path | None = None
    metrics: Sequence[str] | None = None  # None: every metric whose spec says default=True
    metrics_every: int = 0  # metric evaluation every K quality evaluations (0: only at the end)
    trial_timeout_s: float | None = None
    run_id: str = ""
    log_points: int = 200  # train-loss curve points per trial (at most)


@dataclass
class TrialResult:
    row: dict[str, Any]
    curves: list[dict[str, Any]] = field(default_factory=list)


class TrialTimeout(BaseException):
    """A BaseException so that a plugin's `except Exception` cannot swallow the hard deadline (deadline.py)."""


class _Blame(Exception):
    """Wraps an exception with the plugin it came from."""

    def __init__(self, who: Registered, phase: str, exc: BaseException) -> None:
        kind = "optimizer" if isinstance(who.spec, OptimizerSpec) else "task"
        super().__init__(f"{phase}: {kind} plugin {who.plugin!r} ({who.distribution}) raised "
                         f"{type(exc).__name__}: {exc}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _state_mb(optimizer: torch.optim.Optimizer) -> float:
    total = 0
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total / 2**20


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark (Linux: KiB)
    except (ImportError, OSError):
        return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def base_row(trial: Trial, registry: Registry, settings: RunSettings, device: torch.device) -> dict[str, Any]:
    opt = registry.entries["optimizer"].get(trial.optimizer)
    task = registry.entries["task"].get(trial.task)
    env = environment(device)
    return {
        "trial_id": trial.trial_id,
        "run_id": settings.run_id,
        "task": trial.task,
        "preset": trial.preset,
        "optimizer": trial.optimizer,
        "plugin": opt.distribution if opt else None,
        "plugin_version": opt.version if opt else None,
        "task_plugin": task.distribution if task else None,
        "hparams": canonical_json(trial.hparams),
        "options": canonical_json(trial.options),
        "config_id": trial.config_id,
        "config": config_label(trial.optimizer, trial.hparams, trial.schedule, opt.spec.defaults if opt else None),
        "schedule": canonical_json(normalise_schedule(trial.schedule)),
        "study": trial.study or None,
        "study_role": trial.study_role or None,
        "seed": trial.seed,
        "status": "failed",
        "optbench_version": optbench.__version__,
        **env,
    }


def run_trial(
    trial: Trial,
    registry: Registry,
    settings: RunSettings,
    on_step: Callable[[int, int], None] | None = None,
) -> TrialResult:
    """Run `trial`; `on_step(step, budget)` is called after every training step (progress bars)."""
    device = resolve_device(settings.device)
    row = base_row(trial, registry, settings, device)
    curves: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        limit = settings.trial_timeout_s
        with hard_deadline(limit, lambda: TrialTimeout(f"trial exceeded --trial-timeout {limit:g} s")):
            _train(trial, registry, settings, device, row, curves, on_step, started)
    except NotApplicable as exc:
        row.update(status="skipped", error=f"not applicable: {exc.reason}")
    except _Blame as exc:
        row.update(status="failed", error=str(exc))
    except TrialTimeout as exc:
        row.update(status="timeout", error=str(exc))
    except OptbenchError:
        raise  # only a task's build raises it, for a setup problem every trial would share
    except Exception as exc:  # noqa: BLE001 - a trial never raises out of the runner
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["wall_time_s"] = time.perf_counter() - started
    row["peak_memory_mb"] = _peak_memory_mb(device)
    return TrialResult(row, curves)


def _train(
    trial: Trial,
    registry: Registry,
    settings: RunSettings,
    device: torch.device,
    row: dict[str, Any],
    curves: list[dict[str, Any]],
    on_step: Callable[[int, int], None] | None,
    started: float,
) -> None:
    opt_reg = registry.optimizer(trial.optimizer)
    task_reg = registry.task(trial.task)
    metric_regs = _chosen_metrics(registry, settings.metrics)
    seed_everything(trial.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    try:
        task: TaskInstance = task_reg.spec.build(
            trial.preset, trial.seed, device, settings.data_dir, **trial.options
        )
    except (OptbenchError, NotApplicable):
        raise  # the user's setup (a missing data dir), not this trial's fault; or a pair that cannot run
    except Exception as exc:
        raise _Blame(task_reg, "building the task", exc) from exc
    row["dataset"] = task.dataset
    row["synthetic"] = "synthetic" in (task.dataset or "")
    row["budget"] = task.budget
    if task.target is not None:
        row["target_name"], row["target_value"] = task.target.name, float(task.target.value)
    params = task.parameters()

    spec = opt_reg.spec
    try:
        extra = {"model": task.model} if spec.wants_model else {}
        if spec.wants_model and task.model is None:
            raise NotApplicable(f"optimizer {spec.name!r} needs a model, and task {trial.task!r} has none")
        optimizer = spec.build(params, **trial.hparams, **extra)
        scheduler = LRScheduler(optimizer, trial.schedule, task.budget)
    except NotApplicable:
        raise
    except Exception as exc:
        raise _Blame(opt_reg, "building the optimizer", exc) from exc

    needs = Needs(spec.needs)
    closure = StepClosure(task, params)  # the closure protocol (optbench/closure.py), shared with optbench.testing
    passes = closure.passes

    stream = task.batches()
    task.train()
    step_times: list[float] = []
    opt_times: list[float] = []
    train_time = 0.0
    first_loss: float | None = None
    recent: list[float] = []
    log_every = max(1, task.budget // max(1, settings.log_points))
    evals_done = 0
    step = 0

    def point(split: str, name: str, value: float) -> None:
        curves.append({"trial_id": trial.trial_id, "step": step, "wall_time_s": train_time, "split": split,
                       "name": name, "value": float(value)})

    def evaluate(final: bool) -> dict[str, float]:
        nonlocal evals_done
        task.eval()
        try:
            with torch.no_grad():
                quality = task.evaluate()
        except Exception as exc:
            raise _Blame(task_reg, "evaluation", exc) from exc
        finally:
            task.train()
        for name, value in quality.items():
            point("val" if name.startswith("val_") else "test", name, value)
        evals_done += 1
        every = settings.metrics_every
        if final or (every and evals_done % every == 0):
            due = metric_regs if final else [r for r in metric_regs if MetricWhen(r.spec.when) is MetricWhen.EVAL]
            res = compute_metrics(due, task, params, step, device)
            for name, value in res.values.items():
                point("metric", name, value)
            for split, name, value in res.points:
                point(split, name, value)
            if final:
                row["metrics"] = canonical_json(res.values)
                row["metric_errors"] = canonical_json(res.errors) if res.errors else None
                row["hvp_calls"] = res.hvp_calls
                for col in GEOMETRY_COLUMNS:
                    row[col] = res.values.get(col)
        return quality

    quality: dict[str, float] = {}
    for step in range(1, task.budget + 1):
        closure.batch = next(stream)
        scheduler.set_step(step)
        _sync(device)
        t0 = time.perf_counter()
        try:
            loss = closure.before_step(needs)
        except Exception as exc:
            raise _Blame(task_reg, f"training step {step}", exc) from exc
        _sync(device)
        t1 = time.perf_counter()
        try:
            optimizer.step(closure.for_step(needs))
        except Exception as exc:
            raise _Blame(opt_reg, f"optimizer step {step}", exc) from exc
        _sync(device)
        t2 = time.perf_counter()
        step_times.append(t2 - t0)
        opt_times.append(t2 - t1)
        train_time += t2 - t0
        loss_value = float(loss.detach())
        if first_loss is None:
            first_loss = loss_value
        if not math.isfinite(loss_value) or abs(loss_value) > DIVERGENCE_FACTOR * max(abs(first_loss), 1e-12):
            point("train", "loss", loss_value)
            row.update(status="diverged", diverged_step=step,
                       error=f"loss became {loss_value:.4g} at step {step} (first loss {first_loss:.4g})")
            break
        recent.append(loss_value)
        if step % log_every == 0:
            point("train", "loss", loss_value)
        if on_step is not None:
            on_step(step, task.budget)
        if step % task.eval_every == 0 or step == task.budget:
            final = step == task.budget
            quality = evaluate(final)
            if not all(math.isfinite(v) for v in quality.values()):
                row.update(status="diverged", diverged_step=step, error=f"non-finite evaluation at step {step}")
                break
            if task.target is not None and row.get("steps_to_target") is None and task.target.reached(quality):
                row["steps_to_target"], row["time_to_target_s"] = step, train_time
            if not final:
                row["final_train_loss"] = statistics.fmean(recent)
                recent.clear()
        if settings.trial_timeout_s and time.perf_counter() - started > settings.trial_timeout_s:
            raise TrialTimeout(f"trial exceeded --trial-timeout {settings.trial_timeout_s:g} s at step {step}")
    else:
        row["status"] = "ok"

    done = step if row["status"] == "ok" else max(step - 1, 0)
    if recent:
        row["final_train_loss"] = statistics.fmean(recent)
    row["steps"] = done
    row["train_time_s"] = train_time
    if step_times:
        row["step_time_ms"] = 1e3 * statistics.median(step_times)
        row["optimizer_step_ms"] = 1e3 * statistics.median(opt_times)
        row["steps_per_s"] = len(step_times) / train_time if train_time > 0 else None
        row["examples_per_s"] = row["steps_per_s"] * task.batch_size if row["steps_per_s"] else None
        row["forward_passes"] = passes["forward"] / len(step_times)
        row["backward_passes"] = passes["backward"] / len(step_times)
    row["optimizer_state_mb"] = _state_mb(optimizer)
    if row["status"] == "ok":
        row["final_test_loss"] = quality.get("test_loss")
        row["final_test_accuracy"] = quality.get("test_accuracy")
        row["final_val_loss"] = quality.get("val_loss")
        row["final_val_accuracy"] = quality.get("val_accuracy")
    else:  # a diverged trial keeps no final quality: there is none to report
        row["final_train_loss"] = None


def _chosen_metrics(registry: Registry, names: Sequence[str] | None) -> list[Registered]:
    if names is None:
        return [r for r in registry.entries["metric"].values() if r.spec.default]
    return [registry.metric(n) for n in names]

