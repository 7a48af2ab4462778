"""`optbench compact`: fold finished per-trial files into large segments so that big results roots read fast."""

from __future__ import annotations

import click

from optbench.cli.context import DEFAULT_RESULTS, RESULTS_ROOT, cli_context


@click.command("compact")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=RESULTS_ROOT,
              help="Results directory or filesystem URI (e.g. s3://bucket/runs).")
@click.option("--segment-rows", default=50_000, show_default=True, type=click.IntRange(min=1),
              help="Trials per segment file.")
def compact_cmd(results: str, segment_rows: int) -> None:
    """Fold finished trials into Parquet segments (safe to interrupt and to re-run; running trials are untouched)."""
    from rich.progress import Progress

    from optbench.compact import compact
    from optbench.errors import OptbenchError
    from optbench.store import Store

    cli = cli_context()
    store = Store(results)
    if not store.exists():
        raise OptbenchError(f"no results directory at {results}.", "Pass the --results your runs wrote to.")
    with Progress(console=cli.err_console, transient=True) as bar:
        task = bar.add_task("compacting", total=None)
        report = compact(store, segment_rows, progress=lambda done, total: bar.update(task, completed=done,
                                                                                        total=total))
    for problem in report.problems:
        cli.err_console.print(f"[yellow]left in place[/yellow] {problem}", highlight=False, soft_wrap=True)
    resumed = f"; finished {report.resumed} interrupted compaction(s)" if report.resumed else ""
    cli.err_console.print(f"compacted {report.trials} trial(s) into {report.segments_written} segment(s), "
                          f"removed {report.files_removed} file(s){resumed}; results in {results}")
