"""Lion (Chen et al. 2023) and Lion-IB, Lion with the tanh information-bottleneck update of Tan & Huang.

Lion-IB, as optbench reads the paper (its Algorithm 1 could not be read; see REFERENCES.md): each
coordinate's update direction is a sign observed through Gaussian noise, whose Bayes-optimal estimate is
tanh(mu * x / sigma^2). With Lion's interpolation c = beta1*m + (1-beta1)*g the update is

    u = tanh(gain * kappa * c),   theta <- theta*(1 - lr*wd) - lr*u

and kappa has two modes:
  * ``snr`` (default): kappa = |m_hat| / (sigma_hat^2 + eps) with bias-corrected EMAs m_hat, v_hat of the
    gradient and its square (beta2) and sigma_hat^2 = max(v_hat - m_hat^2, 0), updated with the current
    gradient before use. kappa*c is roughly the signal-to-noise ratio: confident coordinates move like
    Lion, noisy ones move less. One more state tensor than Lion.
  * ``temperature``: kappa = 1 / (tau * RMS(c)) per tensor, no extra state.
As gain -> infinity both modes equal Lion exactly (tanh saturates to sign, and tanh(0) = sign(0) = 0).

CPU steps loop over tensors with in-place kernels (measured faster than torch._foreach_* for Lion on
this CPU); CUDA uses the foreach kernels, where launch count dominates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

_KAPPA_MAX = 1e30  # large enough that tanh saturates, small enough that kappa*c cannot be inf*0


def _use_foreach(params: list[torch.Tensor], foreach: bool | None) -> bool:
    if foreach is not None:
        return foreach
    return bool(params) and all(p.is_cuda for p in params)


class Lion(torch.optim.Optimizer):
    """Lion: sign of an interpolated momentum, decoupled weight decay."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, foreach=foreach))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            grads = [p.grad for p in params]
            ms = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms.append(state["exp_avg"])
            if _use_foreach(params, group["foreach"]):
                if wd:
                    torch._foreach_mul_(params, 1 - lr * wd)
                cs = torch._foreach_lerp(grads, ms, beta1)
                torch._foreach_sign_(cs)
                torch._foreach_add_(params, cs, alpha=-lr)
                torch._foreach_lerp_(ms, grads, 1 - beta2)
            else:
                for p, g, m in zip(params, grads, ms, strict=True):
                    if wd:
                        p.mul_(1 - lr * wd)
                    c = torch.lerp(g, m, beta1)
                    p.add_(c.sign_(), alpha=-lr)
                    m.lerp_(g, 1 - beta2)
        return loss


class LionIB(torch.optim.Optimizer):
    """Lion with a tanh (MMSE sign-estimate) update instead of sign; see the module docstring."""

    MODES = ("snr", "temperature")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        mode: str = "snr",
        gain: float = 1.0,
        tau: float = 1.0,
        eps: float = 1e-12,
        foreach: bool | None = None,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if lr <= 0 or gain <= 0 or tau <= 0:
            raise ValueError("lr, gain and tau must be positive")
        super().__init__(
            params,
            dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, mode=mode, gain=gain, tau=tau, eps=eps,
                 foreach=foreach),
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            gain, eps, mode = group["gain"], group["eps"], group["mode"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if mode == "snr":
                        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m = state["exp_avg"]
                c = torch.lerp(g, m, beta1)
                if mode == "snr":
                    v = state["exp_avg_sq"]
                    m.lerp_(g, 1 - beta2)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    bc = 1 - beta2 ** state["step"]
                    m_hat = m / bc
                    var = (v / bc).sub_(m_hat * m_hat).clamp_(min=0).add_(eps)
                    kappa = m_hat.abs_().div_(var).mul_(gain).clamp_(max=_KAPPA_MAX)
                else:
                    m.lerp_(g, 1 - beta2)
                    rms = c.pow(2).mean().sqrt()
                    kappa = (gain / (group["tau"] * rms.clamp(min=1e-30))).clamp(max=_KAPPA_MAX)
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(c.mul_(kappa).tanh_(), alpha=-lr)
        return loss


def _build_lion(params: Iterable[Any], **hp: Any) -> Lion:
    return Lion(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["weight_decay"])


def _build_lion_ib(params: Iterable[Any], **hp: Any) -> LionIB:
    return LionIB(
        params,
        lr=hp["lr"],
        betas=(hp["beta1"], hp["beta2"]),
        weight_decay=hp["weight_decay"],
        mode=hp["mode"],
        gain=hp["gain"],
        tau=hp["tau"],
        eps=hp["eps"],
    )


LION_PAPER = "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms, arXiv:2302.06675"
IB_PAPER = "Tan & Huang, Information-Theoretic Perspectives on Optimizers, arXiv:2502.20763"


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    lion_defaults = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    return [
        OptimizerSpec(
            name="lion",
            build=_build_lion,
            defaults=lion_defaults,
            search_space={"lr": ("log-uniform", 1e-5, 1e-2), "weight_decay": ("log-uniform", 1e-3, 1.0)},
            paper=LION_PAPER,
            summary="Lion: sign of interpolated momentum, decoupled weight decay",
        ),
        OptimizerSpec(
            name="lion-ib",
            build=_build_lion_ib,
            defaults={**lion_defaults, "mode": "snr", "gain": 1.0, "tau": 1.0, "eps": 1e-12},
            search_space={"lr": ("log-uniform", 1e-5, 1e-2), "gain": ("log-uniform", 0.1, 100.0)},
            paper=IB_PAPER,
            summary="Lion-IB: tanh(kappa*c) update; mode=snr (kappa=|m|/var, default) or temperature "
            "(kappa=1/(tau*RMS(c))); equals Lion as gain->inf",
        ),
    ]
