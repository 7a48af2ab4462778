"""`optbench gate`: the CI performance-regression gate on the command line (exit 0 pass, 1 regression,
2 unusable input). The comparison itself lives in optbench.gate; this module parses and prints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from optbench.cli.context import RESULTS_ROOT, cli_context
from optbench.errors import OptbenchError

if TYPE_CHECKING:
    from optbench.gate import GateReport



#: cells listed in the terminal table unless --all: a board of 20 000 cells is read through its regressions
#: and warnings (listed first); --json and --markdown always carry every cell
TABLE_ROWS = 200
_SEVERITY = {"regression": 0, "warning": 1, "new": 2}


def shown_cells(report: GateReport, show_all: bool = False) -> list:
    """The cells the table lists: all of them when few (or --all), else the TABLE_ROWS most severe ones."""
    if show_all or len(report.cells) <= TABLE_ROWS:
        return report.cells
    return sorted(report.cells, key=lambda c: _SEVERITY.get(c.status, 3))[:TABLE_ROWS]


def render_table(report: GateReport, width: int | None = None, cells: list | None = None) -> Table:
    """The gate's verdicts as a table that fits `width` (the verdict and the numbers first; None: every column),
    one row per cell of `cells` (default: every compared cell)."""
    from rich.markup import escape

    from optbench.cli.fit import Column, fitted_table
    from optbench.gate import NEW, PASS, REGRESSION, SKIPPED, WARNING, fmt_ratio, fmt_value, notes
    from optbench.settings import speed_reference

    ref = speed_reference()
    style = {PASS: "green", WARNING: "yellow", REGRESSION: "bold red", SKIPPED: "dim", NEW: "cyan"}
    tol = report.tolerances
    cols = [Column("task", priority=0, wrap=True, justify="left"),
            Column("configuration", priority=1, wrap=True, justify="left"),
            Column("verdict", priority=2, justify="left"), Column("metric", priority=5, justify="left"),
            Column("baseline", priority=3), Column("candidate", priority=4),
            Column("worse by (allowed)", priority=6), Column(f"×{ref}", priority=7, justify="left"),
            Column("seeds ok", priority=8, justify="left"), Column("notes", priority=9, wrap=True, justify="left")]
    for c in report.cells if cells is None else cells:
        values = [escape(f"{c.task}/{c.preset}"), escape(c.config or c.optimizer),
                  f"[{style[c.status]}]{c.status}[/]",
                  c.metric.removeprefix("final_").replace("_", " ") if c.metric else "—",
                  fmt_value(c.baseline_mean, c.baseline_std), fmt_value(c.candidate_mean, c.candidate_std),
                  "—" if c.worse_by is None else f"{c.worse_by:.3g} ({c.allowed:.3g})",
                  escape(fmt_ratio(c)), f"{c.baseline_seeds} → {c.candidate_seeds}", escape(notes(c))]
        for col, value in zip(cols, values, strict=True):
            col.values.append(value)
    caption = (f"quality: worse by more than max({tol.quality_k:g} × baseline seed std, {tol.quality_tol:.0%}) "
               f"fails; speed: step-time ratio to {ref} growing more than {tol.speed_tol:.0%} fails")
    return fitted_table(cols, width, f"optbench gate: {report.candidate} vs baseline {report.baseline}", caption,
                        wide=width is None)


@click.command("gate")
@click.option("--baseline", required=True, type=RESULTS_ROOT, help="Results root to compare against.")
@click.option("--candidate", required=True, type=RESULTS_ROOT, help="Results root under test.")
@click.option("--quality-k", default=2.0, show_default=True, type=float,
              help="A quality drop within this many of the baseline's seed standard deviations passes.")
@click.option("--quality-tol", default=0.02, show_default=True, type=float,
              help="... or within this fraction of the baseline's value, whichever is larger.")
@click.option("--speed-tol", default=0.25, show_default=True, type=float,
              help="Allowed growth of the step-time ratio to the speed reference ($OPTBENCH_SPEED_REF; 0.25 = 25 %).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON instead of a table.")
@click.option("--markdown", "markdown", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a Markdown summary here (appended, e.g. $GITHUB_STEP_SUMMARY).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable Parquet files instead of stopping (exit 2).")
@click.option("--quality-only", is_flag=True,
              help="Judge quality and trial counts only (for a baseline that ran on another machine).")
@click.option("--task", "tasks", multiple=True, help="Compare only this task (repeatable).")
@click.option("--wide", is_flag=True, help="Show every column of the table, however wide the terminal.")
@click.option("--all", "show_all", is_flag=True,
              help=f"List every cell in the table (by default at most {TABLE_ROWS}, the most severe first).")
def gate_cmd(baseline: Path, candidate: Path, quality_k: float, quality_tol: float, speed_tol: float,
             as_json: bool, markdown: Path | None, skip_bad: bool, quality_only: bool, tasks: tuple[str, ...],
             wide: bool = False, show_all: bool = False) -> None:
    """Compare CANDIDATE results with BASELINE per task × optimizer configuration; exit 1 on a regression."""
    from rich.markup import escape

    from optbench.gate import Tolerances, cell_name, run_gate
    from optbench.gate import to_markdown as gate_markdown

    cli = cli_context()
    report = run_gate(baseline, candidate, Tolerances(quality_k, quality_tol, speed_tol, quality_only),
                      skip_bad=skip_bad, tasks=list(tasks) or None)
    err = cli.err_console
    for problem in report.problems:
        err.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    if markdown is not None:
        try:
            with open(markdown, "a", encoding="utf-8") as fh:
                fh.write(gate_markdown(report))
        except OSError as exc:
            raise OptbenchError(f"cannot write the Markdown summary to {markdown}: {exc.strerror}.",
                                "Pass --markdown a writable file path.") from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        out = cli.console
        # --wide: every column at its natural width, however narrow the terminal (lines may then be long)
        cells = shown_cells(report, show_all)
        out.print(render_table(report, None if wide else out.width, cells), crop=not wide,
                  width=10_000 if wide else None)
        if len(cells) < len(report.cells):
            counts = Counter(c.status for c in report.cells)
            out.print(f"{len(report.cells) - len(cells)} of {len(report.cells)} cells not listed (all: "
                      + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                      + "); --all lists every cell, --json and --markdown carry them all.", highlight=False)
        if report.only_baseline:
            out.print(f"[yellow]{len(report.only_baseline)} baseline cell(s) not run by the candidate:[/yellow] "
                      + escape(", ".join(cell_name(report, k) for k in report.only_baseline)), highlight=False)
        if report.only_candidate:
            out.print(f"[cyan]{len(report.only_candidate)} new cell(s) not in the baseline[/cyan] (listed above with "
                      "their numbers): " + escape(", ".join(cell_name(report, k) for k in report.only_candidate)),
                      highlight=False)
        verdict = ("[green]gate passed[/green]" if report.passed
                   else f"[bold red]gate failed: {len(report.regressions)} regression(s)[/bold red]")
        n_new = len(report.only_candidate)
        out.print(f"{verdict} ({len(report.cells) - n_new} cell(s) compared, {n_new} new)")
    click.get_current_context().exit(report.exit_code)
