"""References: SAM and GAM as their official code computes them, transcribed in our own words.

SAM: github.com/davda54/sam @ 3c3afdbd71cff2462ec91c734b3d1170bd0f3707, sam.py (first_step: e = rho g / (||g|| + 1e-12),
with |w| g in the norm and w^2 g in e for ASAM; second_step: restore the saved weights, base optimizer step).

GAM: github.com/xxgege/GAM @ 694133d9df9266a3df892087ca6b1be72ba610c0, gam/gam.py (GAM.step: perturb_weights(0),
unperturb("e_w_0"), grad_norm_ascent, perturb_weights(1), gradient_decompose, unperturb("e_w_1_2"), base step) with
the hyperparameter names of main_cifar.py (grad_rho, grad_norm_rho, grad_beta_1..3, grad_gamma). Unperturbing
subtracts the stored perturbation, as the official does, rather than restoring a copy. Not reproduced: BatchNorm
running-stat toggling (the test networks have no BatchNorm), distributed gradient sync, rho schedulers (constant in
every published setup).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class SAMReference(torch.optim.Optimizer):
    def __init__(self, params: Any, base: type[torch.optim.Optimizer], rho: float = 0.05, adaptive: bool = False,
                 **base_kw: Any) -> None:
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kw))
        self.base = base(self.param_groups, **base_kw)
        self.param_groups = self.base.param_groups

    def _norm(self) -> torch.Tensor:
        parts = [((p.abs() if g["adaptive"] else 1.0) * p.grad).norm(p=2)
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        return torch.norm(torch.stack(parts), p=2)

    @torch.no_grad()
    def first_step(self) -> None:
        norm = self._norm()
        for g in self.param_groups:
            scale = g["rho"] / (norm + 1e-12)
            for p in g["params"]:
                if p.grad is None:
                    continue
                self.state[p]["saved"] = p.data.clone()
                p.add_((torch.pow(p, 2) if g["adaptive"] else 1.0) * p.grad * scale.to(p))

    @torch.no_grad()
    def second_step(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.data = self.state[p]["saved"]
        self.base.step()


class GAMReference(torch.optim.Optimizer):
    def __init__(self, params: Any, base_optimizer: torch.optim.Optimizer, grad_rho: float, grad_norm_rho: float,
                 grad_beta_1: float, grad_beta_2: float, grad_beta_3: float, grad_gamma: float,
                 eps: float = 1e-12) -> None:
        super().__init__(params, dict(adaptive=False))
        self.base = base_optimizer
        self.param_groups = self.base.param_groups
        self.rho, self.norm_rho, self.gamma, self.eps = grad_rho, grad_norm_rho, grad_gamma, eps
        self.b1, self.b2, self.b3 = grad_beta_1, grad_beta_2, grad_beta_3

    def _each(self):
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _norm(self, key: str = "grad") -> torch.Tensor:
        total = 0.0
        for p in self._each():
            v = p.grad.data if key == "grad" else self.state[p][key]
            total += torch.sum(v**2)
        return torch.sqrt(total)

    def _perturb(self, first: bool) -> None:
        scale = self.rho / (self._norm() + self.eps)
        for p in self._each():
            self.state[p]["g_0" if first else "g_2"] = p.grad.data.clone()
            e = p.grad * scale.to(p)
            p.add_(e)
            if first:
                self.state[p]["e_0"] = e
            else:
                self.state[p]["e_12"] += e

    def _unperturb(self, key: str) -> None:
        for p in self._each():
            p.data.sub_(self.state[p][key])

    def _ascent(self) -> None:
        for p in self._each():
            self.state[p]["g_1"] = p.grad.data.clone()
            p.grad.data -= self.state[p]["g_0"]
        scale = self.norm_rho / (self._norm() + self.eps)
        for p in self._each():
            e = p.grad * scale.to(p)
            p.add_(e)
            self.state[p]["e_12"] = e

    def _decompose(self) -> None:
        inner = 0.0
        for p in self._each():
            st = self.state[p]
            st["pro_m"] = st["g_0"] + abs(self.b2) * st["g_2"]
            p.grad.data = self.b1 * st["g_1"] + self.b3 * p.grad.data.detach().clone()
            inner += torch.sum(st["pro_m"] * p.grad.data)
        new_norm, old_norm = self._norm(), self._norm("pro_m")
        cosine = inner / (new_norm * old_norm + self.eps)
        for p in self._each():
            vertical = self.state[p]["pro_m"] - cosine * old_norm * p.grad.data / (new_norm + self.eps)
            p.grad.data.add_(vertical, alpha=-self.gamma)

    @torch.no_grad()
    def step(self, get_grad: Callable[[], Any]) -> None:
        with torch.enable_grad():
            get_grad()
        self._perturb(first=True)
        with torch.enable_grad():
            get_grad()
        self._unperturb("e_0")
        self._ascent()
        with torch.enable_grad():
            get_grad()
        self._perturb(first=False)
        with torch.enable_grad():
            get_grad()
        self._decompose()
        self._unperturb("e_12")
        self.base.step()
