"""Bad input gets one clear sentence (exit 2, no traceback): names, --hp, presets, data dirs, results files.

The CLI's registry is swapped for one holding our quadratics, SGD/AdamW, Lion and the faultkit test plugin
(fast: the other installed plugins are not imported)."""

from __future__ import annotations

from pathlib import Path

import faultkit
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from optbench.plugins import lion, torch_optim
from optbench.tasks import quadratic

import optbench.registry
from optbench.cli import main
from optbench.store import KIND_KEY, SCHEMA_KEY, SCHEMA_VERSION, TRIAL_SCHEMA

RUN = ("run", "-t", "quadratic-deep", "--no-metrics")


@pytest.fixture(autouse=True)
def small_registry(monkeypatch):
    plugins = [("torch", torch_optim), ("lion", lion), ("quadratic", quadratic), ("faultkit", faultkit)]
    monkeypatch.setattr(optbench.registry, "_CACHED", optbench.registry.load_registry(plugins, entry_points=False))


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error(result, *phrases: str) -> str:
    """Exit 2, no traceback, and exactly one `error:` line that holds every phrase."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for phrase in phrases:
        assert phrase in lines[0], result.output
    return lines[0]


def test_unknown_names_suggest_close_ones(tmp_path):
    one_error(invoke(*RUN, "-o", "lion-ibb", "--results", str(tmp_path)), "unknown optimizer 'lion-ibb'",
              "did you mean 'lion-ib'")
    one_error(invoke("run", "-o", "sgd", "-t", "quadratic-dep", "--results", str(tmp_path)),
              "unknown task 'quadratic-dep'", "'quadratic-deep'")
    one_error(invoke("run", "-t", "tiny-quad", "-o", "sgd", "--metrics", "faultkit-nrm", "--results", str(tmp_path)),
              "unknown metric 'faultkit-nrm'", "'faultkit-norm'")
    assert not (tmp_path / "trials").exists()  # nothing ran


def test_malformed_hp_and_unknown_preset(tmp_path):
    one_error(invoke(*RUN, "-o", "sgd", "--hp", "lr", "--results", str(tmp_path)), "--hp 'lr' is not KEY=VALUE")
    one_error(invoke(*RUN, "-o", "sgd", "--hp", "lr=fast", "--results", str(tmp_path)), "must be a float")
    one_error(invoke(*RUN, "-o", "sgd", "--hp", "sgd.betas=1", "--results", str(tmp_path)),
              "has no hyperparameter 'betas'")
    one_error(invoke(*RUN, "-o", "sgd", "--preset", "huge", "--results", str(tmp_path)),
              "task 'quadratic-deep' has no preset 'huge'")


def test_missing_or_malformed_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    one_error(invoke(*RUN, "-o", "sgd", "--data-dir", str(missing), "--results", str(tmp_path / "r")),
              f"the data directory {missing} does not exist")
    empty = tmp_path / "data"
    empty.mkdir()  # exists, but holds no dataset: the task says so in its own sentence, and the grid stops
    one_error(invoke("run", "-o", "sgd", "-t", "needs-data", "--seeds", "2", "--data-dir", str(empty),
                     "--results", str(tmp_path / "r")), "needs-data: no train.bin under")
    assert list((tmp_path / "r").rglob("*.parquet")) == []


@pytest.fixture
def results_with_bad_files(tmp_path) -> Path:
    out = invoke("run", "-o", "sgd", "-t", "tiny-quad", "--no-metrics", "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    (tmp_path / "trials" / "torn.parquet").write_bytes(b"PAR1 this is not a whole file")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "trials" / "foreign.parquet")
    return tmp_path


def test_results_names_and_skips_bad_files(results_with_bad_files):
    out = invoke("results", "--results", str(results_with_bad_files), "--json")
    assert out.exit_code == 0, out.output
    assert "torn.parquet" in out.stderr and "foreign.parquet" in out.stderr and "Traceback" not in out.output
    assert "not an optbench trials file" in out.stderr
    assert '"optimizer":"sgd"' in out.stdout.replace(" ", "")  # the good trial is still summarised


def test_gate_refuses_bad_files_unless_skip_bad(results_with_bad_files):
    root = str(results_with_bad_files)
    one_error(invoke("gate", "--baseline", root, "--candidate", root), "foreign.parquet", "lacks required columns")
    assert invoke("gate", "--baseline", root, "--candidate", root, "--skip-bad").exit_code != 2


def test_results_from_a_newer_schema_are_refused(tmp_path):
    (tmp_path / "trials").mkdir()
    meta = {SCHEMA_KEY: str(SCHEMA_VERSION + 1).encode(), KIND_KEY: b"trials"}
    table = pa.Table.from_pylist([{"trial_id": "x", "status": "ok"}], schema=TRIAL_SCHEMA.with_metadata(meta))
    pq.write_table(table, tmp_path / "trials" / "x.parquet")
    one_error(invoke("results", "--results", str(tmp_path)), "written by a newer optbench",
              f"schema {SCHEMA_VERSION + 1}")
