"""What running a trial in a worker process costs over running it in the driver (not a timed test).

The same tiny trial (SGD on a 10-dimensional quadratic, 30 steps, no metrics: almost nothing but harness)
runs in rounds, interleaved in one process: once in this process (`run_trial` then the store write, as the
old local executor did) and once through `run_local` with one persistent worker (submit, progress messages,
the worker's write, the driver's claim and tally). The difference of the medians is the per-trial price of
crash isolation; the start of the pool (a fork) is paid once per grid and reported on its own, as is the
cost of replacing a worker after a crash.

Run: OMP_NUM_THREADS=1 python benchmarks/worker_overhead.py [--rounds 20] [--trials 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import faultkit  # noqa: E402 - the tiny task lives with the test plugins

from optbench.executor import LocalOptions, run_local, write_result  # noqa: E402
from optbench.planner import plan  # noqa: E402
from optbench.registry import load_registry  # noqa: E402
from optbench.runner import RunSettings, run_trial  # noqa: E402
from optbench.store import Store  # noqa: E402
from optbench.worker import WorkerPool, _preload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=10, help="trials per grid in each round")
    args = parser.parse_args()
    registry = load_registry([("faultkit", faultkit)], entry_points=False)
    settings = RunSettings(metrics=[])
    quiet = Console(file=open("/dev/null", "w"), stderr=False)  # noqa: SIM115 - lives as long as the run
    _preload()
    here, pooled, seed = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):  # round 0 warms both paths up and is not counted
            trials = plan(registry, ["slow-sgd"], ["tiny-quad"], "smoke", range(seed, seed + 2 * args.trials))
            seed += 2 * args.trials
            a, b = trials[: args.trials], trials[args.trials:]
            store = Store(Path(tmp) / f"r{r}")
            store.prepare()
            t0 = time.perf_counter()
            for t in a:
                write_result(store, registry, run_trial(t, registry, settings))
            t1 = time.perf_counter()
            run_local(b, store, registry, settings, console=quiet, options=LocalOptions(workers=1, threads=1))
            t2 = time.perf_counter()
            if r:
                here.append((t1 - t0) / args.trials)
                pooled.append((t2 - t1) / args.trials)
        starts = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            pool = WorkerPool(1, registry, threads=1)
            worker = pool.workers[0]
            pool.replace(worker)  # kill and fork again: what a crash costs besides the lost trial
            starts.append((time.perf_counter() - t0) / 2)
            pool.close()
    med_here, med_pool = statistics.median(here), statistics.median(pooled)
    print(f"per trial, in the driver:      {1e3 * med_here:8.1f} ms (median of {args.rounds} rounds of {args.trials})")
    print(f"per trial, in a worker:        {1e3 * med_pool:8.1f} ms (includes the pool's start, once per grid)")
    print(f"worker overhead per trial:     {1e3 * (med_pool - med_here):8.1f} ms  (ratio {med_pool / med_here:.2f})")
    print(f"start or replace one worker:   {1e3 * statistics.median(starts):8.1f} ms (median)")


if __name__ == "__main__":
    main()
