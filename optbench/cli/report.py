"""`optbench report STUDY`: a study's question, protocol, evidence and answer, computed from the Parquet."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.table import Table

from optbench.cli.context import DEFAULT_RESULTS, cli_context

DEFAULT_STUDIES = Path("leaderboard") / "studies"


@click.command("report")
@click.argument("study_ids", metavar="[STUDY]...", nargs=-1)
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--studies", "studies_dir", default=DEFAULT_STUDIES, show_default=True,
              type=click.Path(path_type=Path), help="Directory of study files (*.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the evidence and answer as JSON.")
def report_cmd(study_ids: tuple[str, ...], results: Path, studies_dir: Path, as_json: bool) -> None:
    """Answer a study's question from the results (no STUDY: list the studies)."""
    from optbench.errors import OptbenchError
    from optbench.store import Store
    from optbench.studies import load_studies, run_study

    cli = cli_context()
    studies = {s.id: s for s in load_studies(studies_dir)}
    if not study_ids:
        table = Table(title=f"{len(studies)} studies in {studies_dir}", title_justify="left")
        table.add_column("study", style="bold cyan", no_wrap=True)
        table.add_column("question")
        for s in studies.values():
            table.add_row(s.id, s.question)
        cli.console.print(table)
        return
    unknown = [s for s in study_ids if s not in studies]
    if unknown:
        raise OptbenchError(f"no study {unknown[0]!r} in {studies_dir}.",
                            f"Known studies: {', '.join(studies) or 'none'}.")
    res = Store(results).read()
    for problem in res.problems:
        cli.err_console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False, soft_wrap=True)
    outcomes = [run_study(studies[s], res.trials) for s in study_ids]
    if as_json:
        click.echo(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
        return
    for outcome in outcomes:
        _print(cli.console, outcome)


def _print(console, outcome) -> None:
    from optbench.cli.fit import short_label
    from optbench.studies import PairwiseResult

    study = outcome.study
    console.rule(f"[bold]{study.question}[/bold]", align="left")
    if study.protocol:
        console.print(f"[dim]Protocol:[/dim] {study.protocol}", highlight=False)
    if isinstance(outcome, PairwiseResult):
        sections = (("per task", outcome.rows), (f"{study.a} variants ({study.variants_by})", outcome.variants))
        for title, rows in sections:
            if not rows:
                continue
            table = Table(title=f"{study.a} − {study.b}, {title}", title_justify="left")
            for col, justify in (("task", "left"), ("metric", "left"), ("pairs", "right"), (study.a, "right"),
                                 (study.b, "right"), ("Δ [95% CI]", "right"), ("verdict", "left")):
                table.add_column(col, justify=justify, overflow="fold")
            for r in rows:
                table.add_row(r.task, short_label(r.metric), str(r.n_pairs), f"{r.mean_a:.3g}", f"{r.mean_b:.3g}",
                              r.difference.fmt(2), r.verdict)
            console.print(table)
    else:
        table = Table(title="Spearman rank correlation per task", title_justify="left")
        for col, justify in (("task", "left"), ("measure", "left"), ("against", "left"), ("trials", "right"),
                             ("ρ [95% CI]", "right")):
            table.add_column(col, justify=justify, overflow="fold")
        for r in outcome.rows:
            table.add_row(r.task, r.measure, short_label(r.target), str(r.rho.n), r.rho.fmt(2))
        console.print(table)
        for task, first, second, ci in outcome.contrasts:
            console.print(f"{task}: |ρ({first})| − |ρ({second})| vs the generalisation gap = {ci.fmt(2)}",
                          highlight=False)
    console.print(f"[bold]Answer:[/bold] {outcome.answer}", highlight=False)

