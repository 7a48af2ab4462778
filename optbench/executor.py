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

from optbench.registry import Registry
from optbench.runner import RunSettings, run_trial
from optbench.store import Store
from optbench.trial import Trial


@dataclass
class GridOutcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


def pending(trials: Sequence[Trial], store: Store, force: bool) -> tuple[list[Trial], list[Trial]]:
    todo, done = [], []
    for t in trials:
        (done if not force and store.has(t.trial_id) else todo).append(t)
    return todo, done


def run_local(
    trials: Sequence[Trial],
    store: Store,
    registry: Registry,
    settings: RunSettings,
    force: bool = False,
    console: Console | None = None,
) -> GridOutcome:
    console = console or Console(stderr=True)
    store.prepare()
    todo, done = pending(trials, store, force)
    outcome = GridOutcome(skipped=[t.trial_id for t in done])
    if done:
        console.print(f"[dim]resuming: {len(done)} of {len(trials)} trials already have results[/dim]")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        grid = progress.add_task("grid", total=len(todo))
        for trial in todo:
            bar = progress.add_task(f"  {trial.label}", total=None)

            def on_step(step: int, budget: int, bar: int = bar) -> None:
                if step == 1 or step % 10 == 0 or step == budget:
                    progress.update(bar, completed=step, total=budget)

            result = run_trial(trial, registry, settings, on_step=on_step)
            store.write(result.row, result.curves)
            registry.trial_finished(result.row)
            status = result.row["status"]
            outcome.ran.append(trial.trial_id)
            outcome.statuses[status] += 1
            progress.remove_task(bar)
            progress.advance(grid)
            if status != "ok":
                progress.console.print(f"[yellow]{trial.label}: {status}[/yellow] — {result.row.get('error')}")
    return outcome
