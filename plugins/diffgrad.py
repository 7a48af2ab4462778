"""diffGrad (Dubey et al. 2019): Adam whose step is scaled per coordinate by the "friction"
xi = sigmoid(|g_prev - g|), so coordinates whose gradient barely changes (a flat stretch or a minimum) slow down.

    m <- b1 m + (1-b1) g ;  v <- b2 v + (1-b2) g^2 ;  xi = sigmoid(|g_prev - g|)   (g_prev = 0 at step 1)
    theta <- theta*(1 - lr*wd) - lr * xi * m_hat / (sqrt(v_hat) + eps)

`eps_mode` chooses where eps sits, the one place the paper and the code differ:
  * ``paper`` (default): eps is added to sqrt(v_hat) of the bias-corrected v, as the paper's algorithm writes it.
  * ``official``: the official code (shivram1987/diffGrad) and pytorch-optimizer's DiffGrad use Adam's old
    efficient form step = lr*sqrt(1-b2^t)/(1-b1^t) and denominator sqrt(v) + eps, i.e. eps/sqrt(1-b2^t) in the
    paper's terms. tests/test_zoo_reference.py checks this mode against pytorch-optimizer 4.1.0 to 1e-5.
Weight decay is decoupled (AdamW style, pytorch-optimizer's default); the paper has none, and the default is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

EPS_MODES = ("paper", "official")


class DiffGrad(torch.optim.Optimizer):
    """Adam with the diffGrad friction coefficient; see the module docstring."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        eps_mode: str = "paper",
    ) -> None:
        if eps_mode not in EPS_MODES:
            raise ValueError(f"eps_mode must be one of {EPS_MODES}, got {eps_mode!r}")
        if lr <= 0 or eps < 0:
            raise ValueError("lr must be positive and eps non-negative")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      eps_mode=eps_mode))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["previous_grad"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v, prev = state["exp_avg"], state["exp_avg_sq"], state["previous_grad"]
                if wd:
                    p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                bc1, bc2 = 1 - beta1**t, 1 - beta2**t
                xi = prev.sub_(g).abs_().sigmoid_()  # reuses the previous-gradient buffer, refilled below
                if group["eps_mode"] == "paper":
                    denom = (v / bc2).sqrt_().add_(eps)
                    p.addcdiv_(xi.mul_(m), denom, value=-lr / bc1)
                else:
                    denom = v.sqrt().add_(eps)
                    p.addcdiv_(xi.mul_(m), denom, value=-lr * math.sqrt(bc2) / bc1)
                prev.copy_(g)
        return loss


def _build(params: Iterable[Any], **hp: Any) -> DiffGrad:
    return DiffGrad(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                    weight_decay=hp["weight_decay"], eps_mode=hp["eps_mode"])


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="diffgrad",
            build=_build,
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                      "eps_mode": "paper"},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1)},
            paper="Dubey et al. 2019, diffGrad: An Optimization Method for Convolutional Neural Networks, "
            "arXiv:1909.11015",
            summary="diffGrad: Adam scaled by sigmoid(|g_prev - g|); eps_mode=paper (default) or official",
        )
    ]
