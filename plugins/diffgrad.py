"""diffGrad (Dubey et al. 2019): Adam whose step is scaled per coordinate by the "friction"
xi = sigmoid(|g_prev - g|), so coordinates whose gradient barely changes (a flat stretch or a minimum) slow down.

The default is the official code's rule (shivram1987/diffGrad, diffGrad_v2.py, the version that fixes the
previous-gradient bug), which docs/optimizers.md spells out; tests/fidelity/test_adaptive_fidelity.py checks it
against a transcription of that code on a real network. Two named options reproduce the paper and
pytorch-optimizer instead:
  * ``eps_mode``: ``official`` (default) adds eps to sqrt(v) of the *uncorrected* second moment and folds both
    bias corrections into the step size (Adam's old "efficient" form); ``paper`` adds eps to sqrt(v_hat) of the
    bias-corrected moment, as the paper's algorithm writes it. They differ by eps/sqrt(1 - b2^t) in the
    denominator, which matters while sqrt(v) is near eps.
  * ``weight_decay_mode``: ``l2`` (default, official) adds wd*theta to the gradient before the moments and the
    friction; ``decoupled`` shrinks theta by (1 - lr*wd) as AdamW and pytorch-optimizer's DiffGrad do.

`impl` picks the step kernel: ``loop`` (the reference, one tensor at a time in eager torch), ``fused`` (one
torch.compile'd pass over p, g and state per tensor, see plugins/fused.py), ``flat`` (the loop's operations once
on flat state buffers, plugins/flatstate.py) or ``auto`` (fused on >= 1M parameters when compiling works, flat
below that, the loop where flat does not apply: mixed dtypes, unequal step counts).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

from . import fused
from .flatstate import FlatState, FlatStateMixin, uniform, wanted

EPS_MODES = ("official", "paper")
WEIGHT_DECAY_MODES = ("l2", "decoupled")


def diffgrad_loop(params, grads, ms, vs, prevs, steps, lr: float, beta1: float, beta2: float, eps: float,
                  wd: float, paper_eps: bool, decoupled: bool) -> None:
    """The reference step, one tensor at a time; `steps` are the (already incremented) step counts."""
    for p, g, m, v, prev, t in zip(params, grads, ms, vs, prevs, steps, strict=True):
        if wd and decoupled:
            p.mul_(1 - lr * wd)
        elif wd:
            g = g.add(p, alpha=wd)
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        xi = prev.sub_(g).abs_().sigmoid_()  # reuses the previous-gradient buffer, refilled below
        if paper_eps:
            denom = (v / bc2).sqrt_().add_(eps)
            p.addcdiv_(xi.mul_(m), denom, value=-lr / bc1)
        else:
            denom = v.sqrt().add_(eps)
            p.addcdiv_(xi.mul_(m), denom, value=-lr * math.sqrt(bc2) / bc1)
        prev.copy_(g)


def diffgrad_flat(flat: FlatState, params, grads, t: int, lr: float, beta1: float, beta2: float, eps: float,
                  wd: float, paper_eps: bool, decoupled: bool) -> None:
    """`diffgrad_loop` for many small tensors at one step count `t`: the loop's operations, in its order, once
    on the group's flat buffers (~15 dispatches whatever the number of tensors). The loop's
    `p.addcdiv_(x, denom, value=a)` computes p + (a * x) / denom; the flat step forms (x * a) / denom and adds
    it with one multi-tensor add, the same arithmetic."""
    g, m, v, prev = flat.g, flat.bufs["exp_avg"], flat.bufs["exp_avg_sq"], flat.bufs["previous_grad"]
    torch._foreach_copy_(flat.g_views, grads)
    if wd and decoupled:
        torch._foreach_mul_(params, 1 - lr * wd)
    elif wd:
        torch._foreach_copy_(flat.out_views, params)
        g.add_(flat.out, alpha=wd)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    xi = prev.sub_(g).abs_().sigmoid_()
    if paper_eps:
        denom, value = (v / bc2).sqrt_().add_(eps), -lr / bc1
    else:
        denom, value = v.sqrt().add_(eps), -lr * math.sqrt(bc2) / bc1
    torch.div(xi.mul_(m).mul_(value), denom, out=flat.out)
    torch._foreach_add_(params, flat.out_views)
    prev.copy_(g)


IMPLS = (*fused.IMPLS, "flat")


class DiffGrad(FlatStateMixin, torch.optim.Optimizer):
    """Adam with the diffGrad friction coefficient; see the module docstring."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        eps_mode: str = "official",
        weight_decay_mode: str = "l2",
        impl: str = "auto",
    ) -> None:
        if eps_mode not in EPS_MODES:
            raise ValueError(f"eps_mode must be one of {EPS_MODES}, got {eps_mode!r}")
        if weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {weight_decay_mode!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if lr <= 0 or eps < 0:
            raise ValueError("lr must be positive and eps non-negative")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      eps_mode=eps_mode, weight_decay_mode=weight_decay_mode, impl=impl))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            ms, vs, prevs, steps = [], [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["previous_grad"] = torch.zeros_like(p)
                state["step"] += 1
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
                prevs.append(state["previous_grad"])
                steps.append(state["step"])
            beta1, beta2 = group["betas"]
            args = (params, [p.grad for p in params], ms, vs, prevs, steps, group["lr"], beta1, beta2,
                    group["eps"], group["weight_decay"], group["eps_mode"] == "paper",
                    group["weight_decay_mode"] == "decoupled")
            asked = group.get("impl", "auto")
            impl = fused.choose(params, asked, fused.diffgrad_step)
            if wanted(asked, impl) and uniform(params) and len(set(steps)) == 1:
                flat = self.flat_state(gi, params, ("exp_avg", "exp_avg_sq", "previous_grad"))
                diffgrad_flat(flat, params, args[1], steps[0], *args[6:])
                continue
            if impl != "fused":
                diffgrad_loop(*args)
                continue
            h = fused.scalars(params[0], group["lr"], beta1, beta2, group["eps"], group["weight_decay"])
            coefs = fused.scalars(params[0], *(c for t in steps for c in (1 - beta1**t, 1 - beta2**t))).view(-1, 2)
            fused.run(fused.diffgrad_step, functools.partial(fused.call_with, diffgrad_loop, args), *args[:5], h,
                      coefs, *args[-2:])
        return loss


def _build(params: Iterable[Any], **hp: Any) -> DiffGrad:
    return DiffGrad(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                    weight_decay=hp["weight_decay"], eps_mode=hp["eps_mode"],
                    weight_decay_mode=hp["weight_decay_mode"], impl=hp.get("impl", "auto"))


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="diffgrad",
            build=_build,
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                      "eps_mode": "official", "weight_decay_mode": "l2"},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "weight_decay": ("log-uniform", 1e-6, 1e-2)},
            paper="Dubey et al. 2019, diffGrad: An Optimization Method for Convolutional Neural Networks, "
            "arXiv:1909.11015",
            summary="diffGrad: Adam scaled by sigmoid(|g_prev - g|), the official code's rule (eps_mode, "
            "weight_decay_mode select the paper's / AdamW-style variants)",
        )
    ]
