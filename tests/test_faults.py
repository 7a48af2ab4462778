"""Faults that must lose nothing: kill -9, Ctrl-C, hung trials, broken plugins, an unwritable results dir
and two drivers on one results root. Subprocess tests run the real `optbench` command with the faultkit
plugin installed through an entry point on PYTHONPATH, as a third party's package would be."""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import faultkit
import pyarrow.parquet as pq
import pytest

from optbench.claims import Claims
from optbench.errors import OptbenchError
from optbench.executor import run_local
from optbench.planner import plan
from optbench.registry import load_registry
from optbench.runner import RunSettings
from optbench.store import Store

CLI = [sys.executable, "-c", "from optbench.cli import main; main()"]


@pytest.fixture
def fault_registry():
    return load_registry(extra_plugins=[("faultkit", faultkit)], entry_points=False)  # fast: no other plugins


@pytest.fixture
def plugin_env(tmp_path):
    site = faultkit.install(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def _grid_cmd(results: Path, seeds: int, delay: float, *extra: str) -> list[str]:
    return [*CLI, "run", "-o", "slow-sgd", "-t", "tiny-quad", "--seeds", str(seeds), "--hp", f"delay={delay}",
            "--no-metrics", "--results", str(results), *extra]


def _files(results: Path, kind: str) -> list[Path]:
    return sorted((results / kind).glob("*.parquet")) if (results / kind).exists() else []


def _assert_all_complete(results: Path) -> int:
    """Every results file reads whole; nothing else (temp names) is taken for a result. Returns #trials."""
    for kind in ("trials", "curves"):
        for path in _files(results, kind):
            assert not path.name.startswith("."), path
            pq.read_table(path)  # raises on a torn file
    res = Store(results).read()
    assert res.problems == []
    assert len(res.trials) == len(_files(results, "trials"))
    return len(res.trials)


def _wait_for_trials(results: Path, n: int, proc: subprocess.Popen, limit: float = 180.0) -> None:
    end = time.monotonic() + limit
    while len(_files(results, "trials")) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no trial finished in time"
        time.sleep(0.02)


# --- in-process: plugins that raise, hang or diverge --------------------------------------------------
def _run(registry, optimizers, tmp_path, timeout=None, seeds=1):
    trials = plan(registry, optimizers, ["tiny-quad"], "smoke", range(seeds))
    store = Store(tmp_path / "res")
    settings = RunSettings(metrics=[], trial_timeout_s=timeout)
    outcome = run_local(trials, store, registry, settings)
    rows = Store(store.root).read().trials.set_index("optimizer")
    return outcome, rows


def test_broken_plugins_are_blamed_and_the_grid_continues(fault_registry, tmp_path):
    outcome, rows = _run(fault_registry, ["raise-build", "raise-step", "nan-step", "slow-sgd"], tmp_path)
    assert outcome.statuses == {"failed": 2, "diverged": 1, "ok": 1}
    build_err = rows.loc["raise-build", "error"]
    assert "building the optimizer" in build_err and "'faultkit'" in build_err and "raise-build refuses" in build_err
    step_err = rows.loc["raise-step", "error"]
    assert "optimizer step 1" in step_err and "'faultkit'" in step_err and "broke on purpose" in step_err
    assert rows.loc["nan-step", "status"] == "diverged" and "nan" in rows.loc["nan-step", "error"]
    assert rows.loc["nan-step", "diverged_step"] == 2  # NaN written at step 1 shows in step 2's loss
    assert rows.loc["slow-sgd", "status"] == "ok"
    assert rows["plugin"].tolist() == ["local"] * 4  # the distribution is named in every row


def test_a_hung_step_times_out_and_the_grid_continues(fault_registry, tmp_path):
    handler = signal.getsignal(signal.SIGALRM)
    started = time.perf_counter()
    outcome, rows = _run(fault_registry, ["hang-step", "slow-sgd"], tmp_path, timeout=1.0)
    assert time.perf_counter() - started < 60  # the hour-long sleep was cut, not waited out
    assert outcome.statuses == {"timeout": 1, "ok": 1}
    assert rows.loc["hang-step", "status"] == "timeout"
    assert "--trial-timeout 1 s" in rows.loc["hang-step", "error"]
    assert rows.loc["slow-sgd", "status"] == "ok"
    assert signal.getsignal(signal.SIGALRM) is handler  # whatever handler was there is put back


def test_unwritable_results_dir_fails_before_the_grid(fault_registry, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = Store(blocker / "results")
    trials = plan(fault_registry, ["slow-sgd"], ["tiny-quad"], "smoke", range(1))
    with pytest.raises(OptbenchError, match="cannot write results under"):
        run_local(trials, store, fault_registry, RunSettings(metrics=[]))
    assert not blocker.is_dir()


def test_disk_full_is_one_sentence_and_leaves_no_partial_file(fault_registry, tmp_path, monkeypatch):
    store = Store(tmp_path / "res")
    trials = plan(fault_registry, ["slow-sgd"], ["tiny-quad"], "smoke", range(2))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the probe write fails the way a full disk does
    with pytest.raises(OptbenchError, match="No space left on device"):
        run_local(trials, store, fault_registry, RunSettings(metrics=[]))
    assert list((tmp_path / "res").rglob("*.parquet")) == [] and list((tmp_path / "res").rglob("*.tmp")) == []

    monkeypatch.undo()
    monkeypatch.setattr(Store, "prepare", lambda self: None)  # the disk fills up after the probe passed
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OptbenchError, match=r"could not write the results of trial .* No space left"):
        run_local(trials, store, fault_registry, RunSettings(metrics=[]))
    assert list((tmp_path / "res").rglob("*.parquet")) == [] and list((tmp_path / "res").rglob("*.tmp")) == []
    assert list((tmp_path / "res" / "claims").iterdir()) == []


def test_claims_exclude_live_holders_and_recover_dead_ones(tmp_path):
    mine, other = Claims(tmp_path), Claims(tmp_path)
    assert mine.acquire("t1")
    assert not other.acquire("t1")  # same host, live pid (ours): held
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine.path("t2").parent.mkdir(exist_ok=True)
    mine.path("t2").write_text(f'{{"pid": {dead.pid}, "host": "{mine.host}", "time": 0}}')
    assert other.acquire("t2")  # stale: its process is gone (kill -9)
    assert other.owner("t2")["pid"] == os.getpid()
    mine.path("t3").write_text(f'{{"pid": 1, "host": "elsewhere", "time": {time.time()}}}')
    assert not other.acquire("t3")  # another host's fresh claim cannot be checked, so it is trusted
    mine.path("t4").write_text(f'{{"pid": {dead.pid}, "host": "{mine.host}", "time": 0}}')
    assert mine.sweep() == 1  # a dead driver's claim on a trial nobody will run again is cleared
    mine.release_all()
    other.release_all()
    assert sorted(p.name for p in mine.dir.iterdir()) == ["t3.claim"]


# --- subprocesses: kill -9, Ctrl-C, two drivers -------------------------------------------------------
# One grid goes through every process-level fault in turn (each `optbench` start costs seconds of imports):
# kill -9 at a random moment, twice; Ctrl-C; then two drivers started together finish what is left.
def _kill_mid_grid(results: Path, env: dict, sig: int, rng: random.Random, seeds: int) -> subprocess.Popen:
    done = len(_files(results, "trials"))
    proc = subprocess.Popen(_grid_cmd(results, seeds, 0.02), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_trials(results, done + 1, proc)
    time.sleep(rng.uniform(0.0, 0.6))  # a random moment: mid-trial (30 steps x 20 ms), mid-write or between
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc


@pytest.mark.slow
def test_kill_9_ctrl_c_and_two_drivers_lose_nothing(tmp_path, plugin_env):
    results = tmp_path / "res"
    seeds = 10
    rng = random.Random(8)
    kept: dict[str, str] = {}  # trial_id -> run_id of every trial file seen so far: never rewritten

    def check_round() -> None:
        n = _assert_all_complete(results)
        rows = Store(results).read().trials
        now = dict(zip(rows["trial_id"], rows["run_id"], strict=True))
        assert all(now[t] == r for t, r in kept.items()), "a finished trial was run again"
        assert len(now) > len(kept) and n < seeds
        kept.update(now)

    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL):
        proc = _kill_mid_grid(results, plugin_env, sig, rng, seeds)
        check_round()
        if sig == signal.SIGINT:  # Ctrl-C: the running trial is dropped (no file), its claim removed, exit 130
            err = proc.stderr.read()
            assert proc.returncode == 130, err
            assert "interrupted" in err and "Traceback" not in err
            assert list((results / "claims").iterdir()) == []
        assert [p for p in results.rglob("*.parquet") if p.name.startswith(".")] == []

    procs = [subprocess.Popen(_grid_cmd(results, seeds, 0.02), env=plugin_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    ran = [int(re.search(r"ran (\d+) trial", e).group(1)) for e in errs]
    assert sum(ran) == seeds - len(kept), errs  # the rest ran exactly once across the two drivers
    rows = Store(results).read().trials
    assert _assert_all_complete(results) == seeds and rows["trial_id"].is_unique
    assert sorted(rows["seed"]) == list(range(seeds))
    assert all(dict(zip(rows["trial_id"], rows["run_id"], strict=True))[t] == r for t, r in kept.items())
    assert list((results / "claims").iterdir()) == []  # killed drivers' stale claims taken over, all removed
