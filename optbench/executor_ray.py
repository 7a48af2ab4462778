"""The Ray executor: every trial is a Ray task that asks for its resources, runs `run_trial` in a worker and
writes the trial's own files to the shared results root; the driver only schedules, claims and counts.

Workers rebuild the registry from entry points in their own process (plugin objects are not shipped
from the driver), so every node needs optbench and the plugins installed, and the results root must be a
path every node sees (a shared file system). Without an address a local Ray is started (and stopped);
with one (`--address auto` or `ray://host:10001`), the trials go to that cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from optbench.claims import Claims, claim_ttl
from optbench.errors import OptbenchError
from optbench.executor import GridOutcome, claim_for_run, grid_progress, pending, report_finished, write_result
from optbench.registry import Registry, get_registry
from optbench.runner import RunSettings, TrialResult, base_row, resolve_device, run_trial
from optbench.store import Store
from optbench.trial import Trial

#: extra seconds past --trial-timeout before a worker's watchdog ends a trial that even SIGALRM cannot stop
WATCHDOG_GRACE_S = 30.0

#: how long `ray.init` may take to reach a cluster before the run stops with one sentence (--ray-timeout)
CONNECT_TIMEOUT_S = 30.0

def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptbenchError(
            "--executor ray needs the `ray` package, which is not installed.",
            "Install it with `pip install 'optbench[ray]'`, or use --executor local.",
        ) from None
    return ray


def _worker_registry() -> Registry:
    """A Ray worker process loads the installed plugins once, like any other optbench process."""
    return get_registry()


def run_in_worker(trial: Trial, settings: RunSettings, root: str) -> dict[str, Any]:
    """The body of one Ray task. Returns a small summary; user errors come back as data, not exceptions
    (OptbenchError carries a hint that pickling would drop)."""
    registry = _worker_registry()
    store = Store(root)
    finished = threading.Lock()
    watchdog = _start_watchdog(trial, registry, settings, store, finished)
    try:
        result = run_trial(trial, registry, settings)
        import torch

        result.row["torch_threads"] = torch.get_num_threads()  # Ray tasks run side by side: the count is Ray's
    except OptbenchError as exc:
        return {"trial_id": trial.trial_id, "user_error": [exc.message, exc.hint]}
    finally:
        if watchdog is not None:
            watchdog.cancel()
    with finished:
        try:
            observed = write_result(store, registry, result)
        except OptbenchError as exc:
            return {"trial_id": trial.trial_id, "user_error": [exc.message, exc.hint]}
    return {"trial_id": trial.trial_id, "status": result.row["status"], "error": result.row.get("error"),
            "observer_problems": observed}


def _start_watchdog(trial: Trial, registry: Registry, settings: RunSettings, store: Store,
                    finished: threading.Lock) -> threading.Timer | None:
    """Backstop for a step stuck in native code (where SIGALRM waits for it to return): record `timeout`
    and end the worker process; the driver then finds the row on disk."""
    limit = settings.trial_timeout_s
    if not limit:
        return None

    def fire() -> None:
        if not finished.acquire(blocking=False):
            return  # the trial is being written right now
        row = base_row(trial, registry, settings, resolve_device(settings.device))
        row.update(status="timeout", error=f"trial exceeded --trial-timeout {limit:g} s and did not stop; "
                                           "its worker was ended")
        try:
            store.write(row, [])
        finally:
            os._exit(3)

    timer = threading.Timer(limit + WATCHDOG_GRACE_S, fire)
    timer.daemon = True
    timer.start()
    return timer


def wants_gpu(registry: Registry, trial: Trial) -> bool:
    preset = registry.task(trial.task).spec.presets.get(trial.preset)
    return bool(getattr(preset, "wants_gpu", False))


def run_ray(
    trials: Sequence[Trial],
    store: Store,
    registry: Registry,
    settings: RunSettings,
    force: bool = False,
    console: Console | None = None,
    address: str | None = None,
    gpus_per_trial: float = 0.0,
    cpus_per_trial: float = 1.0,
    num_cpus: int | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    claim_ttl_s: float | None = None,
) -> GridOutcome:
    """Run the grid as Ray tasks. Uses the Ray the caller already initialised, else connects to `address`,
    else starts a local one (with `num_cpus`) and shuts it down at the end."""
    ray = import_ray()
    console = console or Console(stderr=True)
    store.prepare()
    todo, done = pending(trials, store, force, console)
    outcome = GridOutcome(skipped=[t.trial_id for t in done])
    if done:
        console.print(f"[dim]resuming: {len(done)} of {len(trials)} trials already have results[/dim]")
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=num_cpus, include_dashboard=False)
        connect(ray, address, kwargs, connect_timeout_s)
        started_here = True
    task_fn = ray.remote(run_in_worker)
    claims = Claims(store.claims_root, ttl_s=claim_ttl(settings.trial_timeout_s, claim_ttl_s))
    claims.sweep()
    by_ref: dict[Any, Trial] = {}
    try:
        _check_fits(ray, registry, todo, gpus_per_trial, cpus_per_trial)
        with grid_progress(console) as progress:
            grid = progress.add_task("grid", total=len(todo))
            for trial in todo:
                if not claim_for_run(trial, claims, store, force, outcome):
                    progress.advance(grid)
                    continue
                gpus = gpus_per_trial if gpus_per_trial > 0 and wants_gpu(registry, trial) else 0
                ref = task_fn.options(num_cpus=cpus_per_trial, num_gpus=gpus, max_retries=0).remote(
                    trial, settings, store.address)
                by_ref[ref] = trial
            while by_ref:
                ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=1.0)
                for ref in ready:
                    trial = by_ref.pop(ref)
                    summary = _collect(ray, ref, trial, store, registry, settings)
                    claims.release(trial.trial_id)
                    if "user_error" in summary:
                        raise OptbenchError(*summary["user_error"])
                    outcome.observer_problems.extend(summary.get("observer_problems", ()))
                    report_finished(progress, grid, outcome, trial, summary["status"], summary.get("error"))
                claims.renew()
    finally:
        for ref in by_ref:  # Ctrl-C or a user error: stop what is still queued or running
            with contextlib.suppress(Exception):  # best effort on the way out
                ray.cancel(ref, force=True)
        claims.release_all()
        if started_here:
            ray.shutdown()
    return outcome


class RayUnreachable(OptbenchError):
    """Ray is still trying to connect in a thread that cannot be stopped: the CLI exits without waiting."""

    exit_now = True


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `host:port` or `ray://host:port` address; None for `auto` and the like."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect(ray: Any, address: str | None, kwargs: dict[str, Any], timeout_s: float) -> None:
    """`ray.init(**kwargs)` within `timeout_s` seconds, or one sentence. Ray itself retries an unreachable
    address for many minutes, so a closed port is found with a plain TCP connection first, and `ray.init`
    runs in a thread the driver stops waiting for at the deadline."""
    where = f"the Ray cluster at {address!r}" if address else "a local Ray"
    hint = (f"Check --address (e.g. `--address auto` on a cluster node) and that the cluster is up, or allow "
            f"longer with --ray-timeout (now {timeout_s:g} s).")
    deadline = time.monotonic() + timeout_s
    target = _host_port(address) if address else None
    if target is not None:
        try:
            with socket.create_connection(target, timeout=timeout_s):
                pass
        except OSError as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
            raise OptbenchError(f"could not reach {where}: connecting to {target[0]}:{target[1]} {why}.",
                                hint) from None
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=init, name="optbench-ray-init", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise RayUnreachable(f"could not reach {where} within {timeout_s:g} s.", hint)
    if failure:
        exc = failure[0]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptbenchError(f"could not start or reach {where}: {first}", hint) from None


def _check_fits(ray: Any, registry: Registry, todo: Sequence[Trial], gpus: float, cpus: float) -> None:
    """A task asking for more than any cluster has would wait forever: say so before submitting."""
    have = ray.cluster_resources()
    if todo and cpus > have.get("CPU", 0):
        raise OptbenchError(f"--cpus-per-trial {cpus:g} is more than the {have.get('CPU', 0):g} CPUs Ray has.",
                            "Lower --cpus-per-trial.")
    if gpus > 0 and any(wants_gpu(registry, t) for t in todo) and gpus > have.get("GPU", 0):
        raise OptbenchError(f"--gpus-per-trial {gpus:g} is more than the {have.get('GPU', 0):g} GPUs Ray has.",
                            "Run on a cluster with GPUs, or pass --gpus-per-trial 0 to run these trials on CPUs.")


def _collect(ray: Any, ref: Any, trial: Trial, store: Store, registry: Registry,
             settings: RunSettings) -> dict[str, Any]:
    """A task's summary; a worker that died (watchdog, OOM killer, lost node) still ends as a row."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        if store.has(trial.trial_id):  # the watchdog wrote `timeout` before ending the worker
            row = pq.read_table(str(store.trial_path(trial.trial_id)), filesystem=store.loc.fs).to_pylist()[0]
            return {"trial_id": trial.trial_id, "status": row["status"], "error": row.get("error")}
        row = base_row(trial, registry, settings, resolve_device(settings.device))
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        row.update(status="failed", error=f"Ray task failed ({type(exc).__name__}): {reason}")
        write_result(store, registry, TrialResult(row, []), notify=False)
        return {"trial_id": trial.trial_id, "status": "failed", "error": row["error"]}
