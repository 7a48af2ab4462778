"""Grids: comma-separated --hp values and repeated keys expand to the cartesian product, -o takes the
wildcards `list` takes, --dry-run prints the plan and writes nothing, an empty grid is one sentence (exit 2)."""

from __future__ import annotations

import pytest
from _tiny_task import tiny_registry

from optbench.errors import OptbenchError
from optbench.planner import describe, plan, split_values


@pytest.fixture(scope="module")
def registry():
    return tiny_registry()


def test_values_split_on_top_level_commas_only():
    assert split_values("1e-4,3e-4, 1e-3") == ["1e-4", "3e-4", "1e-3"]
    assert split_values("(0.9,0.99),(0.95,0.98)") == ["(0.9,0.99)", "(0.95,0.98)"]


def test_cartesian_grid_per_optimizer(registry):
    trials = plan(registry, ["sgd", "adamw"], ["tiny-regression"], "smoke", [0, 1],
                  ["sgd.lr=1e-3,1e-2,1e-1", "sgd.momentum=0,0.9", "adamw.lr=1e-3", "adamw.lr=3e-3"])
    sgd = {(t.hparams["lr"], t.hparams["momentum"]) for t in trials if t.optimizer == "sgd"}
    assert sgd == {(lr, m) for lr in (1e-3, 1e-2, 1e-1) for m in (0.0, 0.9)}
    assert {t.hparams["lr"] for t in trials if t.optimizer == "adamw"} == {1e-3, 3e-3}  # repeated key: both
    assert len(trials) == (6 + 2) * 2
    assert len({t.trial_id for t in trials}) == len(trials)
    assert describe(trials) == "16 trials = 1 task x 8 configurations x 2 seeds"
    # a bare key applies to every optimizer that has it; an optimizer-specific one replaces it there
    mixed = plan(registry, ["sgd", "adamw"], ["tiny-regression"], "smoke", [0], ["lr=1e-2,1e-1", "sgd.lr=0.5"])
    assert sorted((t.optimizer, t.hparams["lr"]) for t in mixed) == [("adamw", 1e-2), ("adamw", 1e-1),
                                                                    ("sgd", 0.5)]


def test_schedules_are_a_grid_axis(registry):
    trials = plan(registry, ["sgd"], ["tiny-regression"], "smoke", [0], ["lr=1e-2,1e-1"],
                  schedules=["constant", "warmup-cosine:warmup=0.1"])
    assert len({t.config_id for t in trials}) == 4
    assert sorted(t.schedule.get("name", "constant") for t in trials) == ["constant", "constant", "warmup-cosine",
                                                                          "warmup-cosine"]


def test_wildcards_like_list(registry):
    trials = plan(registry, ["*w", "sgd", "sg?"], ["tiny-regression"], "smoke", [0])
    assert [t.optimizer for t in trials] == ["adamw", "sgd"]
    with pytest.raises(OptbenchError, match="no optimizer matches 'lion\\*'"):
        plan(registry, ["lion*"], ["tiny-regression"], "smoke", [0])


@pytest.mark.parametrize(("hp", "words"), [
    ("sgd.lr=", "empty value"), ("sgd.lr=1e-3,,1e-2", "empty value"), ("sgd.lr=1e-3,fast", "must be a float"),
    ("sgd.nope=1,2", "no hyperparameter 'nope'"),
])
def test_bad_grids(registry, hp, words):
    with pytest.raises(OptbenchError, match=words):
        plan(registry, ["sgd"], ["tiny-regression"], "smoke", [0], [hp])


def test_dry_run_prints_the_plan_and_writes_nothing(cli, tmp_path):
    results = tmp_path / "res"
    out = cli("run", "-o", "lion*", "-o", "adamw", "-t", "quadratic-well-conditioned", "--seeds", "2",
              "--hp", "lion-ib.lr=1e-4,3e-4,1e-3", "--hp", "lion-ib.weight_decay=0,0.1", "--dry-run",
              "--results", str(results), env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    # lion (1) + lion-ib (3 x 2) + adamw (1) configurations
    assert "16 trials = 1 task x 8 configurations x 2 seeds" in out.stdout
    assert "lion-ib[lr=3e-4,weight_decay=0.1]" in out.stdout and "lion-ib[weight_decay=0.1]" in out.stdout
    assert not results.exists()
    empty = cli("run", "-o", "adamw", "-t", "quadratic-well-conditioned", "--hp", "lr=", "--results", str(results))
    assert empty.exit_code == 2 and "empty value" in empty.stderr and not results.exists()
    assert len(empty.stderr.strip().splitlines()) <= 3  # one sentence and a hint, no traceback
