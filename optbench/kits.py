"""Conformance kits for tasks and metrics, the counterpart of optbench.testing's optimizer kit.

`optbench check-plugin NAME` runs whichever kit fits the kind NAME is registered as; plugin authors can call
`assert_task_conforms` / `assert_metric_conforms` from pytest. Each check is a plain function of the
registered entry; an exception a plugin raises is a failed check, never a crash.

Task checks: builds (the first preset, seed 0, CPU, with the options its suites declare), parameters (a
non-empty list of leaf tensors that need gradients), loss (a finite scalar whose backward reaches every
parameter), evaluate (finite floats including `test_loss` and `val_loss`; the target's key among them),
curvature (curvature_loss() is a finite differentiable scalar), deterministic (two builds with one seed give
the same first loss).
Metric checks: computes (on the smallest registered task, a finite float per key), columns (every declared
column is among the keys it returns), deterministic (the same state gives the same values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from optbench.registry import Registered, Registry, get_registry
from optbench.testing import CheckResult

#: the task metrics are checked on when it is registered (a 200-dimensional quadratic); else the first task
METRIC_TASK = "quadratic-well-conditioned"


def _options(entry: Registered) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for declared in entry.spec.suite_options.values():
        out.update(declared)
    return out


def _build(entry: Registered, seed: int = 0):
    preset = next(iter(entry.spec.presets))
    torch.manual_seed(seed)
    return entry.spec.build(preset, seed, torch.device("cpu"), None, **_options(entry))


def _first_loss(task) -> torch.Tensor:
    return task.loss(next(task.batches()))


def _task_builds(entry: Registered) -> CheckResult:
    from optbench.specs import TaskInstance

    task = _build(entry)
    ok = isinstance(task, TaskInstance)
    return CheckResult("builds", ok, f"preset {next(iter(entry.spec.presets))!r} built a {type(task).__name__}"
                       + ("" if ok else ", not an optbench.TaskInstance"))


def _task_parameters(entry: Registered) -> CheckResult:
    params = _build(entry).parameters()
    ok = bool(params) and all(p.is_leaf and p.requires_grad for p in params)
    return CheckResult("parameters", ok, f"{len(params)} tensors, {sum(p.numel() for p in params)} values"
                       + ("" if ok else "; need a non-empty list of leaf tensors with requires_grad"))


def _task_loss(entry: Registered) -> CheckResult:
    task = _build(entry)
    params = task.parameters()
    loss = _first_loss(task)
    if loss.dim() != 0 or not math.isfinite(float(loss.detach())):
        return CheckResult("loss", False, f"loss is {loss!r}, not a finite scalar")
    loss.backward()
    missing = sum(1 for p in params if p.grad is None)
    return CheckResult("loss", missing == 0, f"loss {float(loss.detach()):.4g}; {missing} parameter(s) got no gradient")


def _task_evaluate(entry: Registered) -> CheckResult:
    task = _build(entry)
    with torch.no_grad():
        quality = task.evaluate()
    bad = [k for k, v in quality.items() if not isinstance(v, float | int) or not math.isfinite(float(v))]
    needed = [k for k in ("test_loss", "val_loss") if k not in quality]
    if task.target is not None and task.target.name not in quality:
        needed.append(f"{task.target.name} (the target)")
    ok = not bad and not needed
    detail = ", ".join(sorted(quality)) + (f"; non-finite: {bad}" if bad else "") + (
        f"; missing: {needed}" if needed else "")
    return CheckResult("evaluate", ok, detail)


def _task_curvature(entry: Registered) -> CheckResult:
    task = _build(entry)
    params = task.parameters()
    loss = task.curvature_loss()
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    value = float(loss.detach())
    ok = loss.dim() == 0 and math.isfinite(value) and any(g is not None and g.requires_grad for g in grads)
    return CheckResult("curvature", ok, f"curvature_loss {value:.4g}, twice differentiable: {ok}")


def _task_deterministic(entry: Registered) -> CheckResult:
    a, b = (float(_first_loss(_build(entry, 0)).detach()) for _ in range(2))
    return CheckResult("deterministic", a == b, f"first loss {a!r} and {b!r} for seed 0")


TASK_CHECKS: tuple[tuple[str, Callable[[Registered], CheckResult]], ...] = (
    ("builds", _task_builds), ("parameters", _task_parameters), ("loss", _task_loss),
    ("evaluate", _task_evaluate), ("curvature", _task_curvature), ("deterministic", _task_deterministic),
)


def _metric_values(entry: Registered, registry: Registry) -> dict[str, float]:
    from optbench.measure import compute_metrics

    task_name = METRIC_TASK if METRIC_TASK in registry.entries["task"] else registry.names("task")[0]
    task = _build(registry.task(task_name))
    res = compute_metrics([entry], task, task.parameters(), 0, torch.device("cpu"))
    if res.errors:
        raise RuntimeError(next(iter(res.errors.values())))
    return {k: v for k, v in res.values.items() if not k.endswith(".hvps")}


def _metric_computes(entry: Registered, registry: Registry) -> CheckResult:
    values = _metric_values(entry, registry)
    return CheckResult("computes", bool(values), ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
                       or "returned nothing")


def _metric_columns(entry: Registered, registry: Registry) -> CheckResult:
    values = _metric_values(entry, registry)
    missing = [c.name for c in entry.spec.columns if c.name not in values]
    return CheckResult("columns", not missing, f"declared {[c.name for c in entry.spec.columns]}"
                       + (f"; not returned: {missing}" if missing else ""))


def _metric_deterministic(entry: Registered, registry: Registry) -> CheckResult:
    a, b = _metric_values(entry, registry), _metric_values(entry, registry)
    return CheckResult("deterministic", a == b, "same values on the same state" if a == b else f"{a} vs {b}")


METRIC_CHECKS: tuple[tuple[str, Callable[[Registered, Registry], CheckResult]], ...] = (
    ("computes", _metric_computes), ("columns", _metric_columns), ("deterministic", _metric_deterministic),
)


def _run(checks, *args) -> list[CheckResult]:
    out = []
    for check, fn in checks:
        state = torch.random.get_rng_state()
        try:
            out.append(fn(*args))
        except Exception as exc:  # noqa: BLE001 - a plugin's exception is a failed check, not a crash
            out.append(CheckResult(check, False, f"{type(exc).__name__}: {exc}".strip()))
        finally:
            torch.random.set_rng_state(state)
    return out


def check_task(name: str, registry: Registry | None = None) -> list[CheckResult]:
    registry = registry if registry is not None else get_registry()
    return _run(TASK_CHECKS, registry.task(name))


def check_metric(name: str, registry: Registry | None = None) -> list[CheckResult]:
    registry = registry if registry is not None else get_registry()
    return _run(METRIC_CHECKS, registry.metric(name), registry)


def _assert(kind: str, name: str, results: list[CheckResult]) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.check}: {r.detail}" for r in failed)
        raise AssertionError(f"{kind} {name!r} fails {len(failed)} conformance check(s):\n{lines}")


def assert_task_conforms(name: str, registry: Registry | None = None) -> None:
    _assert("task", name, check_task(name, registry))


def assert_metric_conforms(name: str, registry: Registry | None = None) -> None:
    _assert("metric", name, check_metric(name, registry))
