"""The trials table: the core columns every trial has, plus the columns that metric plugins declare.

This is the one definition of a trial row. The runner (and the Ray executor, for a trial its worker could not
finish) fill a `TrialRow`, which refuses any key outside the table the moment it is set, so a misspelt column
fails at that line instead of in the store after the whole trial has run. The column declarations travel
with every trials file (Parquet metadata), so results and the leaderboard can show a metric's columns from
the files alone, without the plugin that produced them installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from optbench.specs import ColumnSpec, MetricSpec

_F, _I, _S = pa.float64(), pa.int64(), pa.string()

#: the core of the trials table, in column order; every row has every column (null where it does not apply)
CORE_SCHEMA = pa.schema(
    [
        ("trial_id", _S), ("run_id", _S), ("task", _S), ("preset", _S), ("dataset", _S), ("synthetic", pa.bool_()),
        ("optimizer", _S), ("plugin", _S), ("plugin_version", _S), ("task_plugin", _S), ("hparams", _S),
        ("options", _S), ("config_id", _S), ("config", _S), ("schedule", _S), ("study", _S), ("study_role", _S),
        ("config_rank", _I), ("selected", pa.bool_()), ("study_budget", _I), ("search_space", _S),
        ("seed", _I), ("status", _S), ("error", _S), ("diverged_step", _I),
        ("steps", _I), ("budget", _I), ("wall_time_s", _F), ("train_time_s", _F), ("step_time_ms", _F),
        ("optimizer_step_ms", _F),
        ("speed_ref", _S), ("opt_step_ratio", _F), ("opt_step_ratio_lo", _F), ("opt_step_ratio_hi", _F),
        ("steps_per_s", _F), ("examples_per_s", _F),
        ("forward_passes", _F), ("backward_passes", _F),
        ("time_to_target_s", _F), ("steps_to_target", _I), ("target_name", _S), ("target_value", _F),
        ("final_train_loss", _F), ("final_test_loss", _F), ("final_test_accuracy", _F),
        ("final_val_loss", _F), ("final_val_accuracy", _F),
        ("metrics", _S), ("metric_errors", _S), ("hvp_calls", _I), ("metric_costs", _S),
        ("peak_memory_mb", _F), ("optimizer_state_mb", _F), ("torch_threads", _I), ("parallel_trials", _I),
        ("device", _S), ("torch_version", _S),
        ("optbench_version", _S), ("git_commit", _S), ("hostname", _S), ("started_at", _S),
    ]
)
CORE_COLUMNS = frozenset(CORE_SCHEMA.names)

#: Parquet metadata key of a trials file's column declarations (a JSON list of ColumnSpec fields)
COLUMNS_KEY = b"optbench.columns"
#: Parquet metadata key of what the plugins said about themselves when the trial ran (JSON, see TrialRow.facts):
#: the leaderboard renders optimizer and task pages from these, not from whatever is installed where it is built
PLUGINS_KEY = b"optbench.plugins"

ARROW_TYPES = {"float64": _F, "int64": _I, "string": _S, "bool": pa.bool_()}


def declared_columns(metrics: Iterable[MetricSpec]) -> tuple[ColumnSpec, ...]:
    """The columns the given metrics declare, in order; a name claimed twice (or a core name) is an error."""
    seen: dict[str, str] = {}
    out: list[ColumnSpec] = []
    for metric in metrics:
        for col in metric.columns:
            if col.name in CORE_COLUMNS:
                raise ValueError(f"metric {metric.name!r} declares column {col.name!r}, a core column of the "
                                 "trials table")
            if col.name in seen:
                if seen[col.name] != metric.name:
                    raise ValueError(f"metrics {seen[col.name]!r} and {metric.name!r} both declare column {col.name!r}")
                continue
            seen[col.name] = metric.name
            out.append(col)
    return tuple(out)


def trials_schema(columns: Iterable[ColumnSpec] = ()) -> pa.Schema:
    """The arrow schema of a trials file: the core columns, then the declared ones; declarations in metadata."""
    columns = tuple(columns)
    fields = [*CORE_SCHEMA, *(pa.field(c.name, ARROW_TYPES[c.dtype]) for c in columns)]
    return pa.schema(fields, metadata=columns_metadata(columns))


def columns_metadata(columns: Iterable[ColumnSpec]) -> dict[bytes, bytes]:
    return {COLUMNS_KEY: json.dumps([asdict(c) for c in columns]).encode()}


def columns_from_metadata(metadata: Mapping[bytes, bytes] | None) -> tuple[ColumnSpec, ...]:
    """The column declarations a trials file carries; none for a file written before they were recorded."""
    raw = (metadata or {}).get(COLUMNS_KEY)
    if not raw:
        return ()
    try:
        return tuple(ColumnSpec(**item) for item in json.loads(raw))
    except (ValueError, TypeError):
        return ()  # a foreign or damaged declaration: the values stay readable, only the labels are lost


def merge_columns(groups: Iterable[Iterable[ColumnSpec]]) -> tuple[ColumnSpec, ...]:
    """Declarations from many files as one list, order kept: the first declaration of each name wins, except
    that a bare one (a name only, from a row written as a plain dict) gives way to a described one."""
    out: dict[str, ColumnSpec] = {}
    for group in groups:
        for col in group:
            if col.name not in out or out[col.name] == ColumnSpec(col.name):
                out[col.name] = col
    return tuple(out.values())


class TrialRow(dict):
    """One row of the trials table: a dict that accepts only the core columns and the declared ones."""

    __slots__ = ("columns", "_allowed", "facts")

    def __init__(self, columns: Iterable[ColumnSpec] = (), facts: Mapping[str, Any] | None = None,
                 **values: Any) -> None:
        super().__init__()
        self.columns: tuple[ColumnSpec, ...] = tuple(columns)
        #: {"optimizer": {...}, "task": {...}}: distribution, version, summary, paper (and defaults, needs)
        self.facts: dict[str, Any] = dict(facts or {})
        self._allowed = CORE_COLUMNS | {c.name for c in self.columns}
        self.update(values)

    def _check(self, key: str) -> None:
        if key not in self._allowed:
            raise KeyError(f"{key!r} is not a column of the trials table (core columns plus the declared "
                           f"{sorted(c.name for c in self.columns)})")

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._check(key)
        return super().setdefault(key, default)

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (Ray) as the same validated type
        return (_rebuild_row, (self.columns, dict(self), self.facts))

    @property
    def schema(self) -> pa.Schema:
        return trials_schema(self.columns)

    def to_table(self) -> pa.Table:
        """This row as a one-row arrow table of the trials schema (every column present, nulls filled)."""
        schema = self.schema
        if self.facts:
            facts = json.dumps(self.facts, default=str).encode()
            schema = schema.with_metadata({**schema.metadata, PLUGINS_KEY: facts})
        return pa.Table.from_pylist([{name: self.get(name) for name in schema.names}], schema=schema)


def _rebuild_row(columns: tuple[ColumnSpec, ...], values: dict[str, Any], facts: dict[str, Any]) -> TrialRow:
    return TrialRow(columns, facts, **values)


def merge_facts(files: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-file facts as {kind: {name: facts}}; a later file's facts for a name replace an earlier one's."""
    out: dict[str, dict[str, Any]] = {}
    for facts in files:
        for kind, item in facts.items():
            if isinstance(item, dict) and item.get("name"):
                out.setdefault(kind, {})[str(item["name"])] = item
    return out


def facts_from_metadata(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """The plugin facts a trials file recorded; {} for files written before they were recorded."""
    raw = (metadata or {}).get(PLUGINS_KEY)
    try:
        facts = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def as_trial_row(row: Mapping[str, Any]) -> TrialRow:
    """A TrialRow as is; a plain mapping (tests, tools) with any non-core numeric key declared as a float column."""
    if isinstance(row, TrialRow):
        return row
    extra = [ColumnSpec(k) for k, v in row.items()
             if k not in CORE_COLUMNS and (v is None or isinstance(v, (int, float)))]
    return TrialRow(extra, **row)
