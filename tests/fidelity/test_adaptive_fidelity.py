"""diffGrad against a transcription of the official code (shivram1987/diffGrad, diffGrad_v2.py) and FAdam against
pytorch-optimizer's FAdam (no code was published with the paper; see docs/optimizers.md), on the digits network,
float64, 200 steps, default and non-default settings with weight decay."""

from __future__ import annotations

import math

import pytest
import torch
from harness import compare, spec_named
from optbench.plugins import diffgrad as diffgrad_plugin
from optbench.plugins import fadam as fadam_plugin

DIFFGRAD = spec_named(diffgrad_plugin, "diffgrad")
FADAM = spec_named(fadam_plugin, "fadam")


def _ours(spec, **hp):
    merged = {**spec.defaults, **hp}
    return lambda ps: spec.build(ps, **merged)


class OfficialDiffGrad(torch.optim.Optimizer):
    """The arithmetic of the official diffGrad_v2.py, in its order: L2 weight decay added to the gradient, Adam
    moments, denominator sqrt(v) + eps of the uncorrected v, friction 1/(1 + exp(-|g_prev - g|)) with g_prev
    the previous (decayed) gradient, step size lr * sqrt(1 - b2^t) / (1 - b1^t)."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"], st["exp_avg_sq"], st["prev"] = (torch.zeros_like(p) for _ in range(3))
                st["step"] += 1
                grad = p.grad.clone()
                if group["weight_decay"] != 0:
                    grad = grad + group["weight_decay"] * p
                st["exp_avg"].mul_(b1).add_(grad, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                denom = st["exp_avg_sq"].sqrt() + group["eps"]
                friction = 1.0 / (1.0 + torch.exp(-torch.abs(st["prev"] - grad)))
                st["prev"] = grad.clone()
                step_size = group["lr"] * math.sqrt(1 - b2 ** st["step"]) / (1 - b1 ** st["step"])
                p.addcdiv_(st["exp_avg"] * friction, denom, value=-step_size)


DIFFGRAD_CONFIGS = {
    "default": {},
    "non-default": {"lr": 3e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 1e-2},
}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("config", sorted(DIFFGRAD_CONFIGS))
def test_diffgrad_matches_the_official_code(fidelity, config: str, model: str) -> None:
    hp = {**DIFFGRAD.defaults, **DIFFGRAD_CONFIGS[config]}
    ref = lambda ps: OfficialDiffGrad(ps, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],  # noqa: E731
                                      weight_decay=hp["weight_decay"])
    fidelity(_ours(DIFFGRAD, **DIFFGRAD_CONFIGS[config]), ref, model=model)


def test_diffgrad_paper_eps_is_a_real_difference(fidelity) -> None:
    """The named option eps_mode=paper (eps added to sqrt of the bias-corrected v) moves the trajectory by far
    more than the tolerance on this network: the option is not a no-op, and the default is not it."""
    hp = {**DIFFGRAD.defaults, **DIFFGRAD_CONFIGS["non-default"]}
    ref = lambda ps: OfficialDiffGrad(ps, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],  # noqa: E731
                                      weight_decay=hp["weight_decay"])
    cmp = fidelity.record(compare(_ours(DIFFGRAD, **DIFFGRAD_CONFIGS["non-default"], eps_mode="paper"), ref))
    assert cmp.deviation > 1e-4


def test_diffgrad_decoupled_mode_is_close_to_pytorch_optimizer(fidelity) -> None:
    """weight_decay_mode=decoupled is pytorch-optimizer's DiffGrad except that pytorch-optimizer adds 1e-15 to v
    inside the square root (the official code does not): a documented difference of about 1e-5 here."""
    pto = pytest.importorskip("pytorch_optimizer")
    hp = dict(lr=3e-3, eps=1e-6, weight_decay=1e-2)
    ref = lambda ps: pto.DiffGrad(ps, betas=(0.9, 0.999), foreach=False, **hp)  # noqa: E731
    fidelity(_ours(DIFFGRAD, weight_decay_mode="decoupled", **hp), ref, rtol=5e-5)


FADAM_CONFIGS = {
    "default": {},
    "non-default": {"lr": 3e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "eps2": 0.05, "clip": 0.5,
                    "weight_decay": 0.01},
    "power": {"p": 0.3, "weight_decay": 0.05},
}


@pytest.mark.parametrize("config", sorted(FADAM_CONFIGS))
def test_fadam_matches_pytorch_optimizer(fidelity, config: str) -> None:
    pto = pytest.importorskip("pytorch_optimizer")
    hp = {**FADAM.defaults, **FADAM_CONFIGS[config]}
    ref = lambda ps: pto.FAdam(ps, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],  # noqa: E731
                               eps2=hp["eps2"], clip=hp["clip"], p=hp["p"], weight_decay=hp["weight_decay"],
                               foreach=False, momentum_dtype=torch.float64, fim_dtype=torch.float64)
    fidelity(_ours(FADAM, **FADAM_CONFIGS[config]), ref)


@pytest.mark.parametrize("config", sorted(FADAM_CONFIGS))
def test_fadam_flat_step_matches_the_loop(fidelity, monkeypatch, config: str) -> None:
    """The flat step (what "auto" runs below 1M parameters) against the per-tensor loop; they differ only in the
    order each RMS is summed."""
    calls = []
    original = fadam_plugin.fadam_flat
    monkeypatch.setattr(fadam_plugin, "fadam_flat", lambda *a, **k: calls.append(1) or original(*a, **k))
    hp = {**FADAM.defaults, **FADAM_CONFIGS[config]}
    fidelity(lambda ps: FADAM.build(ps, **hp, impl="auto"), lambda ps: FADAM.build(ps, **hp, impl="loop"),
             rtol=1e-10)
    assert len(calls) == 200  # the flat step really ran, every step


@pytest.mark.parametrize("config", ["official", "paper-decoupled"])
def test_diffgrad_flat_step_matches_the_loop(fidelity, monkeypatch, config: str) -> None:
    """The flat step (what "auto" runs below 1M parameters) against the per-tensor loop: the same arithmetic."""
    spec = spec_named(diffgrad_plugin, "diffgrad")
    calls = []
    original = diffgrad_plugin.diffgrad_flat
    monkeypatch.setattr(diffgrad_plugin, "diffgrad_flat", lambda *a, **k: calls.append(1) or original(*a, **k))
    extra = {"official": {"weight_decay": 1e-2},
             "paper-decoupled": {"weight_decay": 1e-2, "eps_mode": "paper", "weight_decay_mode": "decoupled"}}
    hp = {**spec.defaults, "lr": 3e-3, **extra[config]}
    fidelity(lambda ps: spec.build(ps, **hp, impl="auto"), lambda ps: spec.build(ps, **hp, impl="loop"),
             rtol=1e-12)
    assert len(calls) == 200  # the flat step really ran, every step
