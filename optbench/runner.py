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
from optbench import speed
from optbench.closure import StepClosure
from optbench.config import config_label, normalise_schedule
from optbench.deadline import hard_deadline
from optbench.environment import environment
from optbench.errors import NotApplicable, OptbenchError
from optbench.measure import compute_metrics
from optbench.registry import Registered, Registry
from optbench.schedules import LRScheduler
from optbench.schema import TrialRow, declared_columns
from optbench.settings import speed_reference
from optbench.specs import ColumnSpec, MetricWhen, Needs, OptimizerSpec, TaskInstance
from optbench.trial import Trial, canonical_json

#: a loss this many times the first one counts as exploding
DIVERGENCE_FACTOR = 1e4
#: what the runner reads the time from: seconds, monotonic (tests pass a scaled or stepped one)
Clock = Callable[[], float]


@dataclass
class RunSettings:
    device: str = "cpu"
    data_dir: Path | None = None
    metrics: Sequence[str] | None = None  # None: every metric whose spec says default=True
    metrics_every: int = 0  # metric evaluation every K quality evaluations (0: only at the end)
    trial_timeout_s: float | None = None
    run_id: str = ""
    log_points: int = 200  # train-loss curve points per trial (at most)
    # reference of the interleaved step-time ratio (optbench/speed.py; optbench.settings); None: not measured
    speed_ref: str | None = field(default_factory=speed_reference)
    speed_pairs: int = 21  # interleaved A/B step pairs per trial
    speed_threads: int | None = 1  # torch threads while timing on CPU (None: the trial's own)


@dataclass
class TrialResult:
    row: TrialRow
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


def chosen_metrics(registry: Registry, names: Sequence[str] | None) -> list[Registered]:
    """The metrics a run computes: the named ones, or every metric that is on by default."""
    if names is None:
        return [r for r in registry.entries["metric"].values() if r.spec.default]
    return [registry.metric(n) for n in names]


def registry_columns(registry: Registry) -> tuple[ColumnSpec, ...]:
    """Every column the registered metrics declare: all trials of an installation share one schema (a metric
    that did not run leaves its columns null)."""
    try:
        return declared_columns(r.spec for r in registry.entries["metric"].values())
    except ValueError:  # two metrics claim one column: keep those values in the metrics JSON only
        return ()


def plugin_facts(entry: Registered) -> dict[str, Any]:
    """What a plugin says about itself, recorded with each trial so that results render without it installed."""
    spec = entry.spec
    facts: dict[str, Any] = {"name": entry.name, "entry_point": entry.plugin, "distribution": entry.distribution,
                             "version": entry.version, "summary": spec.summary, "paper": getattr(spec, "paper", "")}
    if isinstance(spec, OptimizerSpec):
        facts.update(defaults=dict(spec.defaults), needs=Needs(spec.needs).value)
    return facts


def base_row(trial: Trial, registry: Registry, settings: RunSettings, device: torch.device) -> TrialRow:
    """A trial's row before it runs (status `failed` until it finishes): the one place rows are started,
    here and in the Ray executor for trials whose worker never reported back."""
    opt = registry.entries["optimizer"].get(trial.optimizer)
    task = registry.entries["task"].get(trial.task)
    return TrialRow(
        registry_columns(registry),
        {kind: plugin_facts(entry) for kind, entry in (("optimizer", opt), ("task", task)) if entry is not None},
        trial_id=trial.trial_id,
        run_id=settings.run_id,
        task=trial.task,
        preset=trial.preset,
        optimizer=trial.optimizer,
        plugin=opt.distribution if opt else None,
        plugin_version=opt.version if opt else None,
        task_plugin=task.distribution if task else None,
        hparams=canonical_json(trial.hparams),
        options=canonical_json(trial.options),
        config_id=trial.config_id,
        config=config_label(trial.optimizer, trial.hparams, trial.schedule, opt.spec.defaults if opt else None),
        schedule=canonical_json(normalise_schedule(trial.schedule)),
        study=trial.study or None,
        study_role=trial.study_role or None,
        seed=trial.seed,
        status="failed",
        optbench_version=optbench.__version__,
        **environment(device),
    )


def run_trial(
    trial: Trial,
    registry: Registry,
    settings: RunSettings,
    on_step: Callable[[int, int], None] | None = None,
    clock: Clock = time.perf_counter,
) -> TrialResult:
    """Run `trial`; `on_step(step, budget)` is called after every training step (progress bars)."""
    device = resolve_device(settings.device)
    row = base_row(trial, registry, settings, device)
    run = _TrialRun(trial, registry, settings, device, row, on_step, clock)
    try:
        limit = settings.trial_timeout_s
        with hard_deadline(limit, lambda: TrialTimeout(f"trial exceeded --trial-timeout {limit:g} s")):
            run.build()
            run.train()
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
    run.finish()
    return TrialResult(row, run.curves)


class _TrialRun:
    """One trial's state through its phases: build -> step loop (with evaluations) -> finish."""

    def __init__(self, trial: Trial, registry: Registry, settings: RunSettings, device: torch.device,
                 row: TrialRow, on_step: Callable[[int, int], None] | None, clock: Clock) -> None:
        self.trial, self.registry, self.settings, self.device = trial, registry, settings, device
        self.row, self.on_step, self.clock = row, on_step, clock
        self.curves: list[dict[str, Any]] = []
        self.trial_id = trial.trial_id  # a sha256 of the trial's JSON: hashed once, not at every curve point
        self.started = clock()
        self.step = 0
        self.train_time = 0.0
        self.step_times: list[float] = []
        self.opt_times: list[float] = []
        self.evals_done = 0
        self.quality: dict[str, float] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.closure: StepClosure | None = None
        self.trained = False  # the step loop ended by itself (ok or diverged), not by an exception

    # --- build ----------------------------------------------------------------------------------------
    def build(self) -> None:
        trial, row = self.trial, self.row
        self.opt_reg = self.registry.optimizer(trial.optimizer)
        self.task_reg = self.registry.task(trial.task)
        self.metric_regs = chosen_metrics(self.registry, self.settings.metrics)
        seed_everything(trial.seed)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            self.task: TaskInstance = self.task_reg.spec.build(
                trial.preset, trial.seed, self.device, self.settings.data_dir, **trial.options
            )
        except (OptbenchError, NotApplicable):
            raise  # the user's setup (a missing data dir), not this trial's fault; or a pair that cannot run
        except Exception as exc:
            raise _Blame(self.task_reg, "building the task", exc) from exc
        task = self.task
        row["dataset"] = task.dataset
        row["synthetic"] = "synthetic" in (task.dataset or "")
        row["budget"] = task.budget
        if task.target is not None:
            row["target_name"], row["target_value"] = task.target.name, float(task.target.value)
        self.params = task.parameters()
        spec = self.opt_reg.spec
        try:
            extra = {"model": task.model} if spec.wants_model else {}
            if spec.wants_model and task.model is None:
                raise NotApplicable(f"optimizer {spec.name!r} needs a model, and task {trial.task!r} has none")
            self.optimizer = spec.build(self.params, **trial.hparams, **extra)
            self.scheduler = LRScheduler(self.optimizer, trial.schedule, task.budget)
        except NotApplicable:
            raise
        except Exception as exc:
            raise _Blame(self.opt_reg, "building the optimizer", exc) from exc
        self.needs = Needs(spec.needs)
        # the closure protocol (optbench/closure.py), shared with optbench.testing
        self.closure = StepClosure(task, self.params)

    # --- step loop ------------------------------------------------------------------------------------
    def train(self) -> None:
        task, row, clock, closure = self.task, self.row, self.clock, self.closure
        assert closure is not None and self.optimizer is not None
        task.train()
        first_loss: float | None = None
        recent: list[float] = []
        log_every = max(1, task.budget // max(1, self.settings.log_points))
        timeout = self.settings.trial_timeout_s
        for step in range(1, task.budget + 1):
            self.step = step
            closure.next_batch()  # the run's one batch stream; closure(fresh_batch=True) draws from it too
            self.scheduler.set_step(step)
            _sync(self.device)
            t0 = clock()
            try:
                loss = closure.before_step(self.needs)
            except Exception as exc:
                raise _Blame(self.task_reg, f"training step {step}", exc) from exc
            _sync(self.device)
            t1 = clock()
            try:
                self.optimizer.step(closure.for_step(self.needs))
            except Exception as exc:
                raise _Blame(self.opt_reg, f"optimizer step {step}", exc) from exc
            _sync(self.device)
            t2 = clock()
            self.step_times.append(t2 - t0)
            self.opt_times.append(t2 - t1)
            self.train_time += t2 - t0
            # The step's one host read, every step because divergence ends the trial at the step it shows in.
            # On CUDA it waits for nothing: the timing sync above has already drained the stream.
            loss_value = loss.item()
            if first_loss is None:
                first_loss = loss_value
            if not math.isfinite(loss_value) or abs(loss_value) > DIVERGENCE_FACTOR * max(abs(first_loss), 1e-12):
                self._point("train", "loss", loss_value)
                row.update(status="diverged", diverged_step=step,
                           error=f"loss became {loss_value:.4g} at step {step} (first loss {first_loss:.4g})")
                break
            recent.append(loss_value)
            if step % log_every == 0:
                self._point("train", "loss", loss_value)
            if self.on_step is not None:
                self.on_step(step, task.budget)
            if step % task.eval_every == 0 or step == task.budget:
                final = step == task.budget
                self.quality = self.evaluate(final)
                if not all(math.isfinite(v) for v in self.quality.values()):
                    row.update(status="diverged", diverged_step=step, error=f"non-finite evaluation at step {step}")
                    break
                if task.target is not None and row.get("steps_to_target") is None and task.target.reached(self.quality):
                    row["steps_to_target"], row["time_to_target_s"] = step, self.train_time
                if not final:
                    row["final_train_loss"] = statistics.fmean(recent)
                    recent.clear()
            if timeout and clock() - self.started > timeout:
                raise TrialTimeout(f"trial exceeded --trial-timeout {timeout:g} s at step {step}")
        else:
            row["status"] = "ok"
        if recent:
            row["final_train_loss"] = statistics.fmean(recent)
        self.trained = True

    # --- evaluate -------------------------------------------------------------------------------------
    def evaluate(self, final: bool) -> dict[str, float]:
        """Quality on held-out data; metrics too when due (always at the end)."""
        task = self.task
        task.eval()
        try:
            with torch.no_grad():
                quality = task.evaluate()
        except Exception as exc:
            raise _Blame(self.task_reg, "evaluation", exc) from exc
        finally:
            task.train()
        for name, value in quality.items():
            self._point("val" if name.startswith("val_") else "test", name, value)
        self.evals_done += 1
        every = self.settings.metrics_every
        if final or (every and self.evals_done % every == 0):
            due = (self.metric_regs if final
                   else [r for r in self.metric_regs if MetricWhen(r.spec.when) is MetricWhen.EVAL])
            res = compute_metrics(due, task, self.params, self.step, self.device)
            for name, value in res.values.items():
                self._point("metric", name, value)
            for split, name, value in res.points:
                self._point(split, name, value)
            if final:
                self.row["metrics"] = canonical_json(res.values)
                self.row["metric_errors"] = canonical_json(res.errors) if res.errors else None
                self.row["hvp_calls"] = res.hvp_calls
                self.row["metric_costs"] = canonical_json(res.costs) if res.costs else None
                for col in self.row.columns:
                    self.row[col.name] = res.values.get(col.name)
        return quality

    def _point(self, split: str, name: str, value: float) -> None:
        self.curves.append({"trial_id": self.trial_id, "step": self.step, "wall_time_s": self.train_time,
                            "split": split, "name": name, "value": float(value)})

    # --- speed ----------------------------------------------------------------------------------------
    def speed_ratio(self) -> dict[str, Any]:
        """The optimizer's step time over the reference optimizer's, interleaved on this task's parameter
        shapes (optbench/speed.py); empty where it cannot be measured (no reference, an optimizer that needs
        the model or Hessian-vector products, or a step that fails on copies)."""
        ref_name = self.settings.speed_ref
        spec = self.opt_reg.spec
        if not ref_name or ref_name not in self.registry.entries.get("optimizer", {}) or spec.wants_model:
            return {}
        if self.needs is Needs.HESSIAN:
            return {}
        ref = self.registry.optimizer(ref_name).spec
        hparams = dict(self.trial.hparams)
        needs_closure = self.needs is not Needs.GRADIENT
        threads = self.settings.speed_threads if self.device.type == "cpu" else None
        try:
            ratio = speed.optimizer_step_ratio(lambda ps: spec.build(ps, **hparams),
                                               lambda ps: ref.build(ps, **dict(ref.defaults)),
                                               list(self.params), needs_closure=needs_closure,
                                               pairs=self.settings.speed_pairs,
                                               threads=threads)
        except Exception:  # noqa: BLE001 - the trial itself went fine; only this extra figure is missing
            return {}
        return ratio.row(ref_name) if ratio.pairs else {}

    # --- finish ---------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Totals, speed and memory; runs whatever the trial's status, with whatever the phases reached."""
        row = self.row
        row["wall_time_s"] = self.clock() - self.started
        row["peak_memory_mb"] = _peak_memory_mb(self.device)
        if not self.trained or self.optimizer is None or self.closure is None:
            return  # failed or timed out: the status and error say what happened
        ok = row["status"] == "ok"
        row["steps"] = self.step if ok else max(self.step - 1, 0)
        row["train_time_s"] = self.train_time
        if self.step_times:
            n = len(self.step_times)
            row["step_time_ms"] = 1e3 * statistics.median(self.step_times)
            row["optimizer_step_ms"] = 1e3 * statistics.median(self.opt_times)
            row["steps_per_s"] = n / self.train_time if self.train_time > 0 else None
            row["examples_per_s"] = row["steps_per_s"] * self.task.batch_size if row["steps_per_s"] else None
            row["forward_passes"] = self.closure.passes["forward"] / n
            row["backward_passes"] = self.closure.passes["backward"] / n
        row["optimizer_state_mb"] = _state_mb(self.optimizer)
        if ok:
            row.update(self.speed_ratio())
        if ok:
            row["final_test_loss"] = self.quality.get("test_loss")
            row["final_test_accuracy"] = self.quality.get("test_accuracy")
            row["final_val_loss"] = self.quality.get("val_loss")
            row["final_val_accuracy"] = self.quality.get("val_accuracy")
        else:  # a diverged trial keeps no final quality: there is none to report
            row["final_train_loss"] = None
