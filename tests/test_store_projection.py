"""`optbench results` and the gate read only the columns they use (store.Projection): the same summary as a
full read, every metric column whatever declared it, the same bad files named and skipped.

The rows come from real runs of the tiny regression task with a metric plugin that exists only in this file;
the root mixes a compacted segment, per-trial files, a file rewritten by pandas and one written before
columns were declared (an undeclared numeric column)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _tiny_task import tiny_registry

import optbench.registry
from optbench import ColumnSpec, MetricSpec, MetricWhen, hookimpl
from optbench.cli.results import TABLE_READS
from optbench.compact import compact
from optbench.gate import REGRESSION, run_gate
from optbench.schema import CORE_COLUMNS
from optbench.store import REQUIRED_TRIAL, Projection, Store
from optbench.summary import READS, metric_columns, summarize

TASK = "tiny-regression"
PROBE = ColumnSpec("probe_gap", better="min", short="gap", description="a test plugin's lower-is-better column")


def _probe(ctx) -> dict[str, float]:
    return {"probe_gap": float(sum(float((p.detach() ** 2).sum()) for p in ctx.params)) + 1.0}


class ProbePlugin:
    @hookimpl
    def optbench_register_metrics(self):
        return [MetricSpec("probe", _probe, MetricWhen.FINAL, "a column no engine list names", columns=(PROBE,))]


def _run(root: Path, seeds: int) -> None:
    from click.testing import CliRunner

    from optbench.cli import main

    mp = pytest.MonkeyPatch()
    mp.setattr(optbench.registry, "_CACHED", tiny_registry(("probe", ProbePlugin())))
    try:
        out = CliRunner().invoke(main, ["run", "-o", "sgd", "-o", "adamw", "-t", TASK, "--metrics", "probe",
                                        "--seeds", str(seeds), "--results", str(root)],
                                 catch_exceptions=False)
    finally:
        mp.undo()
    assert out.exit_code == 0, out.output


def _rewrite_with_pandas(path: Path, edit=None) -> None:
    """Read, edit and write back with pandas (strings become large_string), keeping optbench's metadata."""
    original = pq.read_schema(path).metadata
    df = pd.read_parquet(path)
    table = pa.Table.from_pandas(df if edit is None else edit(df), preserve_index=False)
    table = table.cast(pa.schema([pa.field(f.name, pa.large_string()) if pa.types.is_string(f.type) else f
                                  for f in table.schema], metadata=table.schema.metadata))
    keep = {k: v for k, v in original.items() if k.startswith(b"optbench.")}
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, **keep}), path)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("projection") / "results"
    _run(root, 2)
    assert compact(Store(root)).trials == 4  # seeds 0 and 1 live in a segment
    _run(root, 4)  # resumed: seeds 2 and 3 run, into per-trial files
    loose = sorted((root / "trials").glob("*.parquet"))
    assert len(loose) == 4 and list((root / "segments").glob("trials-*.parquet"))
    _rewrite_with_pandas(loose[0])
    old = pq.read_table(loose[1])  # a row from before declarations: the numeric column alone tells
    old = old.append_column("legacy_score", pa.array([0.75])).replace_schema_metadata(
        {k: v for k, v in old.schema.metadata.items() if k != b"optbench.columns"})
    pq.write_table(old, loose[1])
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / "r")
    return tmp_path / "r"


def _summary(res) -> pd.DataFrame:
    return summarize(res.trials, columns=metric_columns(res.trials, res.columns))


def test_projection_reads_less_and_summarises_the_same(root):
    full = Store(root).read()
    proj = Store(root).read(columns=Projection.of(READS | TABLE_READS))
    assert full.problems == proj.problems == []
    assert set(proj.trials.columns) < set(full.trials.columns)  # fewer columns indeed
    assert {"probe_gap", "legacy_score"} <= set(proj.trials.columns)
    assert pa.types.is_large_string(pq.read_schema(sorted((root / "trials").glob("*.parquet"))[0])
                                    .field("task").type)  # the pandas-written file is there
    assert proj.columns == full.columns and proj.plugins == full.plugins
    want, got = _summary(full), _summary(proj)
    assert len(want) == 2 and {"probe_gap_mean", "legacy_score_mean"} <= set(want.columns)
    pd.testing.assert_frame_equal(got, want)


def test_projection_on_a_filesystem_uri(root):
    """The same files on fsspec's in-memory filesystem read the same through the projection."""
    fsspec = pytest.importorskip("fsspec")
    uri = f"memory://optbench-projection-{root.parent.name}"
    mem = fsspec.filesystem("memory")
    for path in root.rglob("*.parquet"):
        mem.pipe(f"{uri}/{path.relative_to(root).as_posix()}", path.read_bytes())
    proj = Projection.of(READS)
    local, remote = Store(root).read(columns=proj), Store(uri).read(columns=proj)
    assert remote.problems == []
    pd.testing.assert_frame_equal(_summary(remote), _summary(local))


def test_a_metric_column_reaches_results_json_and_the_gate(root, tmp_path, cli):
    """No engine list names `probe_gap`: it reaches `results --json` and is judged by the gate, with no plugin
    installed while reading."""
    records = json.loads(cli("results", "--results", str(root), "--json").stdout)
    assert len(records) == 2 and all(r["probe_gap_mean"] > 1.0 for r in records)
    assert [r["legacy_score_mean"] for r in records if r["legacy_score_mean"] is not None] == [0.75]  # one file
    same = run_gate(root, root)
    assert same.passed and all(c.check("quality:probe_gap").status == "pass" for c in same.cells)
    worse = tmp_path / "worse"
    shutil.copytree(root, worse)
    for path in (worse / "trials").glob("*.parquet"):  # the candidate's gap doubles on every per-trial file
        _rewrite_with_pandas(path, lambda df: df.assign(probe_gap=df["probe_gap"] * 2 + 1))
    report = run_gate(root, worse)
    assert {c.check("quality:probe_gap").status for c in report.cells} == {REGRESSION}
    out = cli("gate", "--baseline", str(root), "--candidate", str(worse), "--json")
    assert out.exit_code == 1 and "quality:probe_gap" in out.stdout


def test_bad_files_are_named_once_and_skipped_as_by_a_full_read(root):
    """An empty required value, and a column of the wrong kind that the command does not read: named once and
    skipped, as a full read does (the footer is judged whole), and not done for resume either."""
    a, b, *_ = sorted((root / "trials").glob("*.parquet"))
    table = pq.read_table(b)
    pq.write_table(table.set_column(table.schema.get_field_index("status"), "status", pa.array([None], pa.string())),
                   b)
    assert "hostname" not in Projection.of(READS).core  # the wrong-kind column is one the projection skips
    table = pq.read_table(a)
    pq.write_table(table.set_column(table.schema.get_field_index("hostname"), "hostname", pa.array([7])), a)
    full = Store(root).read()
    proj = Store(root).read(columns=Projection.of(READS))
    assert sorted(str(p) for p in proj.problems) == sorted(str(p) for p in full.problems)
    assert sorted(p.path.name for p in proj.problems) == sorted([a.name, b.name])
    assert not {a.stem, b.stem} & set(proj.trials["trial_id"])
    assert not Store(root).has(a.stem) and not Store(root).has(b.stem)  # neither counts as done for resume
    assert not {a.stem, b.stem} & Store(root).done_ids()
    pd.testing.assert_frame_equal(_summary(proj), _summary(full))


def test_the_projection_names_every_core_column_the_commands_use():
    """A core column named in the summary, the gate or the results table must be one they read: else a
    projected read would hand them a table without it. (Metric columns are read whatever their name.)"""
    import optbench.cli.results as results_mod
    import optbench.gate as gate_mod
    import optbench.summary as summary_mod

    reads = Projection.of(READS | TABLE_READS).core
    assert set(REQUIRED_TRIAL) <= Projection.of(()).core
    for module in (summary_mod, gate_mod, results_mod):
        tree = ast.parse(Path(module.__file__).read_text())
        named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in CORE_COLUMNS}
        assert named <= reads, (module.__name__, sorted(named - reads))


def test_a_list_of_names_reads_exactly_those(root):
    """compact asks for `trial_id` alone: a plain list of names is not widened by metric columns."""
    res = Store(root).read(columns=["trial_id"])
    assert list(res.trials.columns) == ["trial_id"] and len(res.trials) == 8
