"""Parquet results: one `trials/` and one `curves/` file per trial, each written whole or not at all.

Every file is written under a temporary name in its final directory, flushed to disk and renamed, so a
crash or Ctrl-C leaves either the complete file or nothing. The curves file is written first: a trial
counts as finished exactly when its `trials/` file exists, which is what resume looks at. Because each
trial owns its files, any number of workers can share one results root; the only coordination is a per-trial
claim file (optbench/claims.py) so that two drivers never run the same trial twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from optbench.errors import OptbenchError

SCHEMA_VERSION = 1
SCHEMA_KEY = b"optbench.schema_version"
KIND_KEY = b"optbench.table"

_F, _I, _S = pa.float64(), pa.int64(), pa.string()

#: the trials table, in column order; every row has every column (null where a task cannot fill it)
TRIAL_SCHEMA = pa.schema(
    [
        ("trial_id", _S), ("run_id", _S), ("task", _S), ("preset", _S), ("dataset", _S), ("synthetic", pa.bool_()),
        ("optimizer", _S), ("plugin", _S), ("plugin_version", _S), ("task_plugin", _S), ("hparams", _S),
        ("options", _S), ("seed", _I), ("status", _S), ("error", _S), ("diverged_step", _I),
        ("steps", _I), ("budget", _I), ("wall_time_s", _F), ("train_time_s", _F), ("step_time_ms", _F),
        ("optimizer_step_ms", _F), ("steps_per_s", _F), ("examples_per_s", _F),
        ("forward_passes", _F), ("backward_passes", _F),
        ("time_to_target_s", _F), ("steps_to_target", _I), ("target_name", _S), ("target_value", _F),
        ("final_train_loss", _F), ("final_test_loss", _F), ("final_test_accuracy", _F),
        ("sharpness", _F), ("hessian_trace", _F), ("entropy_gap", _F), ("entropy_gap_alpha2", _F),
        ("metrics", _S), ("metric_errors", _S), ("hvp_calls", _I),
        ("peak_memory_mb", _F), ("optimizer_state_mb", _F), ("device", _S), ("torch_version", _S),
        ("optbench_version", _S), ("git_commit", _S), ("hostname", _S), ("started_at", _S),
    ]
)
TRIAL_COLUMNS = TRIAL_SCHEMA.names

CURVE_SCHEMA = pa.schema(
    [("trial_id", _S), ("step", _I), ("wall_time_s", _F), ("split", _S), ("name", _S), ("value", _F)]
)


@dataclass
class ReadProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Results:
    trials: pd.DataFrame
    curves: pd.DataFrame | None = None
    problems: list[ReadProblem] = field(default_factory=list)


def _atomic_write(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _with_meta(schema: pa.Schema, kind: str) -> pa.Schema:
    return schema.with_metadata({SCHEMA_KEY: str(SCHEMA_VERSION).encode(), KIND_KEY: kind.encode()})


def trial_table(row: dict[str, Any]) -> pa.Table:
    unknown = set(row) - set(TRIAL_COLUMNS)
    if unknown:
        raise ValueError(f"row has columns outside the schema: {sorted(unknown)}")
    return pa.Table.from_pylist([{c: row.get(c) for c in TRIAL_COLUMNS}], schema=_with_meta(TRIAL_SCHEMA, "trials"))


def curve_table(points: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(points), schema=_with_meta(CURVE_SCHEMA, "curves"))


class Store:
    """A results root on disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.trials_dir = self.root / "trials"
        self.curves_dir = self.root / "curves"

    def prepare(self) -> None:
        """Create the layout and prove it is writable, before any trial runs."""
        try:
            self.trials_dir.mkdir(parents=True, exist_ok=True)
            self.curves_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            with open(probe, "wb") as fh:
                fh.write(b"x" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            raise OptbenchError(
                f"cannot write results under {self.root}: {exc.strerror or exc}.",
                "Choose a writable directory with --results, or free some disk space.",
            ) from None

    def trial_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.parquet"

    def has(self, trial_id: str) -> bool:
        """A trial is done when its trials file exists and has a readable footer."""
        path = self.trial_path(trial_id)
        if not path.exists():
            return False
        try:
            pq.read_metadata(path)
            return True
        except Exception:  # noqa: BLE001 - an unreadable file means: not done
            return False

    def write(self, row: dict[str, Any], curves: Sequence[dict[str, Any]]) -> None:
        self.prepare()
        trial_id = row["trial_id"]
        _atomic_write(curve_table(curves), self.curves_dir / f"{trial_id}.parquet")
        _atomic_write(trial_table(row), self.trial_path(trial_id))

    # --- reading ------------------------------------------------------------------------------------
    def _read(self, folder: Path, kind: str, on_bad: str, problems: list[ReadProblem]) -> list[pa.Table]:
        tables = []
        for path in sorted(folder.glob("*.parquet")):
            try:
                table = pq.read_table(path)
                meta = table.schema.metadata or {}
                if meta.get(KIND_KEY) != kind.encode():
                    raise ValueError(f"not an optbench {kind} file")
                version = int(meta.get(SCHEMA_KEY, b"0"))
                if version > SCHEMA_VERSION:
                    raise OptbenchError(
                        f"{path} was written by a newer optbench (schema {version}; this one reads "
                        f"{SCHEMA_VERSION}).",
                        "Upgrade optbench to read these results.",
                    )
                tables.append(table)
            except OptbenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - name the file, then skip or stop as asked
                problem = ReadProblem(path, f"unreadable or foreign Parquet file ({str(exc).splitlines()[0]})")
                if on_bad == "raise":
                    raise OptbenchError(f"{problem}.", "Delete or move the file, or pass --skip-bad.") from None
                problems.append(problem)
        return tables

    def read(self, with_curves: bool = False, on_bad: str = "skip") -> Results:
        """All trials (and curves) under the root; bad files are named in `problems` or raise."""
        if not self.root.exists():
            raise OptbenchError(f"no results directory at {self.root}.", "Run `optbench run` first or pass --results.")
        problems: list[ReadProblem] = []
        tables = self._read(self.trials_dir, "trials", on_bad, problems)
        trials = _concat(tables, TRIAL_SCHEMA)
        curves = None
        if with_curves:
            curves = _concat(self._read(self.curves_dir, "curves", on_bad, problems), CURVE_SCHEMA)
        return Results(trials, curves, problems)


def _concat(tables: Iterable[pa.Table], schema: pa.Schema) -> pd.DataFrame:
    tables = [t.select([c for c in schema.names if c in t.column_names]) for t in tables]
    if not tables:
        return schema.empty_table().to_pandas()
    return pa.concat_tables(tables, promote_options="default").to_pandas()

