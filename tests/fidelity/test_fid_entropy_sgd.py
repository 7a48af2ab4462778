"""Entropy-SGD against a transcription of the official PyTorch code (tests/fidelity/ref_entropy_sgd.py): 200 steps
on the digits MLP in float64. Our side runs through optbench's closure protocol, the inner loop drawing fresh
batches with closure(fresh_batch=True) from the run's stream; the reference's closure draws the same batches (the
step's batch first, then the harness's fresh batches) and both sides draw the same SGLD noise. Defaults (the paper's
CIFAR-10 setup, L = 20, so it is the slowest of these tests) and a non-default configuration (L = 5, no Nesterov,
larger weight decay and noise, dampening)."""

from __future__ import annotations

import pytest
from harness import StepContext, from_spec, spec_named
from optbench.plugins import entropy_sgd
from ref_entropy_sgd import EntropySGDReference

from optbench.closure import StepClosure

SPEC = spec_named(entropy_sgd, "entropy-sgd")


def ours_step(ctx: StepContext) -> None:
    closure = StepClosure(ctx.problem, ctx.params, stream=ctx.fresh_batches())  # type: ignore[arg-type]
    closure.batch = ctx.batch
    closure.before_step("closure")
    ctx.optimizer.step(closure)


def official_step(ctx: StepContext) -> None:
    batches = ctx.fresh_batches()
    calls = [0]

    def closure():
        batch = ctx.batch if calls[0] == 0 else next(batches)
        calls[0] += 1
        return ctx.backward(batch)

    ctx.optimizer.step(closure)


def reference(**hp):
    h = {**SPEC.defaults, **hp}
    cfg = dict(lr=h["lr"], momentum=h["momentum"], damp=h["dampening"], weight_decay=h["weight_decay"],
               nesterov=h["nesterov"], L=h["L"], eps=h["noise"], g0=h["gamma"], g1=h["scoping"])
    return lambda params: EntropySGDReference(params, cfg)


CONFIGS = {
    "defaults": {},
    "L5-heavy-ball+wd": {"L": 5, "nesterov": False, "dampening": 0.1, "weight_decay": 1e-2, "noise": 1e-3,
                         "gamma": 0.1, "lr": 0.5},
}


@pytest.mark.parametrize("config", [pytest.param("defaults", marks=pytest.mark.slow), "L5-heavy-ball+wd"])
def test_entropy_sgd_matches_official_rule(config: str, fidelity) -> None:
    hp = CONFIGS[config]
    print(fidelity(from_spec(SPEC, **hp), reference(**hp), step_ours=ours_step, step_ref=official_step))
