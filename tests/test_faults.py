"""Faults that must lose nothing: plugins that raise, hang, exit or segfault, kill -9, Ctrl-C, SIGTERM, an
unwritable or full results dir, expired claims and two drivers on one results root. Every fault happens at a
known point (a plugin that crashes at step k, a trial paused mid-way by a file the test controls), never after
a random delay, so the tests mean the same on an idle and on a fully loaded machine. Subprocess tests run the
real `optbench` command with the faultkit plugin installed through an entry point on PYTHONPATH, as a third
party's package would be."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import faultkit
import pyarrow.parquet as pq
import pytest

from optbench.claims import Claims, claim_ttl
from optbench.errors import OptbenchError
from optbench.executor import LocalOptions, run_local
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


def _grid_cmd(results: Path, seeds: int, *extra: str) -> list[str]:
    return [*CLI, "run", "-o", "pause-sgd", "-t", "tiny-quad", "--seeds", str(seeds), "--no-metrics",
            "--results", str(results), *extra]


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


# --- in-process: plugins that raise, hang or diverge --------------------------------------------------
def _run(registry, optimizers, tmp_path, timeout=None, seeds=1, hp=(), **options):
    trials = plan(registry, optimizers, ["tiny-quad"], "smoke", range(seeds), hp)
    store = Store(tmp_path / "res")
    settings = RunSettings(metrics=[], trial_timeout_s=timeout)
    outcome = run_local(trials, store, registry, settings, options=LocalOptions(**options))
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
    """Two hanging trials: the second runs after the first timed out (a grid of them, so that no trial has to
    beat the clock: the limit decides nothing but the hangs, however loaded the machine)."""
    handler = signal.getsignal(signal.SIGALRM)
    outcome, rows = _run(fault_registry, ["hang-step"], tmp_path, timeout=1.0, seeds=2)
    assert outcome.statuses == {"timeout": 2}
    assert rows["error"].str.startswith("trial exceeded --trial-timeout 1 s").all()
    assert (rows["wall_time_s"] < 3600).all()  # the hour-long sleep was cut, not waited out
    assert signal.getsignal(signal.SIGALRM) is handler  # whatever handler was there is put back


def test_exit_segfault_and_oom_kill_end_one_trial_each_as_crashed(fault_registry, tmp_path):
    outcome, rows = _run(fault_registry, ["exit-step", "segv-step", "sigkill-step", "slow-sgd"], tmp_path, seeds=2,
                         hp=["at=12"], workers=2)
    assert outcome.statuses == {"crashed": 6, "ok": 2}  # the grid went on past every crash, on both workers
    for name, how in [("exit-step", "exit code 3"), ("segv-step", "signal 11 (SIGSEGV)"),
                      ("sigkill-step", "signal 9 (SIGKILL)")]:
        for error in rows.loc[[name], "error"]:
            assert error.startswith(f"the worker process died with {how}"), error
            assert "at step 10 of 30" in error  # the last step it reported: the crash came in step 12
            assert f"optimizer {name!r} from plugin 'faultkit' (local)" in error
    assert (rows.loc[["exit-step"], "steps"] == 10).all()
    crashed = rows[rows["status"] == "crashed"]
    assert (crashed["parallel_trials"] == 2).all() and (crashed["torch_threads"] >= 1).all()
    assert crashed["device"].str.startswith("cpu").all()  # as the worker reported it
    ok = rows.loc[["slow-sgd"]]
    assert (ok["status"] == "ok").all() and (ok["parallel_trials"] == 2).all() and (ok["torch_threads"] >= 1).all()
    assert list((tmp_path / "res" / "claims").iterdir()) == []


def test_a_step_that_the_deadline_cannot_interrupt_is_killed(fault_registry, tmp_path):
    """Both trials block SIGALRM: the driver kills each worker past the limit, and the second trial runs on
    the worker that replaced the first."""
    outcome, rows = _run(fault_registry, ["deaf-hang"], tmp_path, timeout=1.0, seeds=2, kill_grace_s=0.5)
    assert outcome.statuses == {"timeout": 2}
    for error in rows["error"]:
        assert error.startswith("trial exceeded --trial-timeout 1 s and did not stop within 0.5 s more"), error
        assert "its worker was killed" in error and "'deaf-hang' from plugin 'faultkit'" in error


def test_a_trial_marked_alone_runs_with_nothing_beside_it(fault_registry, tmp_path):
    """The scheduler, driven step by step: `b` must wait for `a` to finish, and `c` for `b`."""
    from optbench.executor import GridOutcome, _fill
    from optbench.worker import Worker

    class FakePool:
        size = 2

        def __init__(self):
            self.workers = [Worker(None, None), Worker(None, None)]

        def idle(self):
            return [w for w in self.workers if w.trial is None]

        def busy(self):
            return [w for w in self.workers if w.trial is not None]

        def submit(self, worker, trial, settings, root, alone=False):
            worker.trial, worker.alone = trial, alone

    class Bar:
        def add_task(self, *a, **k):
            return 0

        def advance(self, *a):
            pass

    trials = plan(fault_registry, ["slow-sgd", "pause-sgd"], ["tiny-quad"], "smoke", range(2))
    a, b, c, d = trials  # slow-sgd seeds 0, 1; pause-sgd seeds 0, 1
    pool, queue, store = FakePool(), [a, c, b, d], Store(tmp_path / "res")
    claims = Claims(store.root)
    options = LocalOptions(workers=2, alone=lambda t: t.optimizer == "pause-sgd")

    def fill():
        _fill(pool, queue, claims, store, False, GridOutcome(), RunSettings(), "", options, Bar(), 0, {})
        return sorted((w.trial.optimizer, w.trial.seed, w.alone) for w in pool.busy())

    def finish(trial):
        worker = next(w for w in pool.workers if w.trial == trial)
        worker.trial = None

    assert fill() == [("slow-sgd", 0, False)]  # c (alone) waits for a: nothing may run beside it
    finish(a)
    assert fill() == [("pause-sgd", 0, True)]  # c runs alone: b waits although a worker is idle
    finish(c)
    assert fill() == [("slow-sgd", 1, False)]  # d (alone) waits for b
    finish(b)
    assert fill() == [("pause-sgd", 1, True)]
    claims.release_all()


def test_worker_processes_give_the_rows_of_an_in_process_run(tmp_path):
    """Same seed, same numbers: a trial in a worker process (two at once) gives exactly the row `run_trial`
    gives in this process, for real optimizers (AdamW, Lion) on a seeded random quadratic."""
    import torch
    from optbench.plugins import lion, torch_optim

    from optbench.runner import run_trial

    registry = load_registry([("torch", torch_optim), ("lion", lion), ("faultkit", faultkit)], entry_points=False)
    trials = plan(registry, ["adamw", "lion"], ["tiny-quad"], "smoke", range(2))
    settings = RunSettings(metrics=[])
    here = {t.trial_id: run_trial(t, registry, settings).row for t in trials}
    run_local(trials, Store(tmp_path), registry, settings,
              options=LocalOptions(workers=2, threads=torch.get_num_threads()))
    rows = Store(tmp_path).read().trials.set_index("trial_id")
    same = ["status", "steps", "final_train_loss", "final_test_loss", "optimizer_state_mb", "forward_passes",
            "backward_passes"]
    assert len({row["final_test_loss"] for row in here.values()}) == 4  # four different trials, not one repeated
    for trial_id, row in here.items():
        assert row["status"] == "ok"
        for col in same:
            assert rows.loc[trial_id, col] == row[col], (col, trial_id)


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
    assert list((tmp_path / "res").glob(".write-probe-*")) == []  # the probe that hit the full disk is gone

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


def test_claims_carry_host_and_start_and_expire_unless_renewed(tmp_path):
    now = [1000.0]
    a = Claims(tmp_path, ttl_s=60, clock=lambda: now[0])
    b = Claims(tmp_path, ttl_s=60, clock=lambda: now[0])
    b.host = "elsewhere"  # another machine: its pid means nothing here, only the expiry counts
    assert b.acquire("t1")
    info = b.owner("t1")
    assert info["host"] == "elsewhere" and info["started"] == 1000.0 and info["expires"] == 1060.0
    now[0] = 1059.0
    assert not a.acquire("t1")  # not expired yet
    now[0] = 1030.0
    assert b.renew() == 1  # a third of the lifetime passed: pushed back, start time kept
    assert b.owner("t1")["expires"] == 1090.0 and b.owner("t1")["started"] == 1000.0
    now[0] = 1080.0
    assert not a.acquire("t1")  # 20 s past the first expiry: still held thanks to the renewal
    now[0] = 1091.0  # b's host went silent: the claim expires and is taken over
    assert a.acquire("t1")
    assert a.owner("t1")["host"] == a.host
    assert b.renew() == 0  # b does not write over a claim that is no longer its own
    a.release_all()


def test_claim_lifetime_follows_the_trial_timeout():
    assert claim_ttl(None) == 15 * 60  # no limit on a trial: the default (renewed while the driver lives)
    assert claim_ttl(600.0) == 600.0 + 120.0  # a trial may run its time-out, plus slack to stop and write
    assert claim_ttl(600.0, claim_ttl_s=30.0) == 30.0  # --claim-ttl wins


# --- subprocesses: kill -9, Ctrl-C, SIGTERM, two drivers -----------------------------------------------
# One grid of `pause-sgd` trials (one worker: seeds run in order) goes through every process-level fault in
# turn; before each, the test names the seed whose trial pauses at step 15, waits for that pause, so exactly
# `seed` trial files exist, and only then signals the driver. (Each `optbench` start costs seconds of imports.)
def _like_a_terminal() -> None:
    """In the driver's process before exec: SIGINT does what Ctrl-C does in a terminal. A test suite started
    in the background by a non-interactive shell (`bash .ci/run &`, nohup) inherits SIGINT ignored, and so
    would the driver: Python then installs no KeyboardInterrupt handler and the Ctrl-C round waits forever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pause_and_signal(results: Path, env: dict, seed: int, sig: int, seeds: int) -> subprocess.Popen:
    pause = Path(env["FAULTKIT_PAUSE"])
    pause.write_text(str(seed))
    proc = subprocess.Popen(_grid_cmd(results, seeds), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_like_a_terminal)
    end = time.monotonic() + 900  # a bound, not a race: starting `optbench` on a loaded machine takes minutes
    markers: list[Path] = []
    while not markers:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the trial never reached its pause"
        time.sleep(0.02)
        markers = list(pause.parent.glob(pause.name + ".*"))
    worker = int(markers[0].read_text())
    assert len(_files(results, "trials")) == seed  # the known point: seeds 0..seed-1 done, `seed` mid-way
    if sig == signal.SIGKILL:  # the driver alone: its worker must not outlive it
        proc.send_signal(sig)
    else:  # like Ctrl-C in a terminal, Slurm or a container stop: the whole process group gets the signal
        os.killpg(proc.pid, sig)
    proc.wait(timeout=600)  # a bound on a loaded machine, not a race
    pause.unlink()
    markers[0].unlink()
    end = time.monotonic() + 60
    while _pid_alive(worker):  # the paused worker ends with its driver (and never writes its trial)
        assert time.monotonic() < end, "a worker outlived its driver"
        time.sleep(0.02)
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie waiting for its reaper is gone for our purposes
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals process groups and reads /proc")
def test_kill_9_ctrl_c_sigterm_and_two_drivers_lose_nothing(tmp_path, plugin_env):
    results = tmp_path / "res"
    seeds = 8
    env = dict(plugin_env, FAULTKIT_PAUSE=str(tmp_path / "pause"))
    kept: dict[str, str] = {}  # trial_id -> run_id of every trial file seen so far: never rewritten

    def check_round(expected: int) -> None:
        assert _assert_all_complete(results) == expected
        rows = Store(results).read().trials
        now = dict(zip(rows["trial_id"], rows["run_id"], strict=True))
        assert all(now[t] == r for t, r in kept.items()), "a finished trial was run again"
        kept.update(now)
        assert [p for p in results.rglob("*") if p.name.startswith(".")] == []  # no temp or probe file

    _pause_and_signal(results, env, 2, signal.SIGKILL, seeds)
    check_round(2)
    assert len(list((results / "claims").iterdir())) == 1  # kill -9 leaves its claim; the next driver takes it

    for seed, sig, code, word in [(4, signal.SIGINT, 130, "interrupted"), (6, signal.SIGTERM, 143, "terminated")]:
        proc = _pause_and_signal(results, env, seed, sig, seeds)
        err = proc.stderr.read()
        assert proc.returncode == code, err
        assert err.count(word) == 1 and "finished trials are saved" in err and "Traceback" not in err, err
        check_round(seed)
        assert list((results / "claims").iterdir()) == []  # the running trial's claim was released

    procs = [subprocess.Popen(_grid_cmd(results, seeds), env=plugin_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    ran = [int(re.search(r"ran (\d+) trial", e).group(1)) for e in errs]
    assert sum(ran) == seeds - len(kept), errs  # the rest ran exactly once across the two drivers
    rows = Store(results).read().trials
    assert _assert_all_complete(results) == seeds and rows["trial_id"].is_unique
    assert sorted(rows["seed"]) == list(range(seeds))
    assert all(dict(zip(rows["trial_id"], rows["run_id"], strict=True))[t] == r for t, r in kept.items())
    assert list((results / "claims").iterdir()) == []


def test_default_torch_threads_share_the_cores_and_respect_omp_num_threads(monkeypatch):
    from optbench.worker import default_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [default_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert [default_threads(n) for n in (1, 8)] == [2, 1]


def test_a_worker_that_died_while_idle_is_replaced_when_it_gets_a_trial(fault_registry, tmp_path):
    from optbench.worker import WorkerPool

    pool = WorkerPool(1, fault_registry, threads=1)
    try:
        idle = pool.workers[0]
        idle.process.kill()
        idle.process.join(30)
        trial = plan(fault_registry, ["slow-sgd"], ["tiny-quad"], "smoke", range(1))[0]
        Store(tmp_path).prepare()
        used = pool.submit(idle, trial, RunSettings(metrics=[]), str(tmp_path))
        assert used is not idle and pool.workers == [used]
        events = []
        while not any(e.kind == "done" for e in events):
            events += pool.wait(timeout=1.0)
            assert not any(e.kind == "died" for e in events)
        assert next(e for e in events if e.kind == "done").payload["status"] == "ok"
    finally:
        pool.close()


@pytest.mark.slow
def test_spawned_workers_rebuild_the_registry_from_its_recipe(fault_registry, tmp_path):
    """Where fork cannot be used (CUDA already initialised in the driver), workers are spawned: in-process
    plugin modules travel by name, and a crash is still one `crashed` trial."""
    _, rows = _run(fault_registry, ["exit-step", "slow-sgd"], tmp_path, start_method="spawn")
    assert rows.loc["exit-step", "status"] == "crashed" and rows.loc["slow-sgd", "status"] == "ok"
    assert "exit code 3" in rows.loc["exit-step", "error"]

    class Local:  # not importable by a spawned process: refused in one sentence before anything runs
        pass

    registry = load_registry([("faultkit", faultkit), ("local-object", Local())], entry_points=False)
    with pytest.raises(OptbenchError, match="plugin 'local-object' was registered in-process and cannot be sent"):
        _run(registry, ["slow-sgd"], tmp_path / "other", start_method="spawn")
