"""Runs metric plugins on a trial's current state, isolating each one's failures.

A metric that raises or returns a non-finite value is recorded as failed (null value, error text); it
never fails the trial. Hessian-vector products are counted so that every metric's cost is on record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from optbench.registry import Registered
from optbench.specs import MetricContext, TaskInstance


def _synchronize(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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

    batched_ok = [True]

    def batched(vs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Products with k directions at once (each tensor shaped (k, *param.shape)): one double backward
        vectorised over the directions; a model whose ops cannot be vectorised falls back to k products."""
        k = vs[0].shape[0]
        if batched_ok[0]:
            g = grads()
            try:
                with torch.enable_grad():
                    out = torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True, allow_unused=True,
                                              is_grads_batched=True)
            except RuntimeError:
                batched_ok[0] = False
            else:
                counter[0] += k
                return [torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device) if o is None else o.detach()
                        for p, o in zip(params, out, strict=True)]
        rows = [hvp([v[i] for v in vs]) for i in range(k)]
        return [torch.stack([r[j] for r in rows]) for j in range(len(params))]

    hvp.batched = batched  # type: ignore[attr-defined]
    return hvp


@dataclass
class MetricResults:
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    points: list[tuple[str, str, float]] = field(default_factory=list)
    hvp_calls: int = 0
    #: per metric: {"hvp_calls": products it paid for, "seconds": its wall time (device synchronised)}
    costs: dict[str, dict[str, float]] = field(default_factory=dict)


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
            started = time.perf_counter()
            try:
                values = dict(reg.spec.compute(ctx) or {})
                bad = [k for k, v in values.items() if v is None or not math.isfinite(float(v))]
                if bad:
                    raise ValueError(f"returned a non-finite value for {', '.join(bad)}")
                out.values.update({k: float(v) for k, v in values.items()})
            except Exception as exc:  # noqa: BLE001 - a broken metric must not fail the trial
                out.errors[reg.name] = f"metric plugin {reg.plugin!r} ({reg.distribution}): {type(exc).__name__}: {exc}"
            finally:
                _synchronize(device)
                out.costs[reg.name] = {"hvp_calls": counter[0] - before,
                                       "seconds": round(time.perf_counter() - started, 6)}
        out.points = list(ctx.extra_points)
    finally:
        task.train()
    out.hvp_calls = counter[0]
    return out
