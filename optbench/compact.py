"""`optbench compact`: fold finished per-trial files into large Parquet segments, atomically and resumably.

A results root of 100k per-trial files is slow to list and to open one by one; a few segments of tens of
thousands of rows read in well under a second. Per-trial files stay the way trials are written (crash-safe,
lock-free); compaction only rewrites what is already finished. Each batch goes through four steps:

1. a manifest `segments/compact-<id>.json` names the batch's output segment and its source files (with their
   size and modification time);
2. the curves segment, then the trials segment, are written whole (storefs.write_table_atomic);
3. the sources are deleted, each only if it is unchanged since step 1 (a trial re-run meanwhile keeps its new
   file);
4. the manifest is deleted.

Readers are right at every point: a trial present both in a source and in a new segment reads once, the newer
copy winning (store.py). An interrupted compaction is finished by the next one: a manifest whose trials
segment exists resumes at step 3; one whose segment does not exist has its partial output removed.
Small segments (under half the target size) are merged the same way, so repeated compactions after small
runs do not pile up segments.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from optbench import storefs
from optbench.conform import unify
from optbench.schema import columns_from_metadata, columns_metadata, merge_columns
from optbench.store import (
    CURVE_SCHEMA,
    CURVES,
    KIND_KEY,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    SEGMENTS,
    TRIAL_SCHEMA,
    TRIALS,
    ReadProblem,
    Source,
    Store,
    winner_mask,
)

DEFAULT_SEGMENT_ROWS = 50_000


@dataclass
class CompactReport:
    trials: int = 0  # rows written to new segments
    segments_written: int = 0
    files_removed: int = 0
    resumed: int = 0  # interrupted compactions finished
    problems: list[ReadProblem] = field(default_factory=list)


def _meta(table: pa.Table, kind: str) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta.update({SCHEMA_KEY: str(SCHEMA_VERSION).encode(), KIND_KEY: kind.encode()})
    return table.replace_schema_metadata(meta)


def _stamp(info: pafs.FileInfo) -> list:
    return [info.path, info.size, info.mtime_ns]


def _manifests(store: Store) -> list[pafs.FileInfo]:
    return [i for i in storefs.list_files(store.loc, SEGMENTS, ".json") if i.base_name.startswith("compact-")]


def _finish(store: Store, manifest: dict, report: CompactReport) -> None:
    """Step 3: remove the sources that are still exactly what was compacted."""
    fs = store.loc.fs
    for path, size, mtime_ns in manifest["sources"]:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File and info.size == size and info.mtime_ns == mtime_ns:
            storefs.delete(store.loc, path)
            report.files_removed += 1


def recover(store: Store, report: CompactReport) -> None:
    """Finish (or undo the partial output of) compactions that were interrupted."""
    fs = store.loc.fs
    for info in _manifests(store):
        try:
            manifest = json.loads(storefs.read_bytes(store.loc, info.path))
        except FileNotFoundError:
            continue  # another compaction finished it just now
        except (OSError, ValueError):
            storefs.delete(store.loc, info.path)  # a torn manifest: step 1 never completed, nothing else exists
            continue
        trials_seg = store.loc.join(SEGMENTS, f"trials-{manifest['id']}.parquet")
        if fs.get_file_info(trials_seg).type == pafs.FileType.File:
            _finish(store, manifest, report)
        else:
            storefs.delete(store.loc, store.loc.join(SEGMENTS, f"curves-{manifest['id']}.parquet"))
        storefs.delete(store.loc, info.path)
        report.resumed += 1


def _batches(inputs: list[tuple[Source, list[pafs.FileInfo], int]], rows: int) -> list[list]:
    out: list[list] = [[]]
    count = 0
    for item in inputs:
        if out[-1] and count + item[2] > rows:
            out.append([])
            count = 0
        out[-1].append(item)
        count += item[2]
    return [b for b in out if b]


def compact(store: Store, segment_rows: int = DEFAULT_SEGMENT_ROWS,
            progress: Callable[[int, int], None] | None = None) -> CompactReport:
    """Fold every finished per-trial file and every small segment under `store` into segments of up to
    `segment_rows` trials. Bad files are reported and left where they are. `progress(done, total)` is
    called after each batch."""
    report = CompactReport()
    if not store.exists():
        return report
    storefs.makedirs(store.loc, SEGMENTS)
    recover(store, report)

    # Which copy of each trial wins is decided over every source, not only the ones being compacted.
    sources = store.sources()
    rows_of, ids, owner = store.gather(sources, ["trial_id"], "skip", report.problems)
    winner_of = dict(zip(ids.column("trial_id").to_pylist(), (sources[i].path for i in owner), strict=True))

    segments = {i.path: i for i in store.segments()}
    loose = {i.path: i for i in storefs.list_files(store.loc, TRIALS)}
    curves = {i.path: i for i in storefs.list_files(store.loc, CURVES)}
    inputs: list[tuple[Source, list[pafs.FileInfo], int]] = []
    small = []
    for source, n in zip(sources, rows_of.tolist(), strict=True):
        if n == 0:
            continue  # bad (reported, left in place) or empty
        if source.path in loose:
            files = [loose[source.path]] + ([curves[source.curves]] if source.curves in curves else [])
            inputs.append((source, files, n))
        elif source.path in segments and n < segment_rows // 2:
            small.append((source, n))
    if inputs or len(small) > 1:
        for source, n in small:
            seg_curves = store.loc.fs.get_file_info(source.curves)
            files = [segments[source.path]] + ([seg_curves] if seg_curves.type == pafs.FileType.File else [])
            inputs.append((source, files, n))

    batches = _batches(inputs, segment_rows)
    for done, batch in enumerate(batches, 1):
        _write_batch(store, batch, winner_of, report)
        if progress is not None:
            progress(done, len(batches))
    return report


def _write_batch(store: Store, batch: list, winner_of: dict[str, str], report: CompactReport) -> None:
    """Steps 1-4 for one batch. Only files that were read whole become sources: a bad file stays put."""
    problems: list[ReadProblem] = []
    sources = [s for s, _, _ in batch]
    stamps = {f.path: f for _, files, _ in batch for f in files}
    parts = store.read_many([s.path for s in sources], TRIALS, None, "skip", problems)
    read = sorted({int(i) for own, _ in parts for i in np.unique(own)})
    won = []
    for own, table in parts:  # keep the rows whose source is the one that wins their trial
        paths = [sources[i].path for i in own]
        keep = np.array([winner_of.get(t) == p for t, p in zip(table.column("trial_id").to_pylist(), paths,
                                                                strict=True)], bool)
        won.append((own[keep], table.filter(pa.array(keep))))
    declared = merge_columns(columns_from_metadata(t.schema.metadata) for _, t in won)
    trials = unify([t for _, t in won], TRIAL_SCHEMA).replace_schema_metadata(columns_metadata(declared))
    won_owner = np.concatenate([o for o, _ in won]) if won else np.zeros(0, np.int64)
    curve_parts = store.read_many([sources[i].curves for i in read], CURVES, None, "skip", problems)
    curve_rows, curves_read = [], set()
    for own, table in curve_parts:
        own = np.array(read, np.int64)[own]
        curves_read.update(int(i) for i in np.unique(own))
        mask = winner_mask(table.column("trial_id"), own, trials.column("trial_id"), won_owner)
        curve_rows.append(table.filter(pa.array(mask)))
    report.problems += problems
    done = [sources[i].path for i in read] + [sources[i].curves for i in sorted(curves_read)]

    seg_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    manifest = {"id": seg_id, "sources": [_stamp(stamps[p]) for p in done if p in stamps]}
    storefs.write_bytes_atomic(store.loc, f"{SEGMENTS}/compact-{seg_id}.json", json.dumps(manifest).encode())
    if trials.num_rows:
        storefs.write_table_atomic(store.loc, f"{SEGMENTS}/curves-{seg_id}.parquet",
                                   _meta(unify(curve_rows, CURVE_SCHEMA), "curves"))
        storefs.write_table_atomic(store.loc, f"{SEGMENTS}/trials-{seg_id}.parquet", _meta(trials, "trials"))
        report.segments_written += 1
        report.trials += trials.num_rows
    _finish(store, manifest, report)
    storefs.delete(store.loc, store.loc.join(SEGMENTS, f"compact-{seg_id}.json"))
