"""Schedules trials. The local executor runs them in worker processes on this machine (worker.py), one or
more at a time, with progress bars; the Ray executor (executor_ray.py) shares the helpers here.

Trials are self-contained (`run_trial` gives a row, the store writes it), so an executor only decides
what runs where; resume is the store's: a trial whose file exists is skipped unless forced.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from optbench.claims import Claims, claim_ttl
from optbench.errors import OptbenchError
from optbench.registry import Registry
from optbench.runner import RunSettings, TrialResult, base_row
from optbench.store import ReadProblem, Store
from optbench.trial import Trial
from optbench.worker import Worker, WorkerPool, default_threads, describe_exit

#: past --trial-timeout, how long a worker stuck outside Python gets before it is killed
KILL_GRACE_S = 30.0


@dataclass
class GridOutcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # claimed by another live `optbench run` on the same root
    statuses: Counter = field(default_factory=Counter)
    #: observer plugins (optbench_trial_finished) that raised, one sentence each; printed after the run
    observer_problems: list[str] = field(default_factory=list)


def pending(trials: Sequence[Trial], store: Store, force: bool,
            console: Console | None = None) -> tuple[list[Trial], list[Trial]]:
    """Split the grid into trials to run and trials already done. A results file that cannot stand for its
    trial (unreadable, lacking a required column) is named on `console` and its trial runs again."""
    if force:
        return list(trials), []
    problems: list[ReadProblem] = []
    done_ids = store.done_ids([t.trial_id for t in trials], problems)
    if console is not None:
        for problem in problems:
            console.print(f"[yellow]will re-run[/yellow] {problem}", highlight=False, soft_wrap=True)
    todo, done = [], []
    for t in trials:
        (done if t.trial_id in done_ids else todo).append(t)
    return todo, done


def count_text(statuses: Counter) -> str:
    """The live tally shown on the grid bar: ok, diverged, failed always; timeout once one happened."""
    shown = ["ok", "diverged", "failed"] + [s for s in sorted(statuses) if s not in ("ok", "diverged", "failed")]
    colors = {"ok": "green", "diverged": "yellow", "failed": "red"}
    return " ".join(f"[{colors.get(s, 'magenta')}]{s} {statuses.get(s, 0)}[/]" for s in shown)


def grid_progress(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False)


def claim_for_run(trial: Trial, claims: Claims, store: Store, force: bool, outcome: GridOutcome) -> bool:
    """Claim `trial` for this driver; a trial another driver holds or has meanwhile finished is recorded in
    `outcome` (busy / skipped) and not run. Shared by every executor so they agree on who runs what."""
    if not claims.acquire(trial.trial_id):
        outcome.busy.append(trial.trial_id)
        return False
    if not force and store.has(trial.trial_id):  # finished by another driver meanwhile
        claims.release(trial.trial_id)
        outcome.skipped.append(trial.trial_id)
        return False
    return True


def write_result(store: Store, registry: Registry, result: TrialResult, notify: bool = True) -> list[str]:
    """Write a trial's files, then tell the observers; a full or vanished disk is the user's to fix, said in
    one sentence. Returns the observers' failures (they happen in workers; the driver prints them)."""
    try:
        store.write(result.row, result.curves)
    except OSError as exc:
        raise OptbenchError(
            f"could not write the results of trial {result.row['trial_id']} under {store.root}: "
            f"{exc.strerror or exc}.",
            "Free some disk space (finished trials are kept) and re-run the same command.",
        ) from None
    return registry.trial_finished(result.row) if notify else []


def report_finished(progress: Progress, grid: TaskID, outcome: GridOutcome, trial: Trial, status: str,
                    error: str | None) -> None:
    """Count a finished trial on the grid bar and name it when it did not end `ok` (every executor)."""
    outcome.ran.append(trial.trial_id)
    outcome.statuses[status] += 1
    progress.update(grid, advance=1, description=f"grid {count_text(outcome.statuses)}")
    if status != "ok":
        progress.console.print(f"[yellow]{trial.label}: {status}[/yellow] — {error}", highlight=False)


@dataclass
class LocalOptions:
    """How the local executor uses this machine."""

    workers: int = 1  # trials at once, each in its own worker process
    threads: int | None = None  # torch threads per worker; None: cores // workers (worker.default_threads)
    alone: Callable[[Trial], bool] | None = None  # trials that must run with no other trial beside them
    claim_ttl_s: float | None = None  # None: claims.claim_ttl(settings.trial_timeout_s)
    start_method: str | None = None  # None: fork where possible (worker.WorkerPool.pick_start_method)
    kill_grace_s: float = KILL_GRACE_S  # past --trial-timeout, a worker that did not stop is killed


def run_local(
    trials: Sequence[Trial],
    store: Store,
    registry: Registry,
    settings: RunSettings,
    force: bool = False,
    console: Console | None = None,
    options: LocalOptions | None = None,
) -> GridOutcome:
    """Run the grid on this machine, each trial in a worker process (worker.py), `options.workers` at once.
    Each trial is claimed first (claims.py), so a second `optbench run` on the same root skips it; a worker
    that dies ends its trial as `crashed` and is replaced; Ctrl-C or SIGTERM drops the running trials (no
    files) and their claims."""
    options = options or LocalOptions()
    console = console or Console(stderr=True)
    store.prepare()
    todo, done = pending(trials, store, force, console)
    outcome = GridOutcome(skipped=[t.trial_id for t in done])
    if done:
        console.print(f"[dim]resuming: {len(done)} of {len(trials)} trials already have results[/dim]")
    if not todo:
        return outcome
    claims = Claims(store.claims_root, ttl_s=claim_ttl(settings.trial_timeout_s, options.claim_ttl_s))
    claims.sweep()
    workers = max(1, min(options.workers, len(todo)))
    threads = options.threads or default_threads(workers)
    pool = WorkerPool(workers, registry, threads, options.start_method)
    root = store.address
    queue = list(todo)
    clean = False
    try:
        with grid_progress(console) as progress:
            grid = progress.add_task(f"grid {count_text(outcome.statuses)}", total=len(todo))
            bars: dict[str, TaskID] = {}

            def account(worker: Worker, status: str, error: str | None) -> None:
                trial = worker.trial
                assert trial is not None
                claims.release(trial.trial_id)
                pool.finish(worker)
                progress.remove_task(bars.pop(trial.trial_id))
                report_finished(progress, grid, outcome, trial, status, error)

            while queue or pool.busy():
                _fill(pool, queue, claims, store, force, outcome, settings, root, options, progress, grid, bars)
                for event in pool.wait(timeout=0.5):
                    w = event.worker
                    if event.kind == "step":
                        progress.update(bars[w.trial.trial_id], completed=event.payload["step"],
                                        total=event.payload["budget"])
                    elif event.kind == "done":
                        outcome.observer_problems.extend(event.payload.get("observer_problems", ()))
                        account(w, event.payload["status"], event.payload["error"])
                    elif event.kind == "user_error":
                        raise OptbenchError(event.payload["message"], event.payload["hint"])
                    elif event.kind == "died":
                        if w.trial is not None:  # else it died after reporting its trial: nothing was lost
                            status, error = _record_death(w, event.payload["exitcode"], store, registry, settings)
                            account(w, status, error)
                        pool.replace(w)
                for w in _overdue(pool, settings, options):
                    pool.replace(w)
                    status, error = _record_overdue(w, store, registry, settings, options)
                    account(w, status, error)
                claims.renew()
        clean = True
    finally:
        pool.close(now=not clean)
        claims.release_all()
    return outcome


def _fill(pool: WorkerPool, queue: list[Trial], claims: Claims, store: Store, force: bool, outcome: GridOutcome,
          settings: RunSettings, root: str, options: LocalOptions, progress: Progress, grid: TaskID,
          bars: dict[str, TaskID]) -> None:
    """Give idle workers the next trials in order; a trial that must run alone waits for an empty pool,
    and nothing starts beside it."""
    while queue and pool.idle():
        busy = pool.busy()
        if any(w.alone for w in busy):
            return
        alone = bool(options.alone and options.alone(queue[0]))
        if alone and busy:
            return
        trial = queue.pop(0)
        if not claim_for_run(trial, claims, store, force, outcome):
            progress.advance(grid)
            continue
        bars[trial.trial_id] = progress.add_task(f"  {trial.label}", total=None)
        pool.submit(pool.idle()[0], trial, settings, root, alone=alone)


def _blame_text(registry: Registry, trial: Trial) -> str:
    opt = registry.entries["optimizer"].get(trial.optimizer)
    task = registry.entries["task"].get(trial.task)
    parts = []
    if opt is not None:
        parts.append(f"optimizer {trial.optimizer!r} from plugin {opt.plugin!r} ({opt.distribution})")
    if task is not None:
        parts.append(f"task {trial.task!r} from plugin {task.plugin!r} ({task.distribution})")
    return " or ".join(parts) or "an unknown plugin"


def _record_death(worker: Worker, exitcode: int | None, store: Store, registry: Registry,
                  settings: RunSettings) -> tuple[str, str | None]:
    """A worker died during its trial: keep the row it managed to write, else write a `crashed` one."""
    trial = worker.trial
    assert trial is not None
    if store.has(trial.trial_id):  # it wrote its files and died before reporting
        row = _read_row(store, trial)
        return row["status"], row.get("error")
    where = f"at step {worker.step} of {worker.budget}" if worker.step else "before its first step"
    error = (f"the worker process died with {describe_exit(exitcode)} {where}; the code running was "
             f"{_blame_text(registry, trial)}")
    _write_driver_row(trial, store, registry, settings, worker, "crashed", error)
    return "crashed", error


def _read_row(store: Store, trial: Trial) -> dict:
    return pq.read_table(str(store.trial_path(trial.trial_id)), filesystem=store.loc.fs).to_pylist()[0]


def _overdue(pool: WorkerPool, settings: RunSettings, options: LocalOptions) -> list[Worker]:
    """Workers still on a trial `kill_grace_s` past --trial-timeout: stuck where SIGALRM cannot reach
    (native code that never returns to Python)."""
    limit = settings.trial_timeout_s
    if not limit:
        return []
    now = time.monotonic()
    return [w for w in pool.busy() if now - w.started > limit + options.kill_grace_s]


def _record_overdue(worker: Worker, store: Store, registry: Registry, settings: RunSettings,
                    options: LocalOptions) -> tuple[str, str | None]:
    trial = worker.trial
    assert trial is not None
    if store.has(trial.trial_id):
        row = _read_row(store, trial)
        return row["status"], row.get("error")
    limit = settings.trial_timeout_s or 0.0
    error = (f"trial exceeded --trial-timeout {limit:g} s and did not stop within {options.kill_grace_s:g} s more "
             f"(stuck outside Python, at step {worker.step}); its worker was killed. The code running was "
             f"{_blame_text(registry, trial)}")
    _write_driver_row(trial, store, registry, settings, worker, "timeout", error)
    return "timeout", error


def _write_driver_row(trial: Trial, store: Store, registry: Registry, settings: RunSettings, worker: Worker,
                      status: str, error: str) -> None:
    """The row for a trial whose worker could not write one. Built from the registry's metadata only:
    the driver runs no plugin code (observers are not told about it)."""
    row = base_row(trial, registry, settings, torch.device("cpu"))  # never initialise CUDA here: workers fork
    row.update(status=status, error=error, steps=worker.step or None, budget=worker.budget,
               wall_time_s=time.monotonic() - worker.started, parallel_trials=worker.extra.get("parallel"),
               torch_threads=worker.extra.get("threads"),
               device=worker.extra.get("device", f"{settings.device} (not reported)"))
    write_result(store, registry, TrialResult(row, []), notify=False)
