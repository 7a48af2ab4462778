"""`optbench list`: the registered optimizers, tasks or metrics, as a table or JSON."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from optbench.cli.context import CliContext, cli_context

KIND_OF = {"optimizers": "optimizer", "tasks": "task", "metrics": "metric"}


@click.command("list")
@click.argument("kind", type=click.Choice(sorted(KIND_OF)), default="optimizers")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--refresh", is_flag=True, help="Load every plugin again instead of using the cached listing.")
@click.option("--first-party", is_flag=True, help="Only optbench's own plugins, without the '*-bridge' re-exports.")
@click.option("--distribution", default=None, help="Only names from this installed distribution.")
@click.option("--exclude", multiple=True, help="Leave out names or plugins matching this glob (repeatable).")
@click.option("--suite", default=None, help="Only tasks of this suite.")
@click.option("--names", "names_only", is_flag=True, help="Print the names only, one per line (for scripts).")
def list_cmd(kind: str, pattern: str | None, as_json: bool, refresh: bool, first_party: bool,
             distribution: str | None, exclude: tuple[str, ...], suite: str | None, names_only: bool) -> None:
    """List registered optimizers, tasks or metrics (PATTERN filters with wildcards, e.g. 'lion*')."""
    from optbench.selection import FIRST_PARTY, Selection

    cli = cli_context()
    k = KIND_OF[kind]
    base = FIRST_PARTY if first_party else Selection()
    chosen = Selection((pattern,) if pattern else (), distribution or base.distribution, (*base.exclude, *exclude),
                       suite)
    items = [i for i in _catalog(cli, refresh)[k]
             if chosen.keeps(i["name"], i["plugin"], i["distribution"], i.get("suites", ()))]
    if names_only:
        click.echo("\n".join(i["name"] for i in items))
        return
    if as_json:
        click.echo(json.dumps(items, indent=2, default=str))
        return
    table = Table(title=f"{len(items)} {kind}", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("plugin", style="dim")
    if k == "task":
        table.add_column("presets")
        table.add_column("suites")
    table.add_column("summary")
    for i in items:
        extra = [", ".join(i["presets"]), ", ".join(i["suites"])] if k == "task" else []
        table.add_row(i["name"], i["distribution"], *extra, i["summary"])
    cli.console.print(table)


def _catalog(cli: CliContext, refresh: bool) -> dict[str, Any]:
    """The plugins' listing: from the on-disk cache when the installed plugins are unchanged and none is loaded
    in this process yet, else from the registry (and then cached)."""
    import optbench.registry
    from optbench import catalog

    if optbench.registry.loaded() is not None:  # already loaded here (or set by a caller): use it as is
        return catalog.describe(cli.registry)
    key = catalog.installed_key()
    cached = None if refresh else catalog.read_cached(key)
    if cached is not None:
        for problem in cached["problems"]:
            cli.warn(problem)
        return cached
    fresh = catalog.describe(cli.registry)
    catalog.write_cached(key, fresh)
    return fresh
