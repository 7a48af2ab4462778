"""Entropy-SGD (Chaudhari et al. 2017): descend the local entropy instead of the loss. An inner SGLD loop
samples around the iterate x; the outer step moves x towards the running mean mu of those samples.

  gamma_t = gamma * (1 + scoping)^t                          (scoping: the coupling grows over time)
  x' <- x, mu <- x
  L times:  x' <- x' - eta' (grad f(x') - gamma_t (x - x') + eps / sqrt(eta'/2) * xi),  xi ~ N(0, I)
            mu <- beta mu + (1 - beta) x'
  outer gradient  g = gamma_t (x - mu)  (+ weight_decay x), into SGD with (Nesterov) momentum.

Defaults as in REFERENCES.md / the official ucla-vision/entropy-sgd code: L 20, gamma 0.03, scoping 1e-3,
noise eps 1e-4, inner lr eta' 0.1, beta 0.75. Two documented differences from the official code: its outer
gradient is (x - mu) with gamma folded into the learning rate (we use the paper's gamma (x - mu), so our lr
is theirs divided by gamma: default lr 1.0), and the inner loop here has no momentum. The first inner
gradient is taken at x' = x, which the runner's pre-step backward already computed, so a step costs L
forward/backward passes in all (L - 1 closure calls). `Needs.CLOSURE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl


class EntropySGD(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1.0, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, L: int = 20, gamma: float = 0.03, scoping: float = 1e-3,
                 noise: float = 1e-4, inner_lr: float = 0.1, beta: float = 0.75) -> None:
        if L < 1:
            raise ValueError(f"L (inner SGLD steps) must be at least 1, got {L}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, L=L,
                                      gamma=gamma, scoping=scoping, noise=noise, inner_lr=inner_lr, beta=beta))

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        if closure is None:
            raise RuntimeError("entropy-sgd needs a closure that re-evaluates loss and gradients (needs=closure)")
        params = [p for g in self.param_groups for p in g["params"]]
        groups = [g for g in self.param_groups for _ in g["params"]]
        L = max(g["L"] for g in self.param_groups)
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
        x = [p.detach().clone() for p in params]
        mu = [p.detach().clone() for p in params]
        gammas = [g["gamma"] * (1 + g["scoping"]) ** self.state[p]["step"] for p, g in zip(params, groups, strict=True)]
        loss = None
        for i in range(L):
            if i > 0:  # the first inner gradient, at x' = x, is the runner's pre-step one
                with torch.enable_grad():
                    loss = closure()
            for p, x0, m, g, gam in zip(params, x, mu, groups, gammas, strict=True):
                if p.grad is None:
                    continue
                xi = torch.randn_like(p)
                dw = p.grad - gam * (x0 - p) + (g["noise"] / math.sqrt(0.5 * g["inner_lr"])) * xi
                p.add_(dw, alpha=-g["inner_lr"])
                m.mul_(g["beta"]).add_(p, alpha=1 - g["beta"])
        for p, x0, m, g, gam in zip(params, x, mu, groups, gammas, strict=True):
            p.copy_(x0)
            state = self.state[p]
            state["step"] += 1
            d = gam * (x0 - m)
            if g["weight_decay"]:
                d.add_(p, alpha=g["weight_decay"])
            if g["momentum"]:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()
                else:
                    state["momentum_buffer"].mul_(g["momentum"]).add_(d)
                buf = state["momentum_buffer"]
                d = d.add(buf, alpha=g["momentum"]) if g["nesterov"] else buf
            p.add_(d, alpha=-g["lr"])
        return loss


def _build(params: Iterable[Any], **hp: Any) -> EntropySGD:
    return EntropySGD(params, **hp)


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="entropy-sgd",
            build=_build,
            defaults={"lr": 1.0, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0, "L": 20, "gamma": 0.03,
                      "scoping": 1e-3, "noise": 1e-4, "inner_lr": 0.1, "beta": 0.75},
            search_space={"lr": ("log-uniform", 1e-2, 10.0), "gamma": ("log-uniform", 1e-3, 1.0),
                          "inner_lr": ("log-uniform", 1e-3, 1.0)},
            needs=Needs.CLOSURE,
            paper="Chaudhari et al. 2017, Entropy-SGD: Biasing Gradient Descent Into Wide Valleys, arXiv:1611.01838",
            summary="Entropy-SGD: L inner SGLD steps estimate the local-entropy gradient gamma (x - mu); L fwd/bwd "
            "per step",
        ),
    ]
