"""A driver that already ran multi-threaded torch ops must still start workers that run multi-threaded ops.

GNU OpenMP has no fork handler: a worker forked beside the driver's live OpenMP thread pool hangs in its first
parallel op (optbench/forksafe.py). Each test runs a driver in a fresh subprocess (the pytest process's own
OpenMP state is unknown) *without* OMP_NUM_THREADS, makes it run a 2-thread parallel op, then runs a 2-trial
grid whose optimizer runs a parallel op every step on a worker with 2 torch threads. Without the fix the
first trial never finishes and the subprocess times out; no trial timeout is set, so a hang cannot turn into
a recorded failure either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

DRIVER = r"""
import json, sys
import torch
import faultkit
import optbench.worker as worker
from optbench.executor import LocalOptions, run_local
from optbench.planner import plan
from optbench.registry import load_registry
from optbench.runner import RunSettings
from optbench.store import Store

if sys.argv[2] == "cannot-release":  # an OpenMP runtime whose pool cannot be freed before forking
    worker.release_openmp = lambda: False
elif sys.argv[2] == "unsafe-fork":  # what the driver did before: fork beside the live pool (checks the test)
    worker.release_openmp = lambda: True
methods = []
use = worker.WorkerPool._use
worker.WorkerPool._use = lambda self, method: (methods.append(method), use(self, method))[1]

torch.set_num_threads(2)
a = torch.randn(512, 512)
(a @ a).sum()
(torch.ones(1 << 21) * 2 + 1).sum()  # the driver's OpenMP pool now has a second thread

registry = load_registry(extra_plugins=[("faultkit", faultkit)], entry_points=False)
trials = plan(registry, ["parallel-sgd"], ["tiny-quad"], "smoke", range(2))
outcome = run_local(trials, Store(sys.argv[1]), registry, RunSettings(metrics=[]),
                    options=LocalOptions(workers=1, threads=2))
(torch.ones(1 << 21) * 2 + 1).sum()  # and the driver's own ops still run afterwards
rows = Store(sys.argv[1]).read().trials
print(json.dumps({"statuses": dict(outcome.statuses), "threads": sorted(rows["torch_threads"].tolist()),
                  "methods": methods}))
"""


def _drive(tmp_path: Path, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "res"), mode], env=env,
                              capture_output=True, text=True, timeout=float(os.environ.get("FORK_TEST_TIMEOUT", 900)))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the grid hung (a worker stuck in its first parallel op?): {exc.stderr!s:.2000}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_workers_forked_after_multithreaded_torch_ops_do_not_hang(tmp_path):
    out = _drive(tmp_path, "release")
    assert out == {"statuses": {"ok": 2}, "threads": [2, 2], "methods": ["fork"]}


@pytest.mark.slow
def test_where_the_openmp_pool_cannot_be_freed_workers_come_from_a_fork_server(tmp_path):
    out = _drive(tmp_path, "cannot-release")
    assert out == {"statuses": {"ok": 2}, "threads": [2, 2], "methods": ["forkserver"]}
