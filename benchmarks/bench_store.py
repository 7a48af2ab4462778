"""How the store scales: a synthetic results root of N trials, timed through the real commands.

The rows are synthetic (dataset `synthetic-bench`, `synthetic` true) with every column of the trials schema
filled the way real runs fill them: 200 optimizers x 20 tasks x 5 configurations x 5 seeds = 100k trials,
20 curve points each. Most trials are written as compacted segments (what `optbench compact` leaves); the
last `--loose` trials go through `Store.write`, one crash-safe file pair each, as fresh runs would.

Printed, each next to its goal (issue 16.5): `optbench results --json`, `optbench gate` (the root against
itself), `optbench leaderboard build`, a resumed run's skip check (`Store.done_ids` over every trial id, a fresh
Store) and the peak resident memory of each command (its own process, via wait4). Then `optbench compact`
folds the loose files and the skip check is timed again.

Run:  OMP_NUM_THREADS=1 python -m benchmarks.bench_store [--trials 100000] [--loose 1000] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from optbench.compact import _meta
from optbench.store import CURVE_SCHEMA, SEGMENTS, TRIAL_SCHEMA, Store, storefs

GOALS = {"results": 5.0, "gate": 10.0, "leaderboard build": 60.0, "skip check": 2.0}
MEMORY_GOAL_MB = 2048


def synthetic_trials(n: int, seed: int = 0) -> pa.Table:
    """n rows over 200 optimizers x 20 tasks x 5 configurations x 5 seeds (cycled when n is larger)."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    seed_ = i % 5
    config = (i // 5) % 5
    task = (i // 25) % 20
    opt = (i // 500) % 200
    optimizers = np.array(["adamw"] + [f"opt-{k:03d}" for k in range(1, 200)])
    tasks = np.array([f"task-{k:02d}" for k in range(20)])
    lrs = np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    quality = 0.5 + 0.1 * np.sin(opt) + 0.05 * config + 0.02 * rng.standard_normal(n)
    status = rng.choice(["ok", "diverged", "failed"], size=n, p=[0.95, 0.03, 0.02])
    ok = status == "ok"
    step_ms = 2.0 + 0.01 * opt + 0.1 * rng.standard_normal(n).clip(-3, 3)
    opt_ms = 0.5 + 0.005 * opt + 0.02 * rng.standard_normal(n).clip(-3, 3)
    reached = ok & (quality < 0.55)
    cols = {
        "trial_id": [f"{k:016x}" for k in i], "run_id": [f"bench-seed{s}" for s in seed_],
        "task": tasks[task], "preset": np.full(n, "smoke"), "dataset": np.full(n, "synthetic-bench"),
        "synthetic": np.ones(n, bool), "optimizer": optimizers[opt], "plugin": np.full(n, "bench"),
        "plugin_version": np.full(n, "0"), "task_plugin": np.full(n, "bench"),
        "hparams": [json.dumps({"lr": float(lrs[c])}) for c in config], "options": np.full(n, "{}"),
        "config_id": [f"c{c}o{o}" for c, o in zip(config, opt, strict=True)],
        "config": [f"{optimizers[o]}[lr={lrs[c]:g}]" for c, o in zip(config, opt, strict=True)],
        "seed": seed_, "status": status, "error": np.where(status == "failed", "RuntimeError: synthetic", None),
        "diverged_step": np.where(status == "diverged", 17, None), "steps": np.full(n, 200), "budget": np.full(n, 200),
        "wall_time_s": 10 + rng.random(n), "train_time_s": 8 + rng.random(n), "step_time_ms": step_ms,
        "optimizer_step_ms": opt_ms, "steps_per_s": 1000 / step_ms, "examples_per_s": 128000 / step_ms,
        "forward_passes": np.full(n, 200.0), "backward_passes": np.full(n, 200.0),
        "time_to_target_s": np.where(reached, 5 + rng.random(n), np.nan),
        "steps_to_target": np.where(reached, 100, None), "target_name": np.full(n, "test_loss"),
        "target_value": np.full(n, 0.55), "final_train_loss": quality - 0.05, "final_test_loss": quality,
        "final_test_accuracy": 1 - quality / 2, "sharpness": 10 + rng.random(n), "hessian_trace": 100 + rng.random(n),
        "entropy_gap": rng.random(n), "entropy_gap_alpha2": rng.random(n), "metrics": np.full(n, "{}"),
        "metric_errors": np.full(n, "{}"), "hvp_calls": np.full(n, 40), "peak_memory_mb": np.full(n, 100.0),
        "optimizer_state_mb": np.full(n, 1.0), "device": np.full(n, "cpu"), "torch_version": np.full(n, "2.x"),
        "optbench_version": np.full(n, "bench"), "git_commit": np.full(n, "0" * 40), "hostname": np.full(n, "bench"),
        "started_at": np.full(n, "2026-01-01T00:00:00+00:00"),
    }
    for f in TRIAL_SCHEMA:
        if f.name not in cols:  # columns added to the schema later: filled with nulls, as old rows are
            cols[f.name] = pa.nulls(n, f.type)
    arrays = [pa.array(cols[f.name], f.type) if not isinstance(cols[f.name], pa.Array) else cols[f.name]
              for f in TRIAL_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=TRIAL_SCHEMA)


def synthetic_curves(trials: pa.Table, points: int = 10) -> pa.Table:
    n = trials.num_rows
    ids = np.repeat(trials.column("trial_id").to_numpy(zero_copy_only=False), points * 2)
    step = np.tile(np.repeat(np.arange(1, points + 1) * 20, 2), n)
    name = np.tile(["loss", "loss"], n * points)
    split = np.tile(["train", "test"], n * points)
    value = 1.0 / np.sqrt(step) + 0.01 * np.random.default_rng(1).random(n * points * 2)
    return pa.table({"trial_id": ids, "step": step, "wall_time_s": step * 0.002, "split": split, "name": name,
                     "value": value}, schema=CURVE_SCHEMA)


def build_root(root: Path, n: int, loose: int, segment_rows: int) -> list[str]:
    trials = synthetic_trials(n)
    store = Store(root)
    store.prepare()
    storefs.makedirs(store.loc, SEGMENTS)
    compacted = trials.slice(0, n - loose)
    for k, start in enumerate(range(0, compacted.num_rows, segment_rows)):
        part = compacted.slice(start, segment_rows)
        seg = f"{k:020d}-bench"
        curves = _meta(synthetic_curves(part), "curves")
        storefs.write_table_atomic(store.loc, f"{SEGMENTS}/curves-{seg}.parquet", curves)
        storefs.write_table_atomic(store.loc, f"{SEGMENTS}/trials-{seg}.parquet", _meta(part, "trials"))
    fresh = trials.slice(n - loose)
    curves = synthetic_curves(fresh).to_pandas()
    by_trial = dict(tuple(curves.groupby("trial_id")))
    for row in fresh.to_pylist():
        store.write(row, by_trial[row["trial_id"]].to_dict("records"))
    return trials.column("trial_id").to_pylist()


def timed(cmd: list[str]) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS (MB) of the command's own process, exit code, CPU seconds (user + system, all
    its threads): on a shared machine the CPU time says what the command costs, the wall time what the load
    let it have."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    if proc.returncode not in (0, 1):
        print(err[-2000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime


def skip_check(root: Path, ids: list[str]) -> tuple[float, int, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    done = Store(root).done_ids(ids)
    return time.perf_counter() - t0, len(done), time.process_time() - c0


def report(name: str, seconds: float, rss_mb: float | None = None, note: str = "", cpu: float | None = None) -> None:
    goal = GOALS.get(name)
    verdict = "" if goal is None else ("within goal" if seconds <= goal else "OVER goal")
    mem = "" if rss_mb is None else f"  peak RSS {rss_mb:7.0f} MB" + (" (OVER 2 GB)" if rss_mb > MEMORY_GOAL_MB else "")
    goal_text = "" if goal is None else f" (goal ≤ {goal:g} s, {verdict})"
    cpu_text = "" if cpu is None else f"  cpu {cpu:6.2f} s"
    print(f"{name:>18}: {seconds:7.2f} s{goal_text}{cpu_text}{mem}{note}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--loose", type=int, default=1000, help="trials written as per-trial files (not compacted)")
    ap.add_argument("--segment-rows", type=int, default=50_000)
    ap.add_argument("--root", type=Path, default=None, help="keep the generated root here (default: a temp dir)")
    ap.add_argument("--skip", nargs="*", default=[], help="commands to leave out, e.g. 'leaderboard build'")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    root = args.root or tmp / "results"
    cli = [sys.executable, "-m", "optbench.cli"]
    print(f"bench_store: {args.trials} synthetic trials ({args.loose} as per-trial files), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    try:
        t0 = time.perf_counter()
        ids = build_root(root, args.trials, args.loose, args.segment_rows)
        print(f"{'generate':>18}: {time.perf_counter() - t0:7.2f} s (not a goal)", flush=True)
        seconds, n_done, cpu = skip_check(root, ids)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report("skip check", seconds, note=f"  ({n_done} done; this process peaked at {own:.0f} MB incl. generation)",
               cpu=cpu)
        commands = {
            "results": [*cli, "results", "--results", str(root), "--json"],
            "gate": [*cli, "gate", "--baseline", str(root), "--candidate", str(root)],
            "leaderboard build": [*cli, "leaderboard", "build", "--results", str(root), "--out", str(tmp / "site")],
        }
        for name, cmd in commands.items():
            if name in args.skip:
                continue
            seconds, rss, rc, cpu = timed(cmd)
            report(name, seconds, rss, f"  exit {rc}" if rc else "", cpu)
        seconds, rss, rc, cpu = timed([*cli, "compact", "--results", str(root), "--segment-rows",
                                       str(args.segment_rows)])
        report("compact", seconds, rss, f"  ({args.loose} per-trial files; exit {rc})", cpu)
        seconds, n_done, cpu = skip_check(root, ids)
        report("skip check", seconds, note=f"  after compact ({n_done} done)", cpu=cpu)
    finally:
        if args.root is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
