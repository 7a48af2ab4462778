"""Entropy-SGD (Chaudhari et al., ICLR 2017, arXiv:1611.01838; official code github.com/ucla-vision/entropy-sgd):
descend the local entropy instead of the loss. An inner SGLD loop samples around the iterate x, each inner step on
a fresh mini-batch; the outer step moves x along x - mu, mu the running mean of those samples.

The update rule, the defaults (the paper's CIFAR-10 setup), the gamma schedule and every deviation are in
docs/optimizers.md (section Entropy-SGD); tests/fidelity/test_fid_entropy_sgd.py checks the plugin against a
transcription of the official PyTorch code.

Closure protocol (`Needs.CLOSURE`): the runner's pre-step evaluation plays the role of the official first closure
call (its gradient seeds the outer momentum buffer on the first step and is the update when L = 0); each of the L
inner steps calls `closure(fresh_batch=True)`, which draws the next training batch from the run's stream. A step
therefore costs L + 1 forward/backward passes and L + 1 batches, as in the official training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl

MOMENTUM_INITS = ("gradient", "zero")


class EntropySGD(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1.0, momentum: float = 0.9, nesterov: bool = True,
                 dampening: float = 0.0, weight_decay: float = 1e-3, L: int = 20, gamma: float = 0.03,
                 scoping: float = 1e-3, noise: float = 1e-4, inner_lr: float = 0.1, beta: float = 0.75,
                 momentum_init: str = "gradient") -> None:
        if L < 0:
            raise ValueError(f"L (inner SGLD steps) must be at least 0, got {L}")
        if momentum_init not in MOMENTUM_INITS:
            raise ValueError(f"momentum_init must be one of {MOMENTUM_INITS}, got {momentum_init!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                                      weight_decay=weight_decay, L=L, gamma=gamma, scoping=scoping, noise=noise,
                                      inner_lr=inner_lr, beta=beta, momentum_init=momentum_init))

    @staticmethod
    def _momentum(d: torch.Tensor, buf: torch.Tensor, g: dict[str, Any]) -> torch.Tensor:
        """Heavy-ball / Nesterov on d with buffer buf, the official (torch-0.x SGD) form; returns the direction."""
        buf.mul_(g["momentum"]).add_(d, alpha=1 - g["dampening"])
        if g["nesterov"]:
            return d.add_(buf, alpha=g["momentum"])
        return buf  # aliased, as the official (dw = mdw): later in-place additions land in the buffer too

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        if closure is None:
            raise RuntimeError("entropy-sgd needs the closure (needs=closure): its inner loop draws fresh batches")
        entries = [(p, g) for g in self.param_groups for p in g["params"] if p.grad is not None]
        L = max(g["L"] for g in self.param_groups)
        for p, g in entries:
            st = self.state[p]
            if "step" not in st:
                st["step"] = 0
                # the official seeds the outer momentum buffer with the first step's gradient
                st["outer_buf"] = p.grad.clone() if g["momentum_init"] == "gradient" else torch.zeros_like(p)
                st["noise"] = torch.zeros_like(p)
        x = [p.detach().clone() for p, _ in entries]
        mu = [p.detach().clone() for p, _ in entries]
        inner_buf = [torch.zeros_like(p) for p, _ in entries]
        for p, _ in entries:
            self.state[p]["noise"].normal_()  # the official redraws its noise buffer here (it only advances the RNG)
        # gamma (1 + scoping)^t with t the number of parameter updates including this one (the paper's Lua code)
        gammas = [g["gamma"] * (1 + g["scoping"]) ** (self.state[p]["step"] + 1) for p, g in entries]
        loss = None
        for _ in range(L):
            with torch.enable_grad():
                loss = closure(fresh_batch=True)
            for (p, g), x0, m, buf, gam in zip(entries, x, mu, inner_buf, gammas, strict=True):
                if p.grad is None:
                    continue
                dw = p.grad
                if g["weight_decay"] > 0:
                    dw.add_(p, alpha=g["weight_decay"])
                if g["momentum"] > 0:
                    dw = self._momentum(dw, buf, g)
                eta = self.state[p]["noise"].normal_()
                dw.add_(x0 - p, alpha=-gam).add_(eta, alpha=g["noise"] / math.sqrt(0.5 * g["inner_lr"]))
                p.add_(dw, alpha=-g["inner_lr"])
                m.mul_(g["beta"]).add_(p, alpha=1 - g["beta"])
        for (p, g), x0, m in zip(entries, x, mu, strict=True):
            st = self.state[p]
            st["step"] += 1
            if L > 0:
                p.copy_(x0)
                d = p - m  # the outer direction x - mu (no gamma factor, as the official)
            else:
                d = p.grad.clone()
            if g["weight_decay"] > 0:
                d.add_(p, alpha=g["weight_decay"])
            if g["momentum"] > 0:
                d = self._momentum(d, st["outer_buf"], g)
            p.add_(d, alpha=-g["lr"])
        return loss


def _build(params: Iterable[Any], **hp: Any) -> EntropySGD:
    return EntropySGD(params, **hp)


# The paper's CIFAR-10 setup (README and train.lua of ucla-vision/entropy-sgd: L 20, gamma 0.03, L2 1e-3, scoping
# 1e-3, noise 1e-4, Nesterov momentum 0.9, initial lr 1); inner lr 0.1 and beta 0.75 are fixed in the official code.
DEFAULTS = {"lr": 1.0, "momentum": 0.9, "nesterov": True, "dampening": 0.0, "weight_decay": 1e-3, "L": 20,
            "gamma": 0.03, "scoping": 1e-3, "noise": 1e-4, "inner_lr": 0.1, "beta": 0.75, "momentum_init": "gradient"}


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="entropy-sgd",
            build=_build,
            defaults=DEFAULTS,
            search_space={"lr": ("log-uniform", 1e-2, 10.0), "gamma": ("log-uniform", 1e-3, 1.0),
                          "inner_lr": ("log-uniform", 1e-3, 1.0)},
            needs=Needs.CLOSURE,
            paper="Chaudhari et al. 2017, Entropy-SGD: Biasing Gradient Descent Into Wide Valleys, arXiv:1611.01838 "
            "(code: ucla-vision/entropy-sgd)",
            summary="Entropy-SGD: L inner SGLD steps on fresh batches estimate the local-entropy direction x - mu; "
            "L+1 fwd/bwd per step",
        ),
    ]
