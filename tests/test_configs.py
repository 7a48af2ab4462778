"""Configuration identity: seeds aggregate only inside one configuration, in `results`, `results --json`, the
leaderboard and the gate; labels are readable; rows written before the columns existed still summarise."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from optbench.config import config_id, config_label
from optbench.gate import NEW, compare
from optbench.leaderboard.model import load_board
from optbench.leaderboard.site import render
from optbench.store import Store
from optbench.summary import summarize, with_configs
from optbench.trial import Trial

DEFAULTS = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
LRS = (1e-4, 3e-4, 1e-3)


def test_labels_are_readable_and_defaults_are_the_bare_name():
    assert config_label("lion-ib", DEFAULTS, None, DEFAULTS) == "lion-ib"
    assert config_label("lion-ib", {**DEFAULTS, "lr": 3e-4}, None, DEFAULTS) == "lion-ib[lr=3e-4]"
    two = config_label("lion-ib", {**DEFAULTS, "lr": 1e-3, "weight_decay": 0.1}, None, DEFAULTS)
    assert two == "lion-ib[lr=1e-3,weight_decay=0.1]"
    sched = {"name": "warmup-cosine", "warmup": 0.05, "final": 0.0}
    assert config_label("lion-ib", DEFAULTS, sched, DEFAULTS) == "lion-ib[schedule=warmup-cosine]"
    sched = {"name": "warmup-linear", "warmup": 0.1, "final": 0.0}
    assert config_label("lion-ib", DEFAULTS, sched, DEFAULTS) == "lion-ib[schedule=warmup-linear(warmup=0.1)]"


def test_config_id_is_stable_and_separates_what_differs():
    a = config_id("adamw", {"lr": 1e-3, "betas": (0.9, 0.999)})
    assert a == config_id("adamw", {"betas": [0.9, 0.999], "lr": 1e-3})  # order and tuple/list do not matter
    assert a == config_id("adamw", {"lr": 1e-3, "betas": (0.9, 0.999)}, {"name": "constant"})
    assert a != config_id("adamw", {"lr": 3e-3, "betas": (0.9, 0.999)})
    assert a != config_id("sgd", {"lr": 1e-3, "betas": (0.9, 0.999)})
    assert a != config_id("adamw", {"lr": 1e-3, "betas": (0.9, 0.999)}, {"name": "warmup-cosine", "warmup": 0.1})
    # a constant schedule keeps the trial id a trial had before schedules existed
    t = Trial("q", "smoke", "adamw", {"lr": 1e-3}, 0)
    assert t.trial_id == Trial("q", "smoke", "adamw", {"lr": 1e-3}, 0, schedule={"name": "constant"}).trial_id
    assert t.trial_id != Trial("q", "smoke", "adamw", {"lr": 1e-3}, 0, schedule={"name": "warmup-cosine",
                                                                               "warmup": 0.1}).trial_id


def _row(lr: float, seed: int, acc: float, *, optimizer: str = "lion-ib", with_ids: bool = True, **kw) -> dict:
    hp = {**DEFAULTS, "lr": lr}
    row = {"trial_id": f"{optimizer}-{lr:g}-{seed}-{kw.get('task', 'digits')}", "run_id": "r1", "task": "digits",
           "preset": "smoke", "dataset": "real-digits", "synthetic": False, "optimizer": optimizer,
           "hparams": json.dumps(hp), "options": "{}", "seed": seed, "status": "ok", "final_test_accuracy": acc,
           "final_test_loss": 1 - acc, "step_time_ms": 1.0, "optimizer_step_ms": 0.5, "steps": 10, "budget": 10,
           "device": "cpu", "started_at": "2026-12-01T00:00:00+00:00"}
    if with_ids:
        row["config_id"] = config_id(optimizer, hp)
        row["config"] = config_label(optimizer, hp, None, DEFAULTS)
    row.update(kw)
    return row


def _write(root: Path, rows: list[dict]) -> Path:
    store = Store(root)
    for r in rows:
        store.write(r, [])
    return root


@pytest.fixture
def three_lrs(tmp_path) -> Path:
    """lion-ib at three learning rates, two seeds each; the accuracy depends on the lr, not the seed."""
    acc = {1e-4: 0.70, 3e-4: 0.85, 1e-3: 0.95}
    return _write(tmp_path / "res", [_row(lr, s, acc[lr] + 0.001 * s) for lr in LRS for s in (0, 1)])


def test_results_json_has_one_cell_per_configuration(cli, three_lrs):
    out = cli("results", "--results", str(three_lrs), "--json")
    cells = json.loads(out.stdout)
    assert sorted(c["config"] for c in cells) == ["lion-ib", "lion-ib[lr=1e-3]", "lion-ib[lr=3e-4]"]
    for c in cells:
        assert c["seeds"] == 2 and c["ok"] == 2
        assert c["final_test_accuracy_std"] == pytest.approx(0.001 * 2 ** -0.5)  # the seeds' spread only
    table = cli("results", "--results", str(three_lrs)).stdout
    assert table.count("2/2") == 3 and "6/6" not in table and "lion-ib[lr=" in table


def test_rows_without_config_columns_derive_the_same_cells(tmp_path, three_lrs):
    old = _write(tmp_path / "old", [_row(lr, s, 0.5, with_ids=False) for lr in LRS for s in (0, 1)])
    new_cells = summarize(Store(three_lrs).read().trials)
    old_cells = summarize(Store(old).read().trials)
    assert sorted(old_cells["config_id"]) == sorted(new_cells["config_id"])
    # with no defaults to compare against, the label names what varies among the configurations
    assert sorted(old_cells["config"]) == ["lion-ib[lr=1e-3]", "lion-ib[lr=1e-4]", "lion-ib[lr=3e-4]"]
    with_defaults = with_configs(Store(old).read().trials, {"lion-ib": DEFAULTS})
    assert set(with_defaults["config"]) == {"lion-ib", "lion-ib[lr=1e-3]", "lion-ib[lr=3e-4]"}
    # mixing old and new rows of one configuration: one cell, both seeds sets
    older = Store(old).read().trials.assign(seed=lambda d: d.seed + 5, trial_id=lambda d: d.trial_id + "o")
    older = Store(old).read().trials.assign(seed=lambda d: d.seed + 5, trial_id=lambda d: d.trial_id + "o")
    mixed = pd.concat([Store(three_lrs).read().trials, older])
    assert (summarize(mixed)["seeds"] == 4).all() and len(summarize(mixed)) == 3


def test_leaderboard_keeps_configurations_apart(three_lrs):
    board = load_board(three_lrs)
    assert len(board.configs) == 3 and set(board.configs["seeds"]) == {2}
    assert list(board.summary["config"]) == ["lion-ib"]  # the untuned board ranks the defaults only
    html = render(board)
    task_page = html["task-digits.html"]
    for label in ("lion-ib[lr=1e-3]", "lion-ib[lr=3e-4]"):
        assert label in task_page
    assert "lr-sensitivity" in task_page and "Untuned:" in html["index.html"]


def test_gate_keys_by_configuration_and_shows_new_cells(three_lrs, tmp_path):
    base = Store(three_lrs).read().trials
    cand_rows = [_row(lr, s, {1e-4: 0.70, 3e-4: 0.85, 1e-3: 0.95}[lr]) for lr in LRS for s in (0, 1)]
    cand_rows += [_row(3e-3, s, 0.97) for s in (0, 1)]  # a configuration the baseline never ran
    cand_rows += [_row(1e-3, s, 0.90, optimizer="lion-x") for s in (0, 1)]  # and a new optimizer
    cand = Store(_write(tmp_path / "cand", cand_rows)).read().trials
    report = compare(base, cand)
    by_label = {c.config: c for c in report.cells}
    assert set(by_label) == {"lion-ib", "lion-ib[lr=3e-4]", "lion-ib[lr=1e-3]", "lion-ib[lr=3e-3]",
                             "lion-x[lr=1e-3]"}
    for label in ("lion-ib[lr=3e-3]", "lion-x[lr=1e-3]"):
        assert by_label[label].status == NEW and by_label[label].candidate_mean is not None
    assert by_label["lion-ib[lr=3e-3]"].candidate_mean == pytest.approx(0.97)
    assert report.passed and len(report.only_candidate) == 2
    # the cells compared are per configuration: the lr=1e-4 cell's baseline is 0.70, not the pooled mean
    assert by_label["lion-ib"].baseline_mean == pytest.approx(0.7005)
    # a worse candidate at ONE learning rate is caught even though the pooled mean would hide it
    worse = [r if r["hparams"] != json.dumps({**DEFAULTS, "lr": 1e-3}) else {**r, "final_test_accuracy": 0.80}
             for r in cand_rows[:6]]
    report = compare(base, Store(_write(tmp_path / "worse", worse)).read().trials)
    assert [c.config for c in report.regressions] == ["lion-ib[lr=1e-3]"]
