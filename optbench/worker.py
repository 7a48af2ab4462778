"""Worker processes for the local executor: each trial runs outside the driver, so a plugin that calls
`os._exit`, segfaults in native code or is killed by the OOM killer ends its own trial (`crashed`) and
never the grid.

Workers are persistent: a fresh process per trial would pay torch's import (seconds) every time, so a
worker runs trial after trial and is replaced only when it dies. A worker writes its trial's files itself
and calls the registry's observers, exactly like a Ray worker; the driver only schedules, claims, counts
and, when a worker dies, writes the `crashed` row. Where the platform allows it (and the driver has not
initialised CUDA) workers are forked, so they share the driver's registry, in-process plugins included;
otherwise they are spawned and rebuild the registry from the recipe `load_registry` recorded.

Forking after the driver ran multi-threaded torch ops would leave a worker with more than one thread hung in
its first parallel op (GNU OpenMP has no fork handler, see forksafe.py). Before each such fork the driver
frees its OpenMP thread pool (`forksafe.release_openmp`); where that cannot be done, those workers start from
a fork server (a clean process that imported torch but ran no op) instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from types import ModuleType
from typing import Any

from optbench.errors import OptbenchError
from optbench.forksafe import release_openmp
from optbench.registry import Registry, load_registry
from optbench.runner import RunSettings, run_trial
from optbench.store import Store
from optbench.trial import Trial

#: progress messages a worker sends for a trial (every step would flood the pipe on fast tasks)
STEP_REPORT_EVERY = 10
_PR_SET_PDEATHSIG = 1


def default_threads(workers: int) -> int:
    """Torch threads per worker: the cores this process may use, shared out, at least one each, and no more
    than $OMP_NUM_THREADS where the user set it (oversubscribed cores make steps many times slower)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, workers))
    with contextlib.suppress(ValueError):
        threads = min(threads, max(1, int(os.environ.get("OMP_NUM_THREADS", ""))))
    return threads


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the driver dies (kill -9), so no orphan finishes a trial whose
    claim is gone or sleeps forever in a hung step. Elsewhere the closed pipe ends an idle worker."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _preload() -> None:
    """Import what every trial imports lazily, once, before forking: torch.optim.Optimizer's constructor
    imports torch._dynamo (seconds; tens of seconds on a loaded machine), which each new worker (one per
    crash) would otherwise pay again."""
    import torch._dynamo  # noqa: F401


# --- the worker side ------------------------------------------------------------------------------------
@dataclass
class _ModuleRef:
    """A plugin module named by its import path, for a spawned worker (modules do not pickle)."""

    name: str


def _portable_recipe(registry: Registry) -> tuple[bool, list[tuple[str, Any]]]:
    entry_points, extras = registry.recipe
    out = []
    for name, plugin in extras:
        if isinstance(plugin, ModuleType):
            out.append((name, _ModuleRef(plugin.__name__)))
            continue
        try:
            pickle.dumps(plugin)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
            raise OptbenchError(
                f"plugin {name!r} was registered in-process and cannot be sent to spawned worker processes "
                f"({type(exc).__name__}).",
                "Install it through an entry point, or register a module or a module-level object.",
            ) from None
        out.append((name, plugin))
    return entry_points, out


def _rebuild_registry(recipe: tuple[bool, list[tuple[str, Any]]]) -> Registry:
    import importlib

    entry_points, extras = recipe
    plugins = [(n, importlib.import_module(p.name) if isinstance(p, _ModuleRef) else p) for n, p in extras]
    return load_registry(extra_plugins=plugins, entry_points=entry_points)


def _worker_main(conn: Connection, registry: Registry | None, recipe: Any, threads: int, parent: int) -> None:
    """The worker's loop: receive a trial, run it, write it, report; exit when the pipe closes. `parent` is
    the driver's pid, or 0 where the worker's parent is a fork server (which ends when the driver does)."""
    _die_with_parent()
    if parent and os.getppid() != parent:  # the driver died before the death signal was armed
        os._exit(0)
    # The driver decides when to stop; Ctrl-C in a terminal or `kill -TERM -PGID` must not end a trial
    # (it would be recorded as crashed): the driver ends its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    from optbench import environment

    torch.set_num_threads(threads)
    environment.device_name.cache_clear()  # forked: the driver's cached entry names the driver's threads
    if registry is None:
        _preload()
        registry = _rebuild_registry(recipe)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        trial, settings, root, parallel = message
        conn.send(_run_one(conn, registry, trial, settings, root, threads, parallel))


def _run_one(conn: Connection, registry: Registry, trial: Trial, settings: RunSettings, root: str, threads: int,
             parallel: int) -> dict[str, Any]:
    def on_step(step: int, budget: int) -> None:
        if step == 1 or step % STEP_REPORT_EVERY == 0 or step == budget:
            conn.send(("step", step, budget))

    from optbench.environment import device_name
    from optbench.executor import write_result
    from optbench.runner import resolve_device

    try:
        # for the row the driver writes should this process die: the driver must not touch CUDA (it forks)
        conn.send(("device", device_name(resolve_device(settings.device))))
        result = run_trial(trial, registry, settings, on_step=on_step)
        result.row["torch_threads"] = threads
        result.row["parallel_trials"] = parallel
        observed = write_result(Store(root), registry, result)
    except OptbenchError as exc:  # a setup error every trial shares: the driver stops the grid with it
        return {"kind": "user_error", "message": exc.message, "hint": exc.hint}
    return {"kind": "done", "status": result.row["status"], "error": result.row.get("error"),
            "observer_problems": observed}


# --- the driver side ------------------------------------------------------------------------------------
@dataclass
class Worker:
    process: Any
    conn: Connection
    trial: Trial | None = None
    started: float = 0.0
    step: int = 0
    budget: int | None = None
    alone: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """What a worker said or did: `step` (progress), `done` (summary), `user_error`, or `died` (exit code)."""

    kind: str
    worker: Worker
    payload: dict[str, Any]


def describe_exit(exitcode: int | None) -> str:
    """'exit code 3' or 'signal 11 (SIGSEGV)'."""
    if exitcode is None:
        return "an unknown cause"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        hint = " — the kernel's OOM killer sends this when memory runs out" if -exitcode == signal.SIGKILL else ""
        return f"signal {-exitcode} ({name}){hint}"
    return f"exit code {exitcode}"


class WorkerPool:
    """`size` persistent worker processes with `threads` torch threads each; a dead one is replaced."""

    def __init__(self, size: int, registry: Registry, threads: int, start_method: str | None = None) -> None:
        self.size = size
        self.threads = threads
        self.registry = registry
        self._use(start_method or self.pick_start_method(threads))
        self.workers: list[Worker] = []
        for _ in range(size):
            self.workers.append(self._start())

    def _use(self, method: str) -> None:
        if method == "fork":
            _preload()
        elif method == "forkserver":  # imported once by the server, not by every worker it forks
            mp.get_context("forkserver").set_forkserver_preload(["optbench.worker", "torch._dynamo"])
        self.method = method
        self.context = mp.get_context(method)
        self.recipe = None if method == "fork" else _portable_recipe(self.registry)

    @staticmethod
    def pick_start_method(threads: int = 1) -> str:
        """fork shares the driver's registry and skips torch's import; not once CUDA is initialised, and for
        workers with more than one torch thread only where the driver's OpenMP thread pool can be freed first
        (a worker forked beside a live pool hangs in its first parallel op; forksafe.py). Otherwise those get
        a fork server, whose children inherit no pool."""
        methods = mp.get_all_start_methods()
        if "fork" not in methods:
            return "spawn"
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            return "spawn"
        if threads > 1 and not release_openmp():
            return "forkserver" if "forkserver" in methods else "spawn"
        return "fork"

    def _start(self) -> Worker:
        if self.method == "fork" and self.threads > 1 and not release_openmp():  # checked again at every fork
            self._use(self.pick_start_method(self.threads))
        parent_conn, child_conn = self.context.Pipe(duplex=True)
        registry = self.registry if self.recipe is None else None
        parent = 0 if self.method == "forkserver" else os.getpid()
        process = self.context.Process(
            target=_worker_main, args=(child_conn, registry, self.recipe, self.threads, parent),
            name="optbench-worker", daemon=True,
        )
        process.start()
        child_conn.close()
        return Worker(process, parent_conn)

    def idle(self) -> list[Worker]:
        return [w for w in self.workers if w.trial is None]

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.trial is not None]

    def submit(self, worker: Worker, trial: Trial, settings: RunSettings, root: str, alone: bool = False) -> Worker:
        """Hand `trial` to the idle `worker` (or to its replacement, if it died while idle); returns which."""
        parallel = 1 if alone else self.size
        try:
            worker.conn.send((trial, settings, root, parallel))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            worker = self.replace(worker)
            worker.conn.send((trial, settings, root, parallel))
        worker.trial, worker.started, worker.step, worker.budget, worker.alone = (
            trial, time.monotonic(), 0, None, alone)
        worker.extra = {"parallel": parallel, "threads": self.threads}
        return worker

    def wait(self, timeout: float) -> list[Event]:
        """Events from busy workers, waiting at most `timeout` seconds for the first one."""
        busy = self.busy()
        if not busy:
            return []
        by_handle: dict[Any, Worker] = {}
        for w in busy:
            by_handle[w.conn] = w
            by_handle[w.process.sentinel] = w
        events: list[Event] = []
        dead: list[Worker] = []
        for handle in wait(list(by_handle), timeout):
            w = by_handle[handle]
            if handle is w.conn:
                events.extend(self._drain(w))
            elif w not in dead:
                dead.append(w)
        for w in dead:
            events.extend(self._drain(w))  # a last message may have arrived just before it died
            w.process.join(5)
            events.append(Event("died", w, {"exitcode": w.process.exitcode}))
        return events

    def _drain(self, w: Worker) -> list[Event]:
        events = []
        while True:
            try:
                if not w.conn.poll():
                    break
                message = w.conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, tuple) and message[0] == "step":
                w.step, w.budget = message[1], message[2]
                events.append(Event("step", w, {"step": w.step, "budget": w.budget}))
            elif isinstance(message, tuple) and message[0] == "device":
                w.extra["device"] = message[1]
            else:
                events.append(Event(message["kind"], w, message))
        return events

    def finish(self, worker: Worker) -> None:
        """The worker's trial is accounted for; it takes the next one."""
        worker.trial = None
        worker.alone = False

    def replace(self, worker: Worker) -> Worker:
        """End `worker` (dead, or stuck past its deadline) and start another in its place."""
        self._kill(worker)
        fresh = self._start()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def _kill(self, worker: Worker) -> None:
        with contextlib.suppress(OSError, ValueError):
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(10)
        with contextlib.suppress(OSError):
            worker.conn.close()

    def close(self, now: bool = False) -> None:
        """Stop every worker: idle ones by closing their pipes, busy ones (or all, with `now`) by SIGKILL."""
        for w in self.workers:
            if now or w.trial is not None:
                self._kill(w)
            else:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
                    w.conn.close()
        for w in self.workers:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                w.process.join(10)
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join(5)
        self.workers = []
