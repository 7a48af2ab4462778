"""Parquet results: per-trial files written whole or not at all, read back as one conformed table.

Writing: every trial writes `curves/<trial_id>.parquet` then `trials/<trial_id>.parquet`, each under a
temporary name and renamed (storefs.py), so a crash or Ctrl-C leaves either the complete file or nothing, and
a trial counts as finished exactly when a readable trials file with the required columns exists (resume looks
at that). Each trial owns its files, so any number of workers share one root; the only coordination is a
per-trial claim file (optbench/claims.py).

Reading: every file is cast to the canonical schema (conform.py), so files written by pandas or another
pyarrow read like ours, and a file that cannot stand for its trial is named once, skipped and not counted as
done. A command reads only the columns it uses (a `Projection`: the core columns it names, and every metric
column), from per-trial files and segments alike; each file's footer is still checked whole.
`optbench compact` folds finished per-trial files into large segments (`segments/`); a trial may then
exist in several places for a while, and the newest copy wins: a per-trial file over any segment, a later
segment over an earlier one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from optbench import storefs
from optbench.conform import BadFile, check_types, conform, unify
from optbench.errors import OptbenchError
from optbench.schema import (
    CORE_COLUMNS,
    CORE_SCHEMA,
    as_trial_row,
    columns_from_metadata,
    columns_metadata,
    facts_from_metadata,
    merge_columns,
    merge_facts,
)
from optbench.specs import ColumnSpec

#: where scan() leaves the merged plugin facts on the table it returns
MERGED_FACTS_KEY = b"optbench.plugins.merged"

SCHEMA_VERSION = 1
SCHEMA_KEY = b"optbench.schema_version"
KIND_KEY = b"optbench.table"

_F, _I, _S = pa.float64(), pa.int64(), pa.string()

#: the core of the trials table (optbench/schema.py); declared metric columns follow it in each file
TRIAL_SCHEMA = CORE_SCHEMA
TRIAL_COLUMNS = TRIAL_SCHEMA.names

CURVE_SCHEMA = pa.schema(
    [("trial_id", _S), ("step", _I), ("wall_time_s", _F), ("split", _S), ("name", _S), ("value", _F)]
)


#: a trials row without these cannot be identified or counted, so its file is not a result
REQUIRED_TRIAL = ("trial_id", "task", "preset", "optimizer", "seed", "status")
REQUIRED_CURVE = ("trial_id", "step", "name", "value")
TRIALS, CURVES, SEGMENTS = "trials", "curves", "segments"


@dataclass(frozen=True)
class Projection:
    """The trials columns a reader reads: those in `core` and, with `extras`, every column outside the core
    schema. Parquet then reads only their column chunks; the footer is still checked whole."""

    core: frozenset[str]
    extras: bool = False

    @classmethod
    def of(cls, core: Iterable[str]) -> Projection:
        """What a command reads: the core columns it uses, the required ones (so a file with an empty required
        value is skipped as a full read skips it), and every column outside the core. Those are the metric
        columns, whichever plugin declared them, installed here or not, or none did (rows older than
        declarations), so a newly declared metric column cannot be left behind by a list nobody updated."""
        return cls(frozenset(core) | frozenset(REQUIRED_TRIAL), extras=True)

    def pick(self, names: Sequence[str]) -> list[str]:
        """Of a file's column `names`, those to read, in the file's order."""
        return [n for n in names if n in self.core or (self.extras and n not in CORE_COLUMNS)]


def _projection(columns: Sequence[str] | Projection | None) -> Projection | None:
    """A plain list of names reads exactly those (compact reads `trial_id` alone)."""
    if columns is None or isinstance(columns, Projection):
        return columns
    return Projection(frozenset(columns))


@dataclass
class ReadProblem:
    path: Path | str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Results:
    trials: pd.DataFrame
    curves: pd.DataFrame | None = None
    problems: list[ReadProblem] = field(default_factory=list)
    #: the metric columns the files declare (optbench/schema.py), for display
    columns: tuple[ColumnSpec, ...] = ()
    #: what the plugins recorded about themselves, {kind: {name: facts}} (schema.TrialRow.facts)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)


def _with_meta(schema: pa.Schema, kind: str) -> pa.Schema:
    return schema.with_metadata({SCHEMA_KEY: str(SCHEMA_VERSION).encode(), KIND_KEY: kind.encode()})


def trial_table(row: Mapping[str, Any]) -> pa.Table:
    """One trials row as a table: the core columns, then the row's declared columns (their declarations in
    the file's metadata); a key outside both raises (optbench/schema.py)."""
    table = as_trial_row(row).to_table()
    meta = dict(table.schema.metadata or {})
    meta.update({SCHEMA_KEY: str(SCHEMA_VERSION).encode(), KIND_KEY: b"trials"})
    return table.replace_schema_metadata(meta)


def curve_table(points: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(points), schema=_with_meta(CURVE_SCHEMA, "curves"))


def winner_mask(ids: pa.ChunkedArray, owner: np.ndarray, won_ids: pa.ChunkedArray, won_owner: np.ndarray,
                ) -> np.ndarray:
    """For rows (ids, owner): whether that row's source is the one whose copy of the trial won."""
    winner = pd.Series(won_owner, index=won_ids.to_numpy(zero_copy_only=False))
    return winner.reindex(ids.to_numpy(zero_copy_only=False)).to_numpy() == owner


class Source:
    """One file holding trial rows: a per-trial file or a segment; `rank` orders copies (higher wins)."""

    __slots__ = ("path", "rank", "curves")

    def __init__(self, path: str, rank: int, curves: str | None) -> None:
        self.path, self.rank, self.curves = path, rank, curves


class Store:
    """A results root: a local directory or a filesystem URI (see storefs.py)."""

    def __init__(self, root: str | Path, filesystem: pafs.FileSystem | None = None) -> None:
        self.loc = storefs.locate(root, filesystem)
        self.root: Path | str = self.loc.local if self.loc.local is not None else self.loc.uri
        self.trials_dir = self._dir(TRIALS)
        self.curves_dir = self._dir(CURVES)
        self.segments_dir = self._dir(SEGMENTS)
        self._dirs_made = False
        self._segment_index: tuple[tuple[str, ...], frozenset[str]] | None = None

    def _dir(self, name: str) -> Path | str:
        return self.loc.local / name if self.loc.local is not None else self.loc.join(name)

    @property
    def address(self) -> str:
        """The root as another process (a Ray worker) can open it: an absolute path or the URI."""
        return self.loc.path if self.loc.local is not None else self.loc.uri

    @property
    def claims_root(self) -> Path:
        """Where this host keeps its claims (claims.py): the root itself when local; for a remote root a local
        folder named after it, since object stores have no atomic create-if-absent (claims then only
        coordinate the drivers of this machine)."""
        if self.loc.local is not None:
            return self.loc.local
        import hashlib

        digest = hashlib.sha256(self.loc.uri.encode()).hexdigest()[:16]
        return Path.home() / ".cache" / "optbench" / "claims" / digest

    @property
    def is_local(self) -> bool:
        return self.loc.local is not None

    def exists(self) -> bool:
        return self.loc.fs.get_file_info(self.loc.path).type == pafs.FileType.Directory

    def has_layout(self) -> bool:
        """Whether the root looks like one `optbench run` wrote (a trials/ or segments/ folder)."""
        infos = self.loc.fs.get_file_info([self.loc.join(TRIALS), self.loc.join(SEGMENTS)])
        return any(i.type == pafs.FileType.Directory for i in infos)

    def prepare(self) -> None:
        """Create the layout and prove it is writable, before any trial runs."""
        try:
            storefs.makedirs(self.loc, TRIALS, CURVES)
            storefs.write_bytes_atomic(self.loc, ".write-probe", b"x" * 65536)
            storefs.delete(self.loc, self.loc.join(".write-probe"))
            self._dirs_made = True
        except OSError as exc:
            raise OptbenchError(
                f"cannot write results under {self.root}: {getattr(exc, 'strerror', None) or exc}.",
                "Choose a writable directory with --results, or free some disk space.",
            ) from None

    def trial_path(self, trial_id: str) -> Path | str:
        name = f"{trial_id}.parquet"
        return self.trials_dir / name if self.loc.local is not None else self.loc.join(TRIALS, name)

    def write(self, row: Mapping[str, Any], curves: Sequence[dict[str, Any]]) -> None:
        if not self._dirs_made:
            storefs.makedirs(self.loc, TRIALS, CURVES)
            self._dirs_made = True
        trial_id = row["trial_id"]
        storefs.write_table_atomic(self.loc, f"{CURVES}/{trial_id}.parquet", curve_table(curves))
        storefs.write_table_atomic(self.loc, f"{TRIALS}/{trial_id}.parquet", trial_table(row))

    # --- which trials are done ----------------------------------------------------------------------
    def _open(self, path: str) -> pq.ParquetFile:
        """The file with its footer parsed (the footer is all that resume looks at)."""
        try:
            return pq.ParquetFile(path, filesystem=self.loc.fs, pre_buffer=False)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything unreadable is a bad file, named by the caller
            raise BadFile(f"unreadable Parquet file ({str(exc).splitlines()[0]})") from None

    def _check_header(self, path: str, kind: str, schema: pa.Schema | None = None) -> pa.Schema:
        """The file's schema if it can be a `kind` file; BadFile otherwise; a newer schema stops the command."""
        if schema is None:
            schema = self._open(path).schema_arrow
        meta = schema.metadata or {}
        declared = meta.get(KIND_KEY)
        if declared is not None and declared != kind.encode():
            raise BadFile(f"not an optbench {kind} file (it says {declared.decode(errors='replace')!r})")
        try:
            version = int(meta.get(SCHEMA_KEY, b"0"))
        except ValueError:
            version = 0
        if version > SCHEMA_VERSION:
            raise OptbenchError(
                f"{path} was written by a newer optbench (schema {version}; this one reads {SCHEMA_VERSION}).",
                "Upgrade optbench to read these results.",
            )
        required = REQUIRED_TRIAL if kind == TRIALS else REQUIRED_CURVE
        names = set(schema.names)  # .names builds a new list on every call
        missing = [c for c in required if c not in names]
        if missing:
            raise BadFile(f"not an optbench {kind} file: lacks required column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing)}")
        check_types(schema, TRIAL_SCHEMA if kind == TRIALS else CURVE_SCHEMA)
        return schema

    def _check_done(self, path: str) -> None:
        """BadFile unless the per-trial file at `path` can count as a finished trial, judged from its footer:
        the header, and no empty value in a required column by the column statistics (pyarrow and pandas
        write them; a file without them is judged by its header alone), so resume reruns what a read skips."""
        pf = self._open(path)
        self._check_header(path, TRIALS, pf.schema_arrow)
        md = pf.metadata
        index = {name: j for j, name in enumerate(md.schema.names)}
        for r in range(md.num_row_groups):
            group = md.row_group(r)
            for name in REQUIRED_TRIAL:
                stats = group.column(index[name]).statistics if name in index else None
                if stats is not None and stats.has_null_count and stats.null_count:
                    raise BadFile(f"required column {name!r} has empty values")

    def _segment_ids(self) -> frozenset[str]:
        """Trial ids held by segments (one column read per segment, cached while the segments stay the same)."""
        names = tuple(i.path for i in self.segments())
        if self._segment_index is None or self._segment_index[0] != names:
            ids: set[str] = set()
            for path in names:
                try:
                    ids.update(pq.ParquetFile(path, filesystem=self.loc.fs).read(columns=["trial_id"])
                               .column("trial_id").to_pylist())
                except FileNotFoundError:
                    continue  # merged away by a concurrent `optbench compact`: its rows live in a newer segment
            self._segment_index = (names, frozenset(ids))
        return self._segment_index[1]

    def segments(self) -> list[pafs.FileInfo]:
        return [i for i in storefs.list_files(self.loc, SEGMENTS) if i.base_name.startswith("trials-")]

    def has(self, trial_id: str, problems: list[ReadProblem] | None = None) -> bool:
        """Done: a readable per-trial file with the required columns filled, or a row in a segment. A bad
        per-trial file is added to `problems` and does not count."""
        path = str(self.trial_path(trial_id))
        try:
            self._check_done(path)
            return True
        except FileNotFoundError:
            pass
        except BadFile as exc:
            if problems is not None:
                problems.append(ReadProblem(self._shown(path), str(exc)))
        return trial_id in self._segment_ids()

    def done_ids(self, among: Sequence[str] | None = None, problems: list[ReadProblem] | None = None) -> set[str]:
        """The finished trials' ids (only those `among`, if given), for resume. A bad per-trial file is not
        done; each is added to `problems` so the caller can say that its trial will run again."""
        loose = storefs.list_files(self.loc, TRIALS)
        if among is not None and len(among) * 8 < len(loose):  # a small grid in a big store: ask per trial
            return {t for t in among if self.has(t, problems)}
        wanted = None if among is None else set(among)
        done = set(self._segment_ids())
        for info in loose:
            trial_id = info.base_name[: -len(".parquet")]
            if wanted is not None and trial_id not in wanted:
                continue
            try:
                self._check_done(info.path)
            except FileNotFoundError:
                continue
            except BadFile as exc:
                if problems is not None:
                    problems.append(ReadProblem(self._shown(info.path), str(exc)))
                continue
            done.add(trial_id)
        return done if among is None else done.intersection(among)

    def _shown(self, path: str) -> Path | str:
        return Path(path) if self.is_local else path

    # --- reading ------------------------------------------------------------------------------------
    def sources(self) -> list[Source]:
        """Every file holding trial rows, lowest precedence first."""
        out = []
        for rank, info in enumerate(self.segments()):
            out.append(Source(info.path, rank, self.loc.join(SEGMENTS, "curves-" + info.base_name[len("trials-"):])))
        base = len(out)
        for info in storefs.list_files(self.loc, TRIALS):
            out.append(Source(info.path, base, self.loc.join(CURVES, info.base_name)))
        return out

    def _read_raw(self, path: str, kind: str, columns: Projection | None) -> pa.Table:
        """One file's rows as written (checked: kind, required columns present and filled), only the columns
        `columns` picks (all when None): Parquet then reads only those column chunks."""
        pf = self._open(path)
        file_schema = self._check_header(path, kind, pf.schema_arrow)
        wanted = None if columns is None else columns.pick(file_schema.names)
        try:
            table = pf.read(columns=wanted, use_threads=False)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - a torn or corrupt body
            raise BadFile(f"unreadable Parquet file ({str(exc).splitlines()[0]})") from None
        names = set(table.column_names)
        for name in REQUIRED_TRIAL if kind == TRIALS else REQUIRED_CURVE:
            if name in names and table.column(name).null_count:
                raise BadFile(f"required column {name!r} has empty values")
        return table  # its metadata (e.g. column declarations) travels with the conformed group

    def read_many(self, paths: list[str], kind: str, columns: Sequence[str] | Projection | None, on_bad: str,
                  problems: list[ReadProblem]) -> list[tuple[np.ndarray, pa.Table]]:
        """Read `paths` (in parallel: pyarrow releases the GIL) and conform them to the canonical schema.
        Files sharing one physical schema are conformed together, so a thousand per-trial files cost one
        cast, not a thousand. Returns (for each row the index of its file in `paths`, rows) pairs; bad files
        are reported (or raise) and gone ones (compacted meanwhile) skipped."""
        schema = TRIAL_SCHEMA if kind == TRIALS else CURVE_SCHEMA
        required = REQUIRED_TRIAL if kind == TRIALS else REQUIRED_CURVE
        columns = _projection(columns)
        if columns is not None:
            schema = pa.schema([f for f in schema if f.name in columns.core])
            required = tuple(c for c in required if c in columns.core)

        def one(path: str) -> pa.Table | BadFile | None:
            try:
                return self._read_raw(path, kind, columns)
            except FileNotFoundError:
                return None
            except BadFile as exc:
                return exc

        if len(paths) > 64:
            with ThreadPoolExecutor(max_workers=4) as pool:
                raw = list(pool.map(one, paths, chunksize=64))
        else:
            raw = [one(p) for p in paths]

        def bad(i: int, exc: BadFile) -> None:
            problem = ReadProblem(self._shown(paths[i]), str(exc))
            if on_bad == "raise":
                raise OptbenchError(f"{problem}.", "Delete or move the file, or pass --skip-bad.")
            problems.append(problem)

        groups: dict[bytes, list[int]] = {}  # by schema, metadata included; its bytes hash faster than its fields
        for i, result in enumerate(raw):
            if isinstance(result, BadFile):
                bad(i, result)
            elif result is not None:
                groups.setdefault(result.schema.serialize().to_pybytes(), []).append(i)
        out = []
        for members in groups.values():
            try:
                table = conform(pa.concat_tables([raw[i] for i in members]), schema, required)
                table = table.replace_schema_metadata(raw[members[0]].schema.metadata)
                owner = np.repeat(np.array(members, np.int64), [raw[i].num_rows for i in members])
                out.append((owner, table))
            except BadFile:  # some member's values do not fit: find which, one by one
                for i in members:
                    try:
                        table = conform(raw[i], schema, required).replace_schema_metadata(raw[i].schema.metadata)
                        out.append((np.full(raw[i].num_rows, i, np.int64), table))
                    except BadFile as exc:
                        bad(i, exc)
        return out

    def scan(self, columns: Sequence[str] | Projection | None = None, with_curves: bool = False, on_bad: str = "skip",
             ) -> tuple[pa.Table, pa.Table | None, list[ReadProblem]]:
        """Every trial's newest row as one Arrow table (and its curves), plus the files that were skipped."""
        if not self.exists():
            raise OptbenchError(f"no results directory at {self.root}.", "Run `optbench run` first or pass --results.")
        problems: list[ReadProblem] = []
        sources = self.sources()
        rows_of, trials, owner = self.gather(sources, columns, on_bad, problems)
        curves = self._curves(sources, rows_of, trials, owner, on_bad, problems) if with_curves else None
        return trials, curves, problems

    def gather(self, sources: list[Source], columns: Sequence[str] | Projection | None, on_bad: str,
               problems: list[ReadProblem]) -> tuple[np.ndarray, pa.Table, np.ndarray]:
        """Read `sources` (lowest precedence first) and keep each trial's winning row: the one from the
        source latest in the list. Returns the number of rows read from each source, the winning rows, and
        for each winning row the index of its source."""
        columns = _projection(columns)
        if columns is not None:
            columns = Projection(columns.core | {"trial_id"}, columns.extras)
        parts = self.read_many([s.path for s in sources], TRIALS, columns, on_bad, problems)
        schema = TRIAL_SCHEMA if columns is None else pa.schema([f for f in TRIAL_SCHEMA if f.name in columns.core])
        declared = merge_columns(columns_from_metadata(t.schema.metadata) for _, t in parts)
        facts = merge_facts(facts_from_metadata(t.schema.metadata) for _, t in parts)
        trials = unify([t for _, t in parts], schema).replace_schema_metadata(
            {**columns_metadata(declared), MERGED_FACTS_KEY: json.dumps(facts).encode()})
        owner = np.concatenate([o for o, _ in parts]) if parts else np.zeros(0, np.int64)
        rows_of = np.bincount(owner, minlength=len(sources))
        ids = pd.Series(trials.column("trial_id").to_numpy(zero_copy_only=False))
        if ids.duplicated().any():
            order = np.argsort(owner, kind="stable")
            keep = order[~ids.iloc[order].duplicated(keep="last").to_numpy()]
            keep.sort()
            trials, owner = trials.take(pa.array(keep)), owner[keep]
        return rows_of, trials, owner

    def _curves(self, sources: list[Source], rows_of: np.ndarray, trials: pa.Table, owner: np.ndarray,
                on_bad: str, problems: list[ReadProblem]) -> pa.Table:
        """The curves of each winning row, from the file or segment that row came from."""
        used = np.unique(owner)
        parts = self.read_many([sources[i].curves for i in used], CURVES, None, on_bad, problems)
        superseded = int(rows_of.sum()) != trials.num_rows
        out = []
        for own, table in parts:
            if superseded:  # keep a curve point only where its source is the one whose row won
                mask = winner_mask(table.column("trial_id"), used[own], trials.column("trial_id"), owner)
                table = table.filter(pa.array(mask))
            out.append(table)
        return unify(out, CURVE_SCHEMA)

    def read(self, with_curves: bool = False, on_bad: str = "skip", columns: Sequence[str] | Projection | None = None,
             ) -> Results:
        """All trials (and curves) under the root as DataFrames; bad files are named in `problems` or raise.
        `columns`: a Projection (what a command uses), a list of names (exactly those) or None (every column)."""
        trials, curves, problems = self.scan(columns, with_curves, on_bad)
        meta = trials.schema.metadata or {}
        return Results(trials.to_pandas(), None if curves is None else curves.to_pandas(), problems,
                       columns_from_metadata(meta), json.loads(meta.get(MERGED_FACTS_KEY, b"{}")))
