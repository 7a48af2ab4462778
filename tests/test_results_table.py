"""`optbench results` at 80 columns keeps every cell's target metric whole; filters and CSV export."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from optbench.cli import main
from optbench.store import Store


def _write(root, task, opt, seed, acc, hp=None):
    row = dict(trial_id=f"{task}-{opt}-{seed}-{json.dumps(hp)}", task=task, preset="smoke", optimizer=opt, seed=seed,
               status="ok", synthetic=False, dataset="real", hparams=json.dumps(hp or {"lr": 1e-3}),
               target_name="val_accuracy", final_val_accuracy=acc, final_test_accuracy=acc - 0.01,
               final_test_loss=1 - acc, final_val_loss=1.01 - acc, step_time_ms=2.0, optimizer_step_ms=1.0,
               run_id="r")
    Store(root).write(row, [])


def _results(tmp_path):
    root = tmp_path / "r"
    for seed in range(3):
        _write(root, "a-task-with-a-long-descriptive-name", "adamw", seed, 0.912345 + 0.001 * seed)
        _write(root, "a-task-with-a-long-descriptive-name", "lion-ib", seed, 0.81 + 0.002 * seed,
               {"lr": 3e-4, "weight_decay": 0.1, "mode": "temperature"})
        _write(root, "other", "lion", seed, 0.7)
    return root


def test_eighty_columns_keep_the_target_metric_whole(tmp_path):
    out = CliRunner().invoke(main, ["results", "--results", str(_results(tmp_path))], terminal_width=80,
                             env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "val acc 0.913 ± 0.001" in out.output and "val acc 0.812 ± 0.002" in out.output  # unabridged
    assert "…" not in out.output
    assert "3/3" in out.output and "not shown at this width" in out.output and "--wide" in out.output
    wide = CliRunner().invoke(main, ["results", "--wide", "--results", str(_results(tmp_path))], terminal_width=80)
    assert "test loss" in wide.output and "not shown at this width" not in wide.output


def test_filters_and_csv(tmp_path):
    root = _results(tmp_path)
    out = CliRunner().invoke(main, ["results", "--results", str(root), "-o", "lion*", "--csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert sorted(r["optimizer"] for r in rows) == ["lion", "lion-ib"]
    only = CliRunner().invoke(main, ["results", "--results", str(root), "-t", "other", "--json"])
    assert [r["task"] for r in json.loads(only.output)] == ["other"]
    none = CliRunner().invoke(main, ["results", "--results", str(root), "-t", "nope"])
    assert none.exit_code == 0 and "match the filters" in none.output
    both = CliRunner().invoke(main, ["results", "--results", str(root), "--csv", "--json"])
    assert both.exit_code == 2 and "contradict" in both.output


def test_gate_table_fits_eighty_columns(tmp_path):
    root = _results(tmp_path)
    out = CliRunner().invoke(main, ["gate", "--baseline", str(root), "--candidate", str(root)], terminal_width=80,
                             env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    table_lines = [line for line in out.output.splitlines() if "pass" in line]
    assert table_lines and all(len(line) <= 80 for line in out.output.splitlines())
    assert "…" not in out.output and "0.9033 ± 0.001" in out.output  # the baseline's test accuracy, whole


def test_gate_table_lists_the_most_severe_cells_of_a_large_comparison(tmp_path, monkeypatch):
    import optbench.cli.gate as gate_cli

    base = _results(tmp_path)
    cand = tmp_path / "cand"
    for seed in range(3):  # lion-ib got worse: its cell is the one regression among three
        _write(cand, "a-task-with-a-long-descriptive-name", "adamw", seed, 0.912345 + 0.001 * seed)
        _write(cand, "a-task-with-a-long-descriptive-name", "lion-ib", seed, 0.51 + 0.002 * seed,
               {"lr": 3e-4, "weight_decay": 0.1, "mode": "temperature"})
        _write(cand, "other", "lion", seed, 0.7)
    monkeypatch.setattr(gate_cli, "TABLE_ROWS", 1)
    args = ["gate", "--baseline", str(base), "--candidate", str(cand)]
    wide = {"terminal_width": 200, "env": {"COLUMNS": "200"}}
    out = CliRunner().invoke(main, args, **wide)
    assert out.exit_code == 1, out.output
    # the regressed lion-ib cell is listed (candidate 0.502), adamw's passing one (0.9033) is not
    assert "regression" in out.output and "0.502 ± 0.002" in out.output and "0.9033" not in out.output
    assert "2 of 3 cells not listed (all: 2 pass, 1 regression)" in out.output
    every = CliRunner().invoke(main, [*args, "--all"], **wide)
    assert "0.9033" in every.output and "not listed" not in every.output
