"""What the runner records about training equals what training computed: every step's loss in the train curve,
the window mean in `final_train_loss`, and a divergence at the step whose loss shows it. A hand-written loop
on the same task, seed and optimizer gives the reference, so a change to how (or when) the runner reads the
loss off the device cannot change a recorded number without failing here."""

from __future__ import annotations

import math
import statistics

import faultkit
import pytest
import torch
from _tiny_task import tiny_registry

from optbench.planner import plan
from optbench.runner import DIVERGENCE_FACTOR, RunSettings, run_trial, seed_everything


@pytest.fixture(scope="module")
def registry():
    return tiny_registry(("faultkit", faultkit))


def hand_losses(registry, trial) -> list[float]:
    """The loss before each step of a plain loop, up to the budget or the first step that diverges."""
    seed_everything(trial.seed)
    task = registry.task(trial.task).spec.build(trial.preset, trial.seed, torch.device("cpu"), None)
    opt = registry.optimizer(trial.optimizer).spec.build(task.parameters(), **trial.hparams)
    stream = iter(task.batches())
    losses: list[float] = []
    for _ in range(task.budget):
        batch = next(stream)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(batch)
        loss.backward()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]) or abs(losses[-1]) > DIVERGENCE_FACTOR * max(abs(losses[0]), 1e-12):
            break
        opt.step()
    return losses


def train_curve(result) -> list[tuple[int, float]]:
    return [(c["step"], c["value"]) for c in result.curves if c["split"] == "train" and c["name"] == "loss"]


def test_every_recorded_loss_is_the_step_loss(registry):
    trial = plan(registry, ["sgd"], ["tiny-quad"], "smoke", range(1), ("lr=0.05",))[0]
    result = run_trial(trial, registry, RunSettings(metrics=[], speed_ref=None))
    expected = hand_losses(registry, trial)
    assert result.row["status"] == "ok" and result.row["steps"] == len(expected) == 30
    assert train_curve(result) == list(enumerate(expected, start=1))  # 30 steps, 200 log points: every step
    assert result.row["final_train_loss"] == statistics.fmean(expected[20:])  # evaluations every 10 steps
    assert {c["trial_id"] for c in result.curves} == {trial.trial_id}


def test_a_diverging_trial_ends_at_the_step_its_loss_shows_it(registry):
    trial = plan(registry, ["sgd"], ["tiny-quad"], "smoke", range(1), ("lr=1.0",))[0]
    result = run_trial(trial, registry, RunSettings(metrics=[], speed_ref=None))
    expected = hand_losses(registry, trial)
    step = len(expected)
    assert 1 < step < 30  # the reference diverged, and not at once
    row = result.row
    assert row["status"] == "diverged" and row["diverged_step"] == step and row["steps"] == step - 1
    assert row["final_train_loss"] is None and f"at step {step}" in row["error"]
    assert train_curve(result) == list(enumerate(expected, start=1))  # the diverging loss is the last point
