"""`optbench list`: the registered optimizers, tasks or metrics, as a table or JSON."""

from __future__ import annotations

import json

import click
from rich.table import Table

from optbench.cli.context import cli_context

KIND_OF = {"optimizers": "optimizer", "tasks": "task", "metrics": "metric"}


@click.command("list")
@click.argument("kind", type=click.Choice(sorted(KIND_OF)), default="optimizers")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_cmd(kind: str, pattern: str | None, as_json: bool) -> None:
    """List registered optimizers, tasks or metrics (PATTERN filters with wildcards, e.g. 'lion*')."""
    cli = cli_context()
    registry = cli.registry
    k = KIND_OF[kind]
    entries = [registry.get(k, n) for n in registry.names(k, pattern)]
    if as_json:
        out = []
        for r in entries:
            item = {"name": r.name, "plugin": r.plugin, "distribution": r.distribution, "version": r.version,
                    "summary": r.spec.summary}
            if k == "optimizer":
                item.update(defaults=dict(r.spec.defaults), needs=str(r.spec.needs.value), paper=r.spec.paper)
            elif k == "task":
                item.update(presets=list(r.spec.presets), suites=list(r.spec.suites))
            else:
                item.update(when=str(r.spec.when.value), default=r.spec.default)
            out.append(item)
        click.echo(json.dumps(out, indent=2, default=str))
        return
    table = Table(title=f"{len(entries)} {kind}", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("plugin", style="dim")
    if k == "task":
        table.add_column("presets")
        table.add_column("suites")
    table.add_column("summary")
    for r in entries:
        extra = [", ".join(r.spec.presets), ", ".join(r.spec.suites)] if k == "task" else []
        table.add_row(r.name, r.distribution, *extra, r.spec.summary)
    cli.console.print(table)
