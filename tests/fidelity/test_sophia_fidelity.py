"""Sophia-G against the official optimizer class (sophia-opt, Liuhong99/Sophia) driven as the official training
script drives it, and Sophia-H against pytorch-optimizer's SophiaH; digits network, float64, 200 steps."""

from __future__ import annotations

import pytest
import torch
from harness import StepContext, optbench_step, spec_named
from optbench.plugins import sophia as sophia_plugin
from optbench.plugins.sophia import Sophia

from optbench.specs import Needs

SOPHIA_G = spec_named(sophia_plugin, "sophia-g")
SOPHIA_H = spec_named(sophia_plugin, "sophia-h")
NON_DEFAULT = {"lr": 3e-4, "beta1": 0.9, "beta2": 0.95, "rho": 0.1, "weight_decay": 0.2, "k": 5}


def _ours(spec, **hp):
    merged = {**spec.defaults, **hp}
    return lambda ps: spec.build(ps, **merged)


def _official_driver(k: int, paper_timing: bool):
    """The official script's loop: sampled-label loss (a batch mean) -> backward -> update_hessian() every k
    steps, then the real loss -> backward -> step(bs=B) with B the examples that mean is over. Official timing:
    the first estimate after k steps (at the parameters step k+1 starts from); paper timing: also at step 1."""

    def step(ctx: StepContext) -> None:
        t = ctx.step
        if (t - 1) % k == 0 and (t > 1 or paper_timing):
            ctx.backward(sampled_labels=True)
            ctx.optimizer.update_hessian()
        ctx.backward()
        ctx.optimizer.step(bs=len(ctx.batch[1]))

    return step


@pytest.mark.parametrize("schedule", ["official", "paper"])
@pytest.mark.parametrize("config", ["default", "non-default"])
def test_sophia_g_matches_sophia_opt(fidelity, config: str, schedule: str) -> None:
    sophia_opt = pytest.importorskip("sophia_opt")
    hp = {"default": {}, "non-default": NON_DEFAULT}[config]
    merged = {**SOPHIA_G.defaults, **hp}
    ref = lambda ps: sophia_opt.SophiaG(ps, lr=merged["lr"], betas=(merged["beta1"], merged["beta2"]),  # noqa: E731
                                        rho=merged["rho"], weight_decay=merged["weight_decay"])
    fidelity(_ours(SOPHIA_G, schedule=schedule, **hp), ref, step_ours=optbench_step(Needs.SAMPLED_LABELS),
             step_ref=_official_driver(merged["k"], schedule == "paper"))


def test_sophia_g_bs_auto_is_the_batch_size() -> None:
    """bs='auto' takes B from the closure; a plain closure without it gets one clear error."""
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = Sophia([p], estimator="gnb")
    p.grad = torch.ones(3, dtype=torch.float64)

    def closure(**kw):
        p.grad = torch.ones(3, dtype=torch.float64)
        return torch.zeros(())

    with pytest.raises(RuntimeError, match="bs="):
        opt.step(closure)


@pytest.mark.parametrize("config", ["default", "non-default"])
def test_sophia_h_matches_pytorch_optimizer(fidelity, config: str) -> None:
    pto = pytest.importorskip("pytorch_optimizer")
    hp = {"default": {}, "non-default": NON_DEFAULT}[config]
    m = {**SOPHIA_H.defaults, **hp}
    # pytorch-optimizer writes lr' * clip(m / max(h, eps'), p): lr' = lr/rho, p = rho, eps' = eps/rho, wd' = wd*rho
    ref = lambda ps: pto.SophiaH(ps, lr=m["lr"] / m["rho"], p=m["rho"], eps=m["eps"] / m["rho"],  # noqa: E731
                                 weight_decay=m["weight_decay"] * m["rho"], update_period=m["k"],
                                 betas=(m["beta1"], m["beta2"]))

    def ref_step(ctx: StepContext) -> None:
        ctx.backward(create_graph=True)
        ctx.optimizer.step()

    fidelity(_ours(SOPHIA_H, **hp), ref, step_ours=optbench_step(Needs.HESSIAN), step_ref=ref_step)


def test_k_estimator_and_bs_are_per_group_and_saved() -> None:
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = Sophia([{"params": [a], "k": 3, "bs": 16}, {"params": [b]}], k=7)
    groups = opt.state_dict()["param_groups"]
    assert [(g["k"], g["bs"], g["estimator"], g["schedule"]) for g in groups] == [(3, 16, "gnb", "paper"),
                                                                                  (7, "auto", "gnb", "paper")]
    with pytest.raises(ValueError, match="k >= 1"):
        Sophia([{"params": [a], "k": 0}])
