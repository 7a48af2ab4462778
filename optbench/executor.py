"""Schedules trials. The local executor runs them in this process, one at a time, with progress bars.

Trials are self-contained (`run_trial` gives a row, the store writes it), so an executor only decides
what runs where; resume is the store's: a trial whose file exists is skipped unless forced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optbench.claims import Claims
from optbench.errors import OptbenchError
from optbench.registry import Registry
from optbench.runner import RunSettings, TrialResult, run_trial
from optbench.store import ReadProblem, Store
from optbench.trial import Trial


@dataclass
class GridOutcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # claimed by another live `optbench run` on the same root
    statuses: Counter = field(default_factory=Counter)


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


def write_result(store: Store, registry: Registry, result: TrialResult, notify: bool = True) -> None:
    """Write a trial's files; a full or vanished disk is the user's to fix, said in one sentence."""
    try:
        store.write(result.row, result.curves)
    except OSError as exc:
        raise OptbenchError(
            f"could not write the results of trial {result.row['trial_id']} under {store.root}: "
            f"{exc.strerror or exc}.",
            "Free some disk space (finished trials are kept) and re-run the same command.",
        ) from None
    if notify:
        registry.trial_finished(result.row)


def run_local(
    trials: Sequence[Trial],
    store: Store,
    registry: Registry,
    settings: RunSettings,
    force: bool = False,
    console: Console | None = None,
) -> GridOutcome:
    """Run the grid here, one trial at a time. Each trial is claimed first (claims.py), so a second
    `optbench run` on the same root skips it; Ctrl-C drops the running trial (no file) and its claim."""
    console = console or Console(stderr=True)
    store.prepare()
    todo, done = pending(trials, store, force, console)
    outcome = GridOutcome(skipped=[t.trial_id for t in done])
    if done:
        console.print(f"[dim]resuming: {len(done)} of {len(trials)} trials already have results[/dim]")
    claims = Claims(store.root)
    claims.sweep()
    try:
        with grid_progress(console) as progress:
            grid = progress.add_task(f"grid {count_text(outcome.statuses)}", total=len(todo))
            for trial in todo:
                if not claim_for_run(trial, claims, store, force, outcome):
                    progress.advance(grid)
                    continue
                bar = progress.add_task(f"  {trial.label}", total=None)

                def on_step(step: int, budget: int, bar: int = bar) -> None:
                    if step == 1 or step % 10 == 0 or step == budget:
                        progress.update(bar, completed=step, total=budget)

                result = run_trial(trial, registry, settings, on_step=on_step)
                write_result(store, registry, result)
                claims.release(trial.trial_id)
                status = result.row["status"]
                outcome.ran.append(trial.trial_id)
                outcome.statuses[status] += 1
                progress.remove_task(bar)
                progress.update(grid, advance=1, description=f"grid {count_text(outcome.statuses)}")
                if status != "ok":
                    progress.console.print(f"[yellow]{trial.label}: {status}[/yellow] — {result.row.get('error')}",
                                           highlight=False)
    finally:
        claims.release_all()
    return outcome
