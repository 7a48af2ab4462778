"""Runs metric plugins on a trial's current state, isolating each one's failures.

A metric that raises or returns a non-finite value is recorded as failed (null value, error text); it
never fails the trial. Hessian-vector products are counted so that every metric's cost is on record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from optbench.registry import Registered
from optbench.specs import MetricContext, TaskInstance


def make_hvp(task: TaskInstance, params: list[torch.Tensor], counter: list[int]):
    """HVP on the task's fixed curvature batch by double backward; the first-order graph is reused."""
    cache: dict[str, tuple[torch.Tensor, ...]] = {}

    def grads() -> tuple[torch.Tensor, ...]:
        if "g" not in cache:
            with torch.enable_grad():
                loss = task.curvature_loss()
                cache["g"] = torch.autograd.grad(loss, params, create_graph=True)
        return cache["g"]

    def hvp(vs: list[torch.Tensor]) -> list[torch.Tensor]:
        g = grads()
        with torch.enable_grad():
            out = torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True, allow_unused=True)
        counter[0] += 1
        return [torch.zeros_like(p) if o is None else o.detach() for p, o in zip(params, out, strict=True)]

    return hvp


@dataclass
class MetricResults:
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    points: list[tuple[str, str, float]] = field(default_factory=list)
    hvp_calls: int = 0


def compute_metrics(
    metrics: Sequence[Registered], task: TaskInstance, params: list[torch.Tensor], step: int, device: torch.device
) -> MetricResults:
    out = MetricResults()
    if not metrics:
        return out
    counter = [0]
    task.eval()
    try:
        exact = task.exact_hessian_eigenvalues()
        ctx = MetricContext(task=task, params=params, step=step, device=device,
                            hvp=make_hvp(task, params, counter), exact_eigenvalues=exact)
        for reg in metrics:
            before = counter[0]
            try:
                values = dict(reg.spec.compute(ctx) or {})
                bad = [k for k, v in values.items() if v is None or not math.isfinite(float(v))]
                if bad:
                    raise ValueError(f"returned a non-finite value for {', '.join(bad)}")
                out.values.update({k: float(v) for k, v in values.items()})
                out.values[f"{reg.name}.hvps"] = float(counter[0] - before)
            except Exception as exc:  # noqa: BLE001 - a broken metric must not fail the trial
                out.errors[reg.name] = f"metric plugin {reg.plugin!r} ({reg.distribution}): {type(exc).__name__}: {exc}"
        out.points = list(ctx.extra_points)
    finally:
        task.train()
    out.hvp_calls = counter[0]
    return out
