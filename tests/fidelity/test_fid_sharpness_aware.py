"""SAM and GAM against transcriptions of their official code (tests/fidelity/ref_sharpness_aware.py): 200 steps on
the digits MLP in float64, driven through optbench's closure protocol on our side and the official APIs (SAM's
first_step/second_step, GAM's step(get_grad)) on the reference side. Defaults, and a non-default configuration
with weight decay (ASAM with an AdamW base; GAM with the script's argparse weights)."""

from __future__ import annotations

import pytest
import torch
from harness import StepContext, from_spec, optbench_step, spec_named
from optbench.plugins import sharpness_aware
from ref_sharpness_aware import GAMReference, SAMReference

from optbench.specs import Needs

SAM_SPEC = spec_named(sharpness_aware, "sam")
GAM_SPEC = spec_named(sharpness_aware, "gam")


def sam_reference(**hp):
    h = {**SAM_SPEC.defaults, **hp}

    def build(params):
        if h["base"] == "sgd":
            return SAMReference(params, torch.optim.SGD, rho=h["rho"], adaptive=h["adaptive"], lr=h["lr"],
                                momentum=h["momentum"], weight_decay=h["weight_decay"])
        return SAMReference(params, torch.optim.AdamW, rho=h["rho"], adaptive=h["adaptive"], lr=h["lr"],
                            betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=h["weight_decay"],
                            foreach=False)

    return build


def sam_official_step(ctx: StepContext) -> None:
    ctx.backward()
    ctx.optimizer.first_step()
    ctx.backward()
    ctx.optimizer.second_step()


def gam_reference(**hp):
    h = {**GAM_SPEC.defaults, **hp}

    def build(params):
        base = torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"])
        return GAMReference(params, base, grad_rho=h["rho"], grad_norm_rho=h["norm_rho"], grad_beta_1=h["beta_1"],
                            grad_beta_2=h["beta_2"], grad_beta_3=h["beta_3"], grad_gamma=h["gamma"])

    return build


def gam_official_step(ctx: StepContext) -> None:
    ctx.optimizer.step(lambda: ctx.backward())


SAM_CONFIGS = {"defaults": {}, "asam-adamw+wd": {"base": "adamw", "adaptive": True, "rho": 0.5, "lr": 3e-3,
                                                 "weight_decay": 0.05}}
GAM_CONFIGS = {"defaults": {}, "argparse-weights+wd": {"rho": 0.02, "gamma": 0.03, "beta_1": 1.0, "beta_2": -1.0,
                                                        "beta_3": 1.0, "weight_decay": 5e-4, "lr": 0.05}}


@pytest.mark.parametrize("config", SAM_CONFIGS)
def test_sam_matches_official_rule(config: str, fidelity) -> None:
    hp = SAM_CONFIGS[config]
    print(fidelity(from_spec(SAM_SPEC, **hp), sam_reference(**hp), step_ours=optbench_step(Needs.CLOSURE),
                   step_ref=sam_official_step))


@pytest.mark.parametrize("config", GAM_CONFIGS)
def test_gam_matches_official_rule(config: str, fidelity) -> None:
    hp = GAM_CONFIGS[config]
    print(fidelity(from_spec(GAM_SPEC, **hp), gam_reference(**hp), step_ours=optbench_step(Needs.CLOSURE),
                   step_ref=gam_official_step))
