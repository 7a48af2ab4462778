"""The command line's contract: JSON listings, the trials/curves Parquet columns, --hp checking, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from optbench.cli import main

CONTRACT_COLUMNS = [
    "trial_id", "task", "preset", "dataset", "optimizer", "hparams", "seed", "status", "error", "steps",
    "wall_time_s", "step_time_ms", "optimizer_step_ms", "time_to_target_s", "steps_to_target", "final_train_loss",
    "final_test_loss", "final_test_accuracy", "sharpness", "hessian_trace", "entropy_gap", "peak_memory_mb",
    "optimizer_state_mb", "device", "torch_version", "optbench_version", "started_at"
]
CURVE_COLUMNS = ["trial_id", "step", "wall_time_s", "split", "name", "value"]
TASK = "quadratic-well-conditioned"
RUN = ("run", "-o", "lion-ib", "-o", "sgd", "-t", TASK, "--hp", "lion-ib.lr=3e-4", "--no-metrics")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """One small grid shared by the tests below: two optimizers, one task, one seed (metrics off: speed)."""
    root = tmp_path_factory.mktemp("results")
    out = invoke(*RUN, "--results", str(root))
    assert out.exit_code == 0, out.output
    return root


def _trials(root: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((root / "trials").glob("*.parquet"))], ignore_index=True)


def test_list_optimizers_json() -> None:
    out = invoke("list", "optimizers", "--json")
    assert out.exit_code == 0
    entries = json.loads(out.stdout)
    assert {"sgd", "adamw", "lion", "lion-ib"} <= {e["name"] for e in entries}
    for e in entries:
        assert e["name"] and e["plugin"] and isinstance(e["summary"], str), e
    tasks = json.loads(invoke("list", "tasks", "--json").stdout)
    assert TASK in {t["name"] for t in tasks}


def test_run_writes_contract_rows_and_curves(results: Path) -> None:
    trials = _trials(results)
    assert len(trials) == 2
    assert [c for c in CONTRACT_COLUMNS if c not in trials.columns] == []
    assert set(trials["status"]) == {"ok"}
    assert sorted(trials["optimizer"]) == ["lion-ib", "sgd"]
    ib = trials[trials["optimizer"] == "lion-ib"].iloc[0]
    assert json.loads(ib["hparams"])["lr"] == 3e-4  # the override reached the trial
    assert json.loads(trials[trials["optimizer"] == "sgd"].iloc[0]["hparams"])["lr"] == 0.01  # and only it
    for col in ("steps", "wall_time_s", "step_time_ms", "optimizer_step_ms", "final_train_loss"):
        assert (trials[col] > 0).all(), col
    assert trials["trial_id"].is_unique
    curves = pd.concat([pd.read_parquet(f) for f in (results / "curves").glob("*.parquet")], ignore_index=True)
    assert [c for c in CURVE_COLUMNS if c not in curves.columns] == []
    assert set(curves["trial_id"]) == set(trials["trial_id"])
    assert len(curves) > 2 * 10


@pytest.mark.parametrize(
    ("hp", "says"),
    [
        ("lr=abc", "must be a float"),
        ("nonexistent=1", "nonexistent"),
        ("lr", "KEY=VALUE"),
        ("sgd.momentum=fast", "must be a float"),
        ("adamw.lr=1", "not being run"),
    ],
)
def test_bad_hp_is_one_clear_error(hp: str, says: str, tmp_path: Path) -> None:
    out = invoke("run", "-o", "sgd", "-t", TASK, "--hp", hp, "--results", str(tmp_path / "r"))
    assert out.exit_code == 2
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and says in lines[0], out.stderr
    assert len(lines) <= 2 and "Traceback" not in out.output
    assert not (tmp_path / "r" / "trials").exists() or not list((tmp_path / "r" / "trials").iterdir())


def test_good_hp_values_parse(tmp_path: Path) -> None:
    from optbench.planner import plan
    from optbench.registry import get_registry

    trials = plan(get_registry(), ["lion-ib"], [TASK], "smoke", [0],
                  ["lr=3e-4", "mode=temperature", "gain=2", "weight_decay=0"])
    hp = trials[0].hparams
    assert hp["lr"] == 3e-4 and hp["mode"] == "temperature"
    assert hp["gain"] == 2.0 and isinstance(hp["gain"], float) and hp["weight_decay"] == 0.0


def test_unknown_task_suggests(tmp_path: Path) -> None:
    out = invoke("run", "-o", "lion-ib", "-t", "quadratic-well-conditoned", "--results", str(tmp_path))
    assert out.exit_code == 2
    first = out.stderr.strip().splitlines()[0]
    assert "unknown task 'quadratic-well-conditoned'; did you mean 'quadratic-well-conditioned'" in first
    out = invoke("run", "-o", "lion_ib", "-t", TASK, "--results", str(tmp_path))
    assert out.exit_code == 2 and "did you mean 'lion-ib'?" in out.stderr


def test_resume_skips_and_force_reruns(results: Path) -> None:
    before = {f.name: f.stat().st_mtime_ns for f in (results / "trials").glob("*.parquet")}
    again = invoke(*RUN, "--results", str(results))
    assert again.exit_code == 0 and "ran 0 trial(s)" in again.stderr and "2 already done" in again.stderr
    assert {f.name: f.stat().st_mtime_ns for f in (results / "trials").glob("*.parquet")} == before
    # a second seed for sgd: only that trial runs
    more = invoke("run", "-o", "sgd", "-t", TASK, "--seeds", "2", "--no-metrics", "--results", str(results))
    assert more.exit_code == 0 and "ran 1 trial(s)" in more.stderr and "1 already done" in more.stderr
    sgd0 = _trials(results).query("optimizer == 'sgd' and seed == 0")["run_id"].item()
    forced = invoke("run", "-o", "sgd", "-t", TASK, "--no-metrics", "--results", str(results), "--force")
    assert forced.exit_code == 0 and "ran 1 trial(s)" in forced.stderr
    after = _trials(results)
    assert len(after) == 3
    assert after.query("optimizer == 'sgd' and seed == 0")["run_id"].item() != sgd0  # rewritten by the new run


def test_results_json(results: Path) -> None:
    out = invoke("results", "--results", str(results), "--json")
    assert out.exit_code == 0
    rows = json.loads(out.stdout)
    cells = {(r["task"], r["optimizer"]) for r in rows}
    assert cells == {(TASK, "lion-ib"), (TASK, "sgd")}
    for r in rows:
        assert r["ok"] == r["seeds"] >= 1
        assert r["final_train_loss_mean"] >= 0
    table = invoke("results", "--results", str(results))
    assert table.exit_code == 0 and "lion-ib" in table.stdout


def test_results_of_an_empty_dir(tmp_path: Path) -> None:
    out = invoke("results", "--results", str(tmp_path / "nothing"), "--json")
    assert out.exit_code == 2 and out.stderr.startswith("error: no results directory")
