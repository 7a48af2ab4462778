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


# --- compaction (issue 16.5) --------------------------------------------------------------------------------
def snapshot(root) -> tuple[pd.DataFrame, pd.DataFrame]:
    res = Store(root).read(with_curves=True)
    assert res.problems == []
    trials = res.trials.sort_values("trial_id").reset_index(drop=True)
    curves = res.curves.sort_values(["trial_id", "name", "step"]).reset_index(drop=True)
    return trials, curves


def assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_compact_folds_trials_into_a_segment_and_resume_sees_them(results):
    before = snapshot(results)
    ids = {p.stem for p in trial_files(results)}
    out = invoke("compact", "--results", str(results))
    assert out.exit_code == 0, out.output
    assert "compacted 2 trial(s) into 1 segment(s), removed 4 file(s)" in out.stderr
    assert trial_files(results) == [] and list((results / "curves").glob("*.parquet")) == []
    assert sorted(p.name.split("-")[0] for p in (results / "segments").iterdir()) == ["curves", "trials"]
    assert_same(before, snapshot(results))
    assert Store(results).done_ids() == ids and all(Store(results).has(i) for i in ids)
    out = invoke(*RUN, "--results", str(results))
    assert out.exit_code == 0 and "ran 0 trial(s) (nothing new); 2 already done" in out.stderr, out.output
    again = invoke("compact", "--results", str(results))  # nothing left to do: nothing changes
    assert "compacted 0 trial(s) into 0 segment(s), removed 0 file(s)" in again.stderr
    assert_same(before, snapshot(results))


@pytest.mark.parametrize("crash_at", ["trials segment", "removing sources"])
def test_interrupted_compaction_reads_right_and_is_finished_by_the_next(results, monkeypatch, crash_at):
    import optbench.compact as compact_mod
    from optbench.compact import compact

    before = snapshot(results)
    real_write, real_finish = compact_mod.storefs.write_table_atomic, compact_mod._finish

    def write(loc, rel, table):
        if crash_at == "trials segment" and rel.startswith("segments/trials-"):
            raise KeyboardInterrupt
        return real_write(loc, rel, table)

    def finish(store, manifest, report):
        if crash_at == "removing sources":
            raise KeyboardInterrupt
        return real_finish(store, manifest, report)

    monkeypatch.setattr(compact_mod.storefs, "write_table_atomic", write)
    monkeypatch.setattr(compact_mod, "_finish", finish)
    with pytest.raises(KeyboardInterrupt):
        compact(Store(results))
    assert len(trial_files(results)) == 2  # nothing was lost or removed
    assert_same(before, snapshot(results))  # no duplicates either
    monkeypatch.setattr(compact_mod.storefs, "write_table_atomic", real_write)
    monkeypatch.setattr(compact_mod, "_finish", real_finish)
    report = compact(Store(results))
    assert report.resumed == 1 and trial_files(results) == []
    assert report.trials == (2 if crash_at == "trials segment" else 0)  # else the segment was already whole
    assert len(list((results / "segments").glob("trials-*.parquet"))) == 1
    assert list((results / "segments").glob("*.json")) == []
    assert_same(before, snapshot(results))


def test_newer_per_trial_file_wins_over_a_segment_and_compacts_over_it(results):
    from optbench.compact import compact

    compact(Store(results))
    trials, _ = snapshot(results)
    row = trials.iloc[0].to_dict()
    row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
    row.update(status="failed", error="re-run with --force")
    Store(results).write(row, [])
    assert Store(results).read().trials.set_index("trial_id").loc[row["trial_id"], "status"] == "failed"
    report = compact(Store(results))  # the loose file and the small segment merge into one segment
    assert report.trials == 2 and len(list((results / "segments").glob("trials-*.parquet"))) == 1
    after, curves = snapshot(results)
    assert len(after) == 2 and after.set_index("trial_id").loc[row["trial_id"], "status"] == "failed"
    assert set(curves["trial_id"]) == {t for t in after["trial_id"] if t != row["trial_id"]}


def test_compaction_leaves_bad_files_in_place(results):
    from optbench.compact import compact

    bad = trial_files(results)[0]
    pq.write_table(pq.read_table(bad).drop_columns(["status"]), bad)
    report = compact(Store(results))
    assert report.trials == 1 and bad.exists()
    assert [p.path.name for p in report.problems] == [bad.name]
    assert not Store(results).has(bad.stem)


def test_results_on_a_filesystem_uri(results):
    """A file:// URI through the CLI, and fsspec's in-memory filesystem through the API (no network)."""
    before = snapshot(results)
    out = invoke("results", "--results", f"file://{results}", "--json")
    assert out.exit_code == 0 and '"optimizer":"sgd"' in out.stdout.replace(" ", ""), out.output
    pytest.importorskip("fsspec")
    from optbench.compact import compact

    mem = Store(f"memory://optbench-test-{results.parent.name}")
    trials, curves = before
    for tid, row in trials.set_index("trial_id", drop=False).iterrows():
        clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.to_dict().items()}
        mem.write(clean, curves[curves["trial_id"] == tid].to_dict("records"))
    assert mem.done_ids() == set(trials["trial_id"])
    assert_same(before, snapshot(mem.root))
    assert compact(mem).trials == 2
    assert_same(before, snapshot(mem.root))
    assert mem.done_ids() == set(trials["trial_id"])
