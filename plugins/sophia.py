"""Sophia (Liu et al. 2023): sign-of-momentum steps clipped by a diagonal Hessian estimate refreshed every k steps.

    m <- b1 m + (1-b1) g
    every k steps:  h <- b2 h + (1-b2) h_hat
    theta <- theta (1 - lr wd) - lr * clip(m / max(rho h, eps), 1)   (= sign(m) min(|m| / max(rho h, eps), 1))

Two estimators h_hat:
  * Sophia-G (Gauss-Newton-Bartlett): h_hat = B * g_hat^2 with g_hat the gradient of the loss on labels sampled
    from the model (`closure(sampled_labels=True)`, needs=SAMPLED_LABELS) and B the number of examples that loss
    averages over (hyperparameter `bs`; default "auto": the task says, via the closure's `sampled_examples`:
    the batch size for the classifiers' batch-mean loss, 1 for the quadratics' summed loss). This keeps rho's
    meaning the paper's and the official code's (sophia-opt stores the EMA of g_hat^2 and divides by
    rho*B*h with B the tokens per batch); storing B*g_hat^2 is the same number up to rounding.
  * Sophia-H (Hutchinson): h_hat = u * (H u), u ~ N(0, I), one HVP through torch.autograd.grad on p.grad, which
    the runner built with create_graph=True (needs=HESSIAN).

When the estimate is taken (`schedule`):
  * ``paper`` (default): at steps t = 1, k+1, 2k+1, ... at the current iterate, before the update (Algorithm 3,
    "if t mod k = 1"). For Sophia-G this costs one extra forward/backward on those steps; the real gradient the
    runner computed is saved before the sampled-label pass and put back afterwards.
  * ``official``: as the official Sophia-G training script with sophia-opt: the first estimate comes after step k
    (steps 1..k run with h = 0, i.e. clipped sign steps). In this protocol that is the estimate at the start of
    steps k+1, 2k+1, ... (the official script takes it at the same parameters, on the next batch).
pytorch-optimizer's SophiaH follows the paper's timing; it writes the step as lr' * clip(m / max(h, eps'), p)
with lr' = lr/rho, p = rho, eps' = eps/rho, wd' = wd*rho, the same rule. tests/fidelity/test_sophia_fidelity.py
checks Sophia-G against sophia-opt (both schedules) and Sophia-H against pytorch-optimizer on a real network.
Every hyperparameter (k, estimator, bs and schedule included) is per param group and saved by state_dict().
The denominator max(rho h, eps) is the paper's; sophia-opt writes rho*B*h + 1e-15, the same unless rho*h is
within a few 1e-15 of zero, and the max form keeps a negative Hutchinson estimate from flipping the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import Needs, OptimizerSpec, hookimpl

SCHEDULES = ("paper", "official")
ESTIMATORS = ("gnb", "hutchinson")


def _examples(closure: Any, bs: float | str) -> float:
    """B of the GNB estimate: `bs` itself, or with bs="auto" the number of examples the closure's sampled-label
    loss averages over (optbench's closure knows it from the task; 1 for a summed loss)."""
    if bs != "auto":
        return float(bs)
    count = getattr(closure, "sampled_examples", None)
    if count is None:
        raise RuntimeError("Sophia-G with bs='auto' needs optbench's step closure (it knows the batch size); "
                           "pass bs=<number of examples the sampled-label loss averages over> instead")
    return float(count)


class Sophia(torch.optim.Optimizer):
    """Sophia with the Gauss-Newton-Bartlett (``gnb``, Sophia-G) or Hutchinson (Sophia-H) estimator.

    Every hyperparameter, k, estimator, bs and schedule included, lives in the param groups (per group, and
    saved by state_dict). The step counter is global (one sampled-label pass or HVP serves every group that is
    due); it lives in the state of the first parameter so that state_dict() carries it."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        k: int = 10,
        estimator: str = "gnb",
        bs: float | str = "auto",
        eps: float = 1e-15,
        schedule: str = "paper",
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay, eps=eps,
                                      k=k, estimator=estimator, bs=bs, schedule=schedule))
        for group in self.param_groups:
            self._check(group)

    @staticmethod
    def _check(group: dict[str, Any]) -> None:
        if group["estimator"] not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {group['estimator']!r}")
        if group["schedule"] not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {group['schedule']!r}")
        bs = group["bs"]
        if group["lr"] <= 0 or group["rho"] <= 0 or int(group["k"]) < 1 or (bs != "auto" and float(bs) <= 0):
            raise ValueError("lr, rho and bs must be positive (or bs='auto') and k >= 1")

    def _first(self) -> torch.Tensor:
        return self.param_groups[0]["params"][0]

    @staticmethod
    def _estimate_due(t: int, group: dict[str, Any]) -> bool:
        if (t - 1) % int(group["k"]) != 0:
            return False
        return t > 1 or group["schedule"] == "paper"

    @staticmethod
    def _hutchinson(params: list[torch.Tensor]) -> list[torch.Tensor]:
        grads = [p.grad for p in params]
        if any(g.grad_fn is None for g in grads):
            raise RuntimeError("Sophia-H needs gradients built with create_graph=True (needs=HESSIAN)")
        us = [torch.randn_like(p) for p in params]
        hus = torch.autograd.grad(grads, params, grad_outputs=us, retain_graph=True)
        return [u * hu for u, hu in zip(us, hus, strict=True)]

    @staticmethod
    def _gnb(params: list[torch.Tensor], closure: Callable[..., torch.Tensor] | None) -> list[torch.Tensor]:
        """g_hat^2 (times B later, per group); the real gradient the runner computed is put back afterwards."""
        if closure is None:
            raise RuntimeError("Sophia-G needs step(closure) with closure(sampled_labels=True) (needs=SAMPLED_LABELS)")
        saved = [p.grad for p in params]
        with torch.enable_grad():
            closure(sampled_labels=True)
        est = [p.grad.detach() * p.grad.detach() for p in params]
        for p, g in zip(params, saved, strict=True):
            p.grad = g  # the update uses the real gradient
        return est

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return None
        first = self._first()
        t = int(self.state[first].get("sophia_t", 0)) + 1
        self.state[first]["sophia_t"] = t
        due = [g for g in self.param_groups if self._estimate_due(t, g)]
        estimates: dict[int, torch.Tensor] = {}
        for kind in ESTIMATORS:
            groups = [g for g in due if g["estimator"] == kind]
            ps = [p for g in groups for p in g["params"] if p.grad is not None]
            if not ps:
                continue
            if kind == "hutchinson":
                with torch.enable_grad():
                    est = self._hutchinson(ps)
            else:
                est = self._gnb(ps, closure)
                scale = {id(p): _examples(closure, g["bs"]) for g in groups for p in g["params"]}
                est = [e.mul_(scale[id(p)]) for p, e in zip(ps, est, strict=True)]  # h_hat = B * g_hat^2
            estimates.update({id(p): e for p, e in zip(ps, est, strict=True)})
        for group in self.param_groups:
            lr, rho, wd, eps = group["lr"], group["rho"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.detach()
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["hessian"] = torch.zeros_like(p)
                m, h = state["exp_avg"], state["hessian"]
                if wd:
                    p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - beta1)
                if id(p) in estimates:
                    h.lerp_(estimates[id(p)], 1 - beta2)
                ratio = m / (h * rho).clamp_(min=eps)
                p.add_(ratio.clamp_(-1.0, 1.0), alpha=-lr)
        return None


def _build_g(params: Iterable[Any], **hp: Any) -> Sophia:
    return Sophia(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), rho=hp["rho"],
                  weight_decay=hp["weight_decay"], k=hp["k"], estimator="gnb", bs=hp["bs"], eps=hp["eps"],
                  schedule=hp["schedule"])


def _build_h(params: Iterable[Any], **hp: Any) -> Sophia:
    return Sophia(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), rho=hp["rho"],
                  weight_decay=hp["weight_decay"], k=hp["k"], estimator="hutchinson", eps=hp["eps"],
                  schedule=hp["schedule"])


PAPER = "Liu et al. 2023, Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training, " \
        "arXiv:2305.14342"
_COMMON = {"lr": 1e-4, "beta1": 0.965, "beta2": 0.99, "rho": 0.04, "weight_decay": 0.1, "k": 10, "eps": 1e-15,
           "schedule": "paper"}


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    space = {"lr": ("log-uniform", 1e-5, 1e-2), "rho": ("log-uniform", 1e-3, 1.0),
             "weight_decay": ("log-uniform", 1e-3, 1.0)}
    return [
        OptimizerSpec(
            name="sophia-g",
            build=_build_g,
            defaults={**_COMMON, "bs": "auto"},
            search_space=space,
            needs=Needs.SAMPLED_LABELS,
            paper=PAPER,
            summary="Sophia-G: clipped m/(rho*h), h from B*g_hat^2 on model-sampled labels every k steps; "
            "bs = B, the examples the sampled loss averages over (auto: from the task)",
        ),
        OptimizerSpec(
            name="sophia-h",
            build=_build_h,
            defaults=dict(_COMMON),
            search_space=space,
            needs=Needs.HESSIAN,
            paper=PAPER,
            summary="Sophia-H: clipped m/(rho*h), h from Hutchinson u*(Hu) every k steps",
        ),
    ]
