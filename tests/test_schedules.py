"""Learning-rate schedules: the factor at chosen steps equals the formula worked out by hand, and the runner
applies it to every param group of any optimizer (checked by an optimizer that records the lr it is given)."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny_task import tiny_registry

from optbench import OptimizerSpec, hookimpl
from optbench.errors import OptbenchError
from optbench.runner import RunSettings, run_trial
from optbench.schedules import lr_factor, parse_schedule
from optbench.trial import Trial

SEEN: list[list[float]] = []


class Probe(torch.optim.SGD):
    """Plain SGD with two param groups that records every group's lr at each step."""

    def step(self, closure=None):
        SEEN.append([g["lr"] for g in self.param_groups])
        return super().step()


class ProbePlugin:
    @hookimpl
    def optbench_register_optimizers(self):
        def build(params, lr):
            params = list(params)
            return Probe([{"params": params, "lr": lr}, {"params": [torch.zeros(1, requires_grad=True)],
                                                         "lr": 10 * lr}])

        return [OptimizerSpec("lr-probe", build, defaults={"lr": 0.01})]


@pytest.mark.parametrize(("text", "step", "budget", "expected"), [
    ("constant", 7, 100, 1.0),
    # warm-up over round(0.1 * 100) = 10 steps: t / 10
    ("warmup-cosine:warmup=0.1", 5, 100, 0.5),
    ("warmup-cosine:warmup=0.1", 10, 100, 1.0),
    # cosine half-way through the decay (t - 10) / 90 = 1/2: final + (1 - final) * (1 + cos(pi/2)) / 2
    ("warmup-cosine:warmup=0.1,final=0.1", 55, 100, 0.1 + 0.9 * 0.5),
    ("warmup-cosine:warmup=0.1", 100, 100, 0.0),
    # a quarter of the decay: (1 + cos(pi/4)) / 2
    ("warmup-cosine:warmup=0.1", 33, 100, (1 + math.cos(math.pi * 23 / 90)) / 2),
    ("warmup-linear:warmup=0.2", 4, 50, 0.4),  # W = 10
    ("warmup-linear:warmup=0.2", 30, 50, 0.5),  # 1 - (30 - 10) / 40
    ("warmup-linear:warmup=0.2,final=0.2", 50, 50, 0.2),
    ("warmup-linear:warmup=0", 1, 50, 1 - 1 / 50),
])
def test_factor_matches_the_formula(text, step, budget, expected):
    assert lr_factor(parse_schedule(text), step, budget) == pytest.approx(expected, abs=1e-12)


def test_runner_scales_every_param_group_identically():
    SEEN.clear()
    registry = tiny_registry(("probe", ProbePlugin()))
    schedule = parse_schedule("warmup-cosine:warmup=0.25,final=0.1")  # budget 20: warm-up 5 steps
    trial = Trial("tiny-regression", "smoke", "lr-probe", {"lr": 0.01}, 0, schedule=schedule)
    # speed_ref=None: no interleaved speed measurement, whose extra steps the probe would also record
    result = run_trial(trial, registry, RunSettings(metrics=[], speed_ref=None))
    assert result.row["status"] == "ok"
    assert result.row["schedule"] == '{"final":0.1,"name":"warmup-cosine","warmup":0.25}'
    assert result.row["config"] == "lr-probe[schedule=warmup-cosine(final=0.1,warmup=0.25)]"
    assert len(SEEN) == 20
    for step, expected in [(1, 0.2), (5, 1.0), (6, 0.1 + 0.9 * (1 + math.cos(math.pi / 15)) / 2),
                           (20, 0.1)]:
        assert SEEN[step - 1][0] == pytest.approx(0.01 * expected, rel=1e-12), step
        assert SEEN[step - 1][1] == pytest.approx(0.1 * expected, rel=1e-12), step


def test_bad_schedules_are_one_sentence():
    for text, words in [("cosine", "unknown schedule"), ("warmup-cosine:warmup=1.5", "warmup=1.5"),
                        ("warmup-cosine:bogus=1", "no parameter"), ("warmup-linear:final=x", "not a number")]:
        with pytest.raises(OptbenchError, match=words):
            parse_schedule(text)
