"""SAM and GAM: optimizers that take the gradient somewhere other than the current iterate, then let a base
optimizer (SGD with momentum or AdamW, hyperparameter `base`) step with it. Both declare `Needs.CLOSURE`: the
runner's pre-step backward gives g0 = grad f(theta); every further gradient comes from the closure.

SAM (Foret et al. 2021): e = rho * g0 / (||g0|| + 1e-12) (ASAM, `adaptive=True`: e = rho * theta^2 g0 / ||theta g0||),
gradient at theta + e, back to theta, base step. 2 forward/backward passes per step.

GAM (Zhang et al. 2023, Gradient Norm Aware Minimization; rule as in the official xxgege/GAM code):
  g0 at theta;  g1 at theta + rho' g0/||g0||;  g2 at theta + e_n with e_n = rho (g1 - g0)/||g1 - g0||;
  g3 at theta + e_n + rho' g2/||g2||;  f = b1 g1 + b3 g3,  h = g0 + |b2| g2;
  the base optimizer steps at theta with  f - gamma (h - (h.f / ||f||^2) f)  (h minus its projection on f).
  4 forward/backward passes per step. Defaults: the official CIFAR-10 ResNet setup (main_cifar.py of xxgege/GAM):
  rho' (`rho`) 0.03, rho (`norm_rho`) 0.2, gamma 0.05, b1 = 0.1, b3 = 1 - b1 = 0.9, b2 = 1 - b0 = 0.9 (b0 = 0.1).
  (The script's argparse defaults b1 = b3 = 1, b2 = -1 are overridden by every published setup.)
Norms are global (over every parameter of every group); the 1e-12 guards follow the reference code. Details,
sources and the differential tests: docs/optimizers.md (section SAM and GAM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl

EPS = 1e-12
BASES = ("sgd", "adamw")


def make_base(params: Iterable[Any], base: str, lr: float, momentum: float, beta1: float, beta2: float, eps: float,
              weight_decay: float) -> torch.optim.Optimizer:
    """The inner optimizer that takes the actual step."""
    if base == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if base == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                                 foreach=False)
    raise ValueError(f"base must be one of {BASES}, got {base!r}")


class _BaseWrapped(torch.optim.Optimizer):
    """Shares param_groups and state with the inner base optimizer, so state_dict/load_state_dict and per-group
    lr behave as for a plain optimizer."""

    def __init__(self, params: Iterable[Any], base: str, base_kw: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.base = make_base(params, base, **base_kw)
        super().__init__(self.base.param_groups, {"base": base, **defaults})
        self.base.state = self.state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.base.param_groups = self.param_groups
        self.base.state = self.state

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @staticmethod
    def _norm(tensors: list[torch.Tensor | None]) -> torch.Tensor:
        present = [t for t in tensors if t is not None]
        if not present:
            return torch.zeros(())
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in present]))

    @staticmethod
    def _grads(params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        return [None if p.grad is None else p.grad.detach().clone() for p in params]

    @staticmethod
    def _call(closure: Callable[..., torch.Tensor]) -> torch.Tensor:
        with torch.enable_grad():
            return closure()


class SAM(_BaseWrapped):
    def __init__(self, params: Iterable[Any], base: str = "sgd", lr: float = 0.01, rho: float = 0.05,
                 adaptive: bool = False, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if rho < 0:
            raise ValueError(f"rho must be non-negative, got {rho}")
        super().__init__(params, base, dict(lr=lr, momentum=momentum, beta1=beta1, beta2=beta2, eps=eps,
                                            weight_decay=weight_decay), {"rho": rho, "adaptive": adaptive})

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        if closure is None:
            raise RuntimeError("SAM needs a closure that re-evaluates loss and gradients (needs=closure)")
        params = self._params()
        adaptive = {id(p): g["adaptive"] for g in self.param_groups for p in g["params"]}
        scaled = [None if p.grad is None else (p.abs() * p.grad if adaptive[id(p)] else p.grad) for p in params]
        norm = self._norm(scaled)
        saved = [p.detach().clone() for p in params]
        for group in self.param_groups:
            scale = group["rho"] / (norm + EPS)
            for p in group["params"]:
                if p.grad is not None:
                    e = (p * p * p.grad if group["adaptive"] else p.grad) * scale.to(p)
                    p.add_(e)
        loss = self._call(closure)  # gradient at theta + e
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
        self.base.step()
        return loss


class GAM(_BaseWrapped):
    def __init__(self, params: Iterable[Any], base: str = "sgd", lr: float = 0.01, rho: float = 0.03,
                 norm_rho: float = 0.2, gamma: float = 0.05, beta_1: float = 0.1, beta_2: float = 0.9,
                 beta_3: float = 0.9, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, base, dict(lr=lr, momentum=momentum, beta1=beta1, beta2=beta2, eps=eps,
                                            weight_decay=weight_decay),
                         {"rho": rho, "norm_rho": norm_rho, "gamma": gamma, "beta_1": beta_1, "beta_2": beta_2,
                          "beta_3": beta_3})

    def _move(self, params: list[torch.Tensor], direction: list[torch.Tensor | None], key: str) -> None:
        """theta += group[key] * direction / ||direction|| (global norm)."""
        norm = self._norm(direction)
        for group in self.param_groups:
            scale = group[key] / (norm + EPS)
            for p in group["params"]:
                d = direction[self._index[id(p)]]
                if d is not None:
                    p.add_(d * scale.to(p))

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        if closure is None:
            raise RuntimeError("GAM needs a closure that re-evaluates loss and gradients (needs=closure)")
        params = self._params()
        self._index = {id(p): i for i, p in enumerate(params)}
        theta = [p.detach().clone() for p in params]
        g0 = self._grads(params)
        self._move(params, g0, "rho")
        loss = self._call(closure)
        g1 = self._grads(params)
        for p, s in zip(params, theta, strict=True):
            p.copy_(s)
        diff = [None if a is None or b is None else a - b for a, b in zip(g1, g0, strict=True)]
        self._move(params, diff, "norm_rho")
        self._call(closure)
        g2 = self._grads(params)
        self._move(params, g2, "rho")
        self._call(closure)
        g3 = self._grads(params)
        for p, s in zip(params, theta, strict=True):
            p.copy_(s)
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        f: list[torch.Tensor | None] = []
        h: list[torch.Tensor | None] = []
        for p, a0, a1, a2, a3 in zip(params, g0, g1, g2, g3, strict=True):
            g = group_of[id(p)]
            if a0 is None or a1 is None or a2 is None or a3 is None:
                f.append(None)
                h.append(None)
                continue
            f.append(g["beta_1"] * a1 + g["beta_3"] * a3)
            h.append(a0 + abs(g["beta_2"]) * a2)
        inner = sum((a * b).sum() for a, b in zip(f, h, strict=True) if a is not None)
        f_norm, h_norm = self._norm(f), self._norm(h)
        cosine = inner / (f_norm * h_norm + EPS)
        for p, fi, hi in zip(params, f, h, strict=True):
            if fi is None:
                continue
            vertical = hi - cosine * h_norm * fi / (f_norm + EPS)
            p.grad = fi - group_of[id(p)]["gamma"] * vertical
        self.base.step()
        return loss


def _build_sam(params: Iterable[Any], **hp: Any) -> SAM:
    return SAM(params, **hp)


def _build_gam(params: Iterable[Any], **hp: Any) -> GAM:
    return GAM(params, **hp)


BASE_DEFAULTS = {"base": "sgd", "lr": 0.01, "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                 "weight_decay": 0.0}


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    lr_space = {"lr": ("log-uniform", 1e-4, 1.0)}
    return [
        OptimizerSpec(
            name="sam",
            build=_build_sam,
            defaults={**BASE_DEFAULTS, "rho": 0.05, "adaptive": False},
            search_space={**lr_space, "rho": ("log-uniform", 0.01, 0.5), "weight_decay": ("log-uniform", 1e-6, 1e-2)},
            needs=Needs.CLOSURE,
            paper="Foret et al. 2021, Sharpness-Aware Minimization, arXiv:2010.01412; ASAM: Kwon et al. 2021",
            summary="SAM: base step (base=sgd|adamw) with the gradient at theta + rho g/||g||; 2 fwd/bwd per step",
        ),
        OptimizerSpec(
            name="gam",
            build=_build_gam,
            defaults={**BASE_DEFAULTS, "rho": 0.03, "norm_rho": 0.2, "gamma": 0.05, "beta_1": 0.1, "beta_2": 0.9,
                      "beta_3": 0.9},
            search_space={**lr_space, "rho": ("log-uniform", 0.01, 0.5), "gamma": ("log-uniform", 1e-3, 0.3),
                          "weight_decay": ("log-uniform", 1e-6, 1e-2)},
            needs=Needs.CLOSURE,
            paper="Zhang et al. 2023, Gradient Norm Aware Minimization, CVPR; code github.com/xxgege/GAM",
            summary="GAM: SAM plus a first-order flatness (gradient-norm) term; 4 fwd/bwd per step",
        ),
    ]
