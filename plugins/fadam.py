"""FAdam (Hwang 2024): Adam read as natural gradient with the diagonal empirical Fisher f.

Per tensor, with t the step:
    b2_t = b2 (1 - b2^(t-1)) / (1 - b2^t)              bias correction folded into the EMA (f_1 = g^2)
    f    <- b2_t f + (1 - b2_t) g^2
    eps_t = min(eps, eps2 * RMS(g))  (eps when RMS(g) = 0)   adaptive epsilon
    D    = f^p + eps_t^(2p)                               (p = 1/2: sqrt(f) + eps_t)
    gbar = g / D ;  gbar /= max(1, RMS(gbar)/clip)        natural gradient clipped by its RMS
    m    <- b1 m + (1 - b1) gbar                         momentum of the natural gradient, no bias correction
    w    = theta / D ;  w /= max(1, RMS(w)/clip)         weight decay preconditioned the same way
    theta <- theta - lr (m + wd * w)
No code was published with the paper. This is pytorch-optimizer's FAdam (which writes the adaptive epsilon as
min(eps, eps2*RMS(g))^(2p)), the reading of the paper's Algorithm 1 that an early revision of lessw2020/FAdam_PyTorch
also implements (its latest revision uses eps*max(1, RMS(g)) instead); tests/fidelity/test_adaptive_fidelity.py
checks it against pytorch-optimizer on a real network. The eps2 default 0.01 is pytorch-optimizer's; the paper's
value could not be confirmed. docs/optimizers.md ("FAdam") has the details. `impl`: loop (the reference),
fused (plugins/fused.py: three compiled stages, the RMS reductions first), flat (`fadam_flat`: the loop's
operations on flat state buffers, each RMS a multi-tensor norm), auto (fused from 1M parameters, flat below).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

from . import fused
from .flatstate import FlatState, FlatStateMixin, uniform, wanted


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean().sqrt()


def fadam_loop(params, grads, ms, fs, steps, lr: float, beta1: float, beta2: float, eps: float, eps2: float,
               clip: float, power: float, wd: float) -> None:
    """The reference FAdam step, one tensor at a time in eager torch; `steps` are the incremented step counts."""
    for p, g, m, f, t in zip(params, grads, ms, fs, steps, strict=True):
        beta2_t = beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t)
        f.mul_(beta2_t).addcmul_(g, g, value=1 - beta2_t)
        rms_g = _rms(g)
        scaled = eps2 * rms_g
        eps_pow = torch.where((rms_g > 0) & (scaled < eps), scaled, torch.full_like(scaled, eps))
        eps_pow = eps_pow ** (2 * power)
        denom = f.pow(power).add_(eps_pow)
        gbar = g / denom
        gbar.div_((_rms(gbar) / clip).clamp_(min=1))
        m.lerp_(gbar, 1 - beta1)
        w = p / denom
        w.div_((_rms(w) / clip).clamp_(min=1))
        p.sub_(w.mul_(wd).add_(m), alpha=lr)


def fadam_flat(flat: FlatState, params, grads, t: int, lr: float, beta1: float, beta2: float, eps: float,
               eps2: float, clip: float, power: float, wd: float) -> None:
    """`fadam_loop` for many small tensors at one step count `t`: the loop's operations on the group's flat
    buffers; each per-tensor RMS is one multi-tensor norm (`FlatState.rms`), and each per-tensor scalar is
    applied with one multi-tensor operation on per-parameter views, so ~30 dispatches per step whatever the
    number of tensors. The scalars are the loop's (same dtype, same value); only the RMS is summed differently."""
    g, m, f = flat.g, flat.bufs["momentum"], flat.bufs["fim"]
    torch._foreach_copy_(flat.g_views, grads)
    beta2_t = beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t)
    f.mul_(beta2_t).addcmul_(g, g, value=1 - beta2_t)
    rms_g = flat.rms(g)
    scaled = eps2 * rms_g
    eps_pow = torch.where((rms_g > 0) & (scaled < eps), scaled, torch.full_like(scaled, eps)) ** (2 * power)
    denom = f.pow(power)
    torch._foreach_add_(flat.split(denom), eps_pow.tolist())
    gbar = g / denom
    torch._foreach_div_(flat.split(gbar), (flat.rms(gbar) / clip).clamp_(min=1).tolist())
    m.lerp_(gbar, 1 - beta1)
    torch._foreach_copy_(flat.out_views, params)
    w = flat.out.div_(denom)
    torch._foreach_div_(flat.split(w), (flat.rms(w) / clip).clamp_(min=1).tolist())
    w.mul_(wd).add_(m)
    torch._foreach_add_(params, flat.out_views, alpha=-lr)


IMPLS = (*fused.IMPLS, "flat")


class FAdam(FlatStateMixin, torch.optim.Optimizer):
    """Fisher Adam; see the module docstring."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        eps2: float = 0.01,
        clip: float = 1.0,
        p: float = 0.5,
        weight_decay: float = 0.1,
        impl: str = "auto",
    ) -> None:
        if lr <= 0 or clip <= 0 or p <= 0 or eps < 0 or eps2 < 0:
            raise ValueError("lr, clip and p must be positive; eps and eps2 non-negative")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, eps2=eps2, clip=clip, p=p,
                                      weight_decay=weight_decay, impl=impl))

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
            ms, fs, steps = [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["momentum"] = torch.zeros_like(p)
                    state["fim"] = torch.zeros_like(p)
                state["step"] += 1
                ms.append(state["momentum"])
                fs.append(state["fim"])
                steps.append(state["step"])
            beta1, beta2 = group["betas"]
            lr, eps, eps2, clip, power, wd = (group[k] for k in ("lr", "eps", "eps2", "clip", "p", "weight_decay"))
            grads = [p.grad for p in params]
            loop_args = (params, grads, ms, fs, steps, lr, beta1, beta2, eps, eps2, clip, power, wd)
            asked = group.get("impl", "auto")
            impl = fused.choose(params, asked, fused.fadam_step)
            if wanted(asked, impl) and uniform(params) and len(set(steps)) == 1:
                flat = self.flat_state(gi, params, ("momentum", "fim"))
                fadam_flat(flat, params, grads, steps[0], lr, beta1, beta2, eps, eps2, clip, power, wd)
            elif impl == "fused":
                h = fused.scalars(params[0], lr, beta1, eps, eps2, clip, wd)
                b2s = fused.scalars(params[0], *(beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t) for t in steps))
                fallback = functools.partial(fused.call_with, fadam_loop, loop_args)
                fused.run(fused.fadam_step, fallback, params, grads, ms, fs, h, b2s, float(power))
            else:
                fadam_loop(*loop_args)
        return loss


def _build(params: Iterable[Any], **hp: Any) -> FAdam:
    return FAdam(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], eps2=hp["eps2"],
                 clip=hp["clip"], p=hp["p"], weight_decay=hp["weight_decay"], impl=hp.get("impl", "auto"))


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="fadam",
            build=_build,
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "eps2": 0.01, "clip": 1.0, "p": 0.5,
                      "weight_decay": 0.1},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "weight_decay": ("log-uniform", 1e-3, 1.0)},
            paper="Hwang 2024, FAdam: Adam is a natural gradient optimizer using diagonal empirical Fisher "
            "information, arXiv:2405.12807",
            summary="FAdam: clipped natural gradient g/(sqrt(f)+eps) with momentum, preconditioned weight decay",
        )
    ]
