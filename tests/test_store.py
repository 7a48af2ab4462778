"""The store reads any well-formed row and never counts a malformed one as done (issue 14.2).

Files are made the way other tools make them: pandas (large_string, NaN for missing integers, its own
metadata), a writer using int32 and dictionary strings, a file with a column dropped. Real rows come from one
run of the faultkit `tiny-quad` task through the CLI, with a registry holding only the plugins these tests need.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import faultkit
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from optbench.plugins import torch_optim

import optbench.registry
from optbench.cli import main
from optbench.store import KIND_KEY, SCHEMA_KEY, TRIAL_COLUMNS, Store

RUN = ("run", "-o", "sgd", "-t", "tiny-quad", "--seeds", "2", "--no-metrics")


@pytest.fixture(autouse=True)
def small_registry(monkeypatch):
    plugins = [("torch", torch_optim), ("faultkit", faultkit)]
    monkeypatch.setattr(optbench.registry, "_CACHED", optbench.registry.load_registry(plugins, entry_points=False))


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A results root with two real trials (sgd on tiny-quad, seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("pristine")
    plugins = [("torch", torch_optim), ("faultkit", faultkit)]
    registry = optbench.registry.load_registry(plugins, entry_points=False)
    saved, optbench.registry._CACHED = optbench.registry._CACHED, registry
    try:
        out = invoke(*RUN, "--results", str(root))
    finally:
        optbench.registry._CACHED = saved
    assert out.exit_code == 0, out.output
    return root


@pytest.fixture
def results(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / "r")
    return tmp_path / "r"


def trial_files(root: Path) -> list[Path]:
    return sorted((root / "trials").glob("*.parquet"))


def rewrite_with_pandas(path: Path, keep_optbench_meta: bool, edit=None) -> None:
    """What a user does in a notebook: read, edit, write back with pandas (strings become large_string)."""
    original = pq.read_schema(path).metadata
    df = pd.read_parquet(path)
    if edit is not None:
        df = edit(df)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.cast(pa.schema([pa.field(f.name, pa.large_string()) if pa.types.is_string(f.type) else f
                                  for f in table.schema], metadata=table.schema.metadata))
    if keep_optbench_meta:
        table = table.replace_schema_metadata({**table.schema.metadata, KIND_KEY: original[KIND_KEY],
                                               SCHEMA_KEY: original[SCHEMA_KEY]})
    pq.write_table(table, path)


@pytest.mark.parametrize("keep_meta", [True, False], ids=["with-optbench-metadata", "without"])
def test_pandas_written_file_reads_like_ours(results, keep_meta):
    before = Store(results).read().trials.sort_values("trial_id").reset_index(drop=True)
    path = trial_files(results)[0]
    rewrite_with_pandas(path, keep_meta)
    assert pa.types.is_large_string(pq.read_schema(path).field("trial_id").type)  # the hostile case indeed
    res = Store(results).read()
    assert res.problems == []
    after = res.trials.sort_values("trial_id").reset_index(drop=True)
    assert list(after.columns)[:len(TRIAL_COLUMNS)] == TRIAL_COLUMNS  # then the declared metric columns
    pd.testing.assert_frame_equal(before, after)
    assert Store(results).has(path.stem)
    for command in (("results", "--results", str(results), "--json"),
                    ("gate", "--baseline", str(results), "--candidate", str(results))):
        out = invoke(*command)
        assert out.exit_code == 0, out.output
        assert "Traceback" not in out.output
        assert not [line for line in out.output.splitlines() if line.startswith("skipped ")]  # no file skipped


def test_other_physical_types_are_cast(results):
    """int32 seeds, float64-with-NaN integers (pandas' nullable ints), dictionary strings, float32."""
    path = trial_files(results)[0]
    table = pq.read_table(path)
    meta = table.schema.metadata
    cols = {name: table.column(name) for name in table.column_names}
    cols["seed"] = cols["seed"].cast(pa.int32())
    cols["steps_to_target"] = pa.chunked_array([pa.array([float("nan")])])
    cols["steps"] = cols["steps"].cast(pa.float64())
    cols["optimizer"] = cols["optimizer"].dictionary_encode()
    cols["final_train_loss"] = cols["final_train_loss"].cast(pa.float32())
    cols["status"] = pa.chunked_array([pa.array(["ok"], pa.large_string())])
    pq.write_table(pa.table(cols).replace_schema_metadata(meta), path)
    res = Store(results).read()
    assert res.problems == []
    row = res.trials.set_index("trial_id").loc[path.stem]
    assert row["optimizer"] == "sgd" and row["status"] == "ok" and pd.isna(row["steps_to_target"])
    assert res.trials["seed"].dtype == "int64" and res.trials["steps"].dtype == "int64"


def test_missing_optional_columns_are_nulls_and_extra_columns_are_kept(results):
    path = trial_files(results)[0]
    table = pq.read_table(path).drop_columns(["final_val_loss", "device", "error"])
    table = table.append_column("my_metric", pa.array([0.25])).append_column("my_label", pa.array(["x"]))
    pq.write_table(table, path)
    res = Store(results).read()
    assert res.problems == []
    rows = res.trials.set_index("trial_id")
    assert pd.isna(rows.loc[path.stem, "final_val_loss"]) and pd.isna(rows.loc[path.stem, "device"])
    assert rows.loc[path.stem, "my_metric"] == 0.25 and rows.loc[path.stem, "my_label"] == "x"
    other = trial_files(results)[1].stem
    assert pd.isna(rows.loc[other, "my_metric"])  # absent in the other file: null, not an error


def test_values_that_do_not_fit_make_a_bad_file(results):
    path = trial_files(results)[0]
    rewrite_with_pandas(path, True, edit=lambda df: df.assign(seed="zero"))
    res = Store(results).read()
    assert len(res.problems) == 1 and "column 'seed'" in res.problems[0].reason
    assert path.stem not in set(res.trials["trial_id"])
    assert not Store(results).has(path.stem)


def test_file_missing_a_required_column_is_reported_once_and_rerun(results):
    bad = trial_files(results)[0]
    pq.write_table(pq.read_table(bad).drop_columns(["status"]), bad)
    (results / "trials" / "torn.parquet").write_bytes(b"PAR1 not a whole file")
    store = Store(results)
    assert not store.has(bad.stem)
    assert store.done_ids() == {trial_files(results)[1].stem}

    out = invoke("results", "--results", str(results), "--json")
    assert out.exit_code == 0, out.output
    assert out.stderr.count(bad.name) == 1 and "lacks required column status" in out.stderr
    assert out.stderr.count("torn.parquet") == 1

    out = invoke(*RUN, "--results", str(results))  # the resumed run runs the bad trial again, the good one not
    assert out.exit_code == 0, out.output
    assert "ran 1 trial(s) (1 ok); 1 already done" in out.stderr
    assert out.stderr.count(bad.name) == 1 and "will re-run" in out.stderr
    assert "status" in pq.read_schema(bad).names
    assert Store(results).has(bad.stem)
    assert len(Store(results).read().trials) == 2


def test_curves_file_is_not_a_trials_file(results):
    curves = sorted((results / "curves").glob("*.parquet"))[0]
    shutil.copy(curves, results / "trials" / "stray.parquet")
    res = Store(results).read()
    assert [p.path.name for p in res.problems] == ["stray.parquet"]
    assert "not an optbench trials file" in res.problems[0].reason
