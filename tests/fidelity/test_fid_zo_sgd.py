"""zo-sgd against a transcription of DeepZero's CGE + torch SGD (tests/fidelity/ref_zo_sgd.py): 200 steps on the
digits CNN in float64, forward passes only on both sides; DeepZero's published setup (sparsity 0.9, lr 0.1,
momentum 0.9, weight decay 5e-4) and a non-default one (sparser mask redrawn every 50 steps, Nesterov, larger
weight decay). Our side runs through optbench's loss-only closure protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from harness import StepContext, from_spec, optbench_step, spec_named
from optbench.plugins import zo_sgd
from ref_zo_sgd import cge, draw_masks

from optbench.specs import Needs

SPEC = spec_named(zo_sgd, "zo-sgd")
CONFIGS = {"defaults": {}, "sparser-nesterov+wd": {"sparsity": 0.95, "mask_interval": 50, "nesterov": True,
                                                   "weight_decay": 5e-3, "lr": 0.05, "mu": 1e-3}}


def reference(**hp):
    h = {**SPEC.defaults, **hp}

    def build(params):
        opt = torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"],
                              nesterov=h["nesterov"], foreach=False)
        opt.deepzero = h  # the estimator's settings travel with the optimizer to the step function
        return opt

    return build


def deepzero_step(ctx: StepContext) -> None:
    opt, h = ctx.optimizer, ctx.optimizer.deepzero
    named = dict(ctx.model.named_parameters())
    if (ctx.step - 1) % h["mask_interval"] == 0:
        opt.masks = draw_masks(named, h["sparsity"])
    x, y = ctx.batch

    def func(params: dict[str, torch.Tensor]) -> float:
        return float(F.cross_entropy(torch.func.functional_call(ctx.model, params, (x,)), y))

    grads = cge(func, {k: v.detach().clone() for k, v in named.items()}, opt.masks, h["mu"])
    for name, p in named.items():
        p.grad = grads[name]
    opt.step()


@pytest.mark.slow  # one forward pass per estimated coordinate: ~80 per step on each side
@pytest.mark.parametrize("config", CONFIGS)
def test_zo_sgd_matches_deepzero(config: str, fidelity) -> None:
    hp = CONFIGS[config]
    print(fidelity(from_spec(SPEC, **hp), reference(**hp), step_ours=optbench_step(Needs.LOSS_ONLY),
                   step_ref=deepzero_step, model="cnn"))
