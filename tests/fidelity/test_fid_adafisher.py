"""AdaFisher against a transcription of the official code (tests/fidelity/ref_adafisher.py): 200 steps on digits in
float64 with a CNN that has every layer type the official code preconditions (a convolution, BatchNorm2d, a grouped
convolution, LayerNorm, Linear), at the published CNN defaults and at a non-default configuration (factors refreshed
every 5 steps, another gamma and damping, larger weight decay)."""

from __future__ import annotations

import pytest
import torch
from harness import from_spec, spec_named
from optbench.plugins import adafisher
from ref_adafisher import AdaFisherReference
from torch import nn

SPEC = spec_named(adafisher, "adafisher")
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # the reference hooks the first layer


def every_layer_cnn(_: nn.Module) -> nn.Module:
    torch.manual_seed(7)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.LayerNorm(64), nn.Linear(64, 10))
    return net.to(torch.float64)


def reference(**hp):
    h = {**SPEC.defaults, **hp}

    def build(params, model):
        return AdaFisherReference(model, lr=h["lr"], beta=h["beta"], Lambda=h["damping"], gamma=h["gamma"],
                                  TCov=h["t_cov"], weight_decay=h["weight_decay"])

    build.wants_model = True
    return build


CONFIGS = {"defaults": {}, "tcov5+wd": {"t_cov": 5, "gamma": 0.5, "damping": 3e-3, "weight_decay": 1e-2,
                                        "lr": 2e-3}}


@pytest.mark.parametrize("config", CONFIGS)
def test_adafisher_matches_official_rule(config: str, fidelity) -> None:
    hp = CONFIGS[config]
    print(fidelity(from_spec(SPEC, **hp), reference(**hp), model="cnn", prepare=every_layer_cnn))
