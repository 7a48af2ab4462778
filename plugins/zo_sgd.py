"""Zeroth-order SGD as DeepZero trains networks (Chen et al., ICLR 2024, arXiv:2310.02025; official code
github.com/OPTML-Group/DeepZero): gradients estimated from loss values alone, no backward pass, then SGD.

`Needs.LOSS_ONLY`: the runner never back-propagates; `step` calls `closure(backward=False)` for f(theta) and once
per perturbation. Estimators (hyperparameter `estimator`):

  * `coordinate` (DeepZero's CGE, the default): g_i = [f(theta + mu e_i) - f(theta)] / mu for EVERY coordinate
    inside a sparsity mask, 0 outside it. Each weight tensor (2 or more dimensions) keeps a random fraction
    1 - `sparsity` of its coordinates; other tensors (biases, norm scales) are estimated in full, as in DeepZero.
    The mask is redrawn every `mask_interval` steps. No rescaling is needed: every coordinate in the mask gets its
    own forward difference. Cost: 1 + (number of coordinates in the mask) forward passes per step.
  * `random` (RGE, a named alternative): g = (1/q) sum_j [f(theta + mu u_j) - f(theta)] / mu * u_j with
    u_j ~ N(0, I), q = `n_directions`; unbiased as mu -> 0. 1 + q forward passes per step.

The update is torch's SGD on g (L2 weight decay added to g, heavy-ball momentum with the first buffer equal to the
first direction, optional Nesterov), which is what DeepZero's training script runs. Rule, defaults, sources and
deviations (how the mask is chosen): docs/optimizers.md (section ZO-SGD); the differential test against a
transcription of DeepZero's CGE: tests/fidelity/test_fid_zo_sgd.py. Sampling uses the global torch RNG, so a
seeded run is reproducible. Parameters are perturbed in place and restored exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl

ESTIMATORS = ("coordinate", "random")


def draw_mask(p: torch.Tensor, sparsity: float) -> torch.Tensor | None:
    """Flat indices (ascending) of the coordinates of p to estimate, or None for all of them: a weight tensor keeps
    numel - round(sparsity * numel) coordinates drawn uniformly without replacement (global RNG)."""
    n = p.numel()
    if p.dim() < 2 or sparsity <= 0:
        return None
    keep = n - round(sparsity * n)
    return torch.randperm(n)[:keep].sort().values


class ZOSGD(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 0.1, mu: float = 5e-3, estimator: str = "coordinate",
                 sparsity: float = 0.9, mask_interval: int = 100, n_directions: int = 8, momentum: float = 0.9,
                 nesterov: bool = False, weight_decay: float = 5e-4) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if mu <= 0 or n_directions < 1 or mask_interval < 1:
            raise ValueError("mu must be positive and n_directions, mask_interval at least 1")
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        super().__init__(params, dict(lr=lr, mu=mu, estimator=estimator, sparsity=sparsity,
                                      mask_interval=mask_interval, n_directions=n_directions, momentum=momentum,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch casts state tensors to the parameter's dtype on load; the masks are indices and must stay integers."""
        super().load_state_dict(state_dict)
        for st in self.state.values():
            if "masks" in st:
                st["masks"] = [None if m is None else m.long() for m in st["masks"]]

    @staticmethod
    def _loss(closure: Callable[..., torch.Tensor]) -> float:
        return float(closure(backward=False))

    def _masks(self, group: dict[str, Any]) -> list[torch.Tensor | None]:
        """The group's current masks, redrawn every mask_interval steps (the first included)."""
        params = group["params"]
        first = self.state[params[0]]
        t = first.get("step", 0)
        if t % group["mask_interval"] == 0 or "masks" not in first:
            first["masks"] = [draw_mask(p, group["sparsity"]) for p in params]
        return first["masks"]

    @torch.no_grad()
    def estimate(self, closure: Callable[..., torch.Tensor], group: dict[str, Any]) -> list[torch.Tensor]:
        """The zeroth-order gradient estimate for one group's parameters (also used by the tests)."""
        params, mu = group["params"], group["mu"]
        masks = self._masks(group) if group["estimator"] == "coordinate" else None
        f0 = self._loss(closure)
        est = [torch.zeros_like(p) for p in params]
        if masks is not None:
            for p, e, mask in zip(params, est, masks, strict=True):
                view, out = p.view(-1), e.view(-1)
                for j in (range(p.numel()) if mask is None else mask.tolist()):
                    old = view[j].clone()
                    view[j] += mu
                    f = self._loss(closure)
                    view[j] = old
                    out[j] = (f - f0) / mu
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
        for group in self.param_groups:
            if not group["params"]:
                continue
            est = self.estimate(closure, group)
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p, g in zip(group["params"], est, strict=True):
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                if wd != 0:
                    g = g.add(p, alpha=wd)
                if mom != 0:
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.clone(g).detach()
                    else:
                        state["momentum_buffer"].mul_(mom).add_(g)
                    buf = state["momentum_buffer"]
                    g = g.add(buf, alpha=mom) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)
        return None


def _build(params: Iterable[Any], **hp: Any) -> ZOSGD:
    return ZOSGD(params, **hp)


# DeepZero's published ResNet-20/CIFAR-10 run (README and tools/misc.py of OPTML-Group/DeepZero): sparsity 0.9,
# zoo step size 5e-3, SGD lr 0.1, momentum 0.9, weight decay 5e-4, no Nesterov. mask_interval 100 steps stands in for
# its "every 5 epochs" (optbench tasks have no epochs; see docs/optimizers.md).
DEFAULTS = {"lr": 0.1, "mu": 5e-3, "estimator": "coordinate", "sparsity": 0.9, "mask_interval": 100,
            "n_directions": 8, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4}


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="zo-sgd",
            build=_build,
            defaults=DEFAULTS,
            search_space={"lr": ("log-uniform", 1e-4, 1.0), "mu": ("log-uniform", 1e-4, 1e-1),
                          "momentum": ("uniform", 0.0, 0.95)},
            needs=Needs.LOSS_ONLY,
            paper="Chen et al. 2024, DeepZero: Scaling up Zeroth-Order Optimization for Deep Model Training, "
            "arXiv:2310.02025 (code: OPTML-Group/DeepZero)",
            summary="Zeroth-order SGD (DeepZero CGE): a forward difference for every coordinate in a sparse mask, "
            "forward passes only",
        ),
    ]
