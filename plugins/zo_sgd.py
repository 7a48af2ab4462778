"""Zeroth-order SGD (DeepZero-style): gradients estimated from loss values alone, no backward pass.

`Needs.LOSS_ONLY`: the runner never back-propagates; `step` calls `closure(backward=False)` for f(theta) and
once per probe. Two estimators (hyperparameter `estimator`):

  * `coordinate` (DeepZero's CGE, Chen et al. 2024): sample `n_coords` coordinates i uniformly without
    replacement over all parameters; g_i = [f(theta + mu e_i) - f(theta)] / mu on them, 0 elsewhere (a
    sparse forward-difference gradient, not rescaled; with n_coords >= the parameter count it is the full
    forward-difference gradient). 1 + n_coords forward passes per step.
  * `random` (RGE): g = (1/q) sum_j [f(theta + mu u_j) - f(theta)] / mu * u_j, u_j ~ N(0, I), q =
    `n_directions`. E[u u^T] = I, so the estimate is unbiased as mu -> 0. 1 + q forward passes per step.

Then SGD with optional heavy-ball momentum: b <- momentum b + g, theta <- theta - lr (b or g), plus L2 weight
decay added to g. Sampling uses the global torch RNG, so a seeded run (and a state_dict round trip under the
same seed) is reproducible. Parameters are perturbed in place and restored from saved copies, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl

ESTIMATORS = ("coordinate", "random")


class ZOSGD(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-3, mu: float = 5e-3, estimator: str = "coordinate",
                 n_coords: int = 16, n_directions: int = 8, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if mu <= 0 or n_coords < 1 or n_directions < 1:
            raise ValueError("mu must be positive and n_coords, n_directions at least 1")
        super().__init__(params, dict(lr=lr, mu=mu, estimator=estimator, n_coords=n_coords,
                                      n_directions=n_directions, momentum=momentum, weight_decay=weight_decay))

    @staticmethod
    def _loss(closure: Callable[..., torch.Tensor]) -> float:
        return float(closure(backward=False))

    @torch.no_grad()
    def estimate(self, closure: Callable[..., torch.Tensor], group: dict[str, Any]) -> list[torch.Tensor]:
        """The zeroth-order gradient estimate for one group's parameters (also used by the tests)."""
        params, mu = group["params"], group["mu"]
        f0 = self._loss(closure)
        est = [torch.zeros_like(p) for p in params]
        if group["estimator"] == "coordinate":
            sizes = [p.numel() for p in params]
            total = sum(sizes)
            chosen = torch.randperm(total)[: min(group["n_coords"], total)].tolist()
            offsets = [0]
            for s in sizes:
                offsets.append(offsets[-1] + s)
            for flat_index in chosen:
                k = next(i for i in range(len(params)) if flat_index < offsets[i + 1])
                j = flat_index - offsets[k]
                view = params[k].view(-1)
                old = view[j].clone()
                view[j] += mu
                f = self._loss(closure)
                view[j] = old
                est[k].view(-1)[j] = (f - f0) / mu
        else:
            saved = [p.detach().clone() for p in params]
            q = group["n_directions"]
            for _ in range(q):
                us = [torch.randn_like(p) for p in params]
                for p, u in zip(params, us, strict=True):
                    p.add_(u, alpha=mu)
                f = self._loss(closure)
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)
                for e, u in zip(est, us, strict=True):
                    e.add_(u, alpha=(f - f0) / (mu * q))
        return est

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        if closure is None:
            raise RuntimeError("zo-sgd needs the loss-only closure (closure(backward=False)); needs=loss-only")
        loss = None
        for group in self.param_groups:
            if not group["params"]:
                continue
            est = self.estimate(closure, group)
            for p, g in zip(group["params"], est, strict=True):
                if group["weight_decay"]:
                    g.add_(p, alpha=group["weight_decay"])
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = g.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                    g = state["momentum_buffer"]
                p.add_(g, alpha=-group["lr"])
        return loss


def _build(params: Iterable[Any], **hp: Any) -> ZOSGD:
    return ZOSGD(params, **hp)


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="zo-sgd",
            build=_build,
            defaults={"lr": 1e-3, "mu": 5e-3, "estimator": "coordinate", "n_coords": 16, "n_directions": 8,
                      "momentum": 0.0, "weight_decay": 0.0},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "mu": ("log-uniform", 1e-4, 1e-1),
                          "momentum": ("uniform", 0.0, 0.95)},
            needs=Needs.LOSS_ONLY,
            paper="Chen et al. 2024, DeepZero: Scaling up Zeroth-Order Optimization for Deep Model Training, "
            "arXiv:2310.02025",
            summary="Zeroth-order SGD: coordinate-wise (sampled) or random-direction forward differences, "
            "forward passes only",
        ),
    ]
