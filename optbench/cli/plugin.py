"""The contributor path on the command line: `optbench new-plugin` scaffolds an optimizer package and
`optbench check-plugin` runs the conformance kit (optbench.testing) on installed optimizers."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from optbench.cli.context import cli_context


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              help="Where to write the package (default: ./optbench-NAME). Must be new or empty.")
def new_plugin_cmd(name: str, directory: Path | None) -> None:
    """Write a ready-to-install plugin package for a new optimizer NAME (kebab-case)."""
    from optbench.scaffold import write_plugin

    names, root, written = write_plugin(name, directory)
    console = cli_context().console
    console.print(f"[green]wrote[/green] {names.distribution} in {root}:", highlight=False)
    for path in written:
        console.print(f"  {path.relative_to(root)}", highlight=False)
    console.print(
        f"\nnext:\n  cd {root} && pip install -e '.[test]'\n  pytest\n  optbench check-plugin {names.optimizer}\n"
        f"  optbench run -o {names.optimizer} -o adamw --seeds 3 --results results\n"
        "See CONTRIBUTING.md for publishing and submitting it to the leaderboard.", markup=False, highlight=False)


@click.command("check-plugin")
@click.argument("names", nargs=-1, required=True)
def check_plugin_cmd(names: tuple[str, ...]) -> None:
    """Run the conformance checks on the installed optimizer(s) NAMES; exit 1 if any check fails."""
    from optbench.testing import check_optimizer

    cli = cli_context()
    registry = cli.registry
    for name in names:
        registry.optimizer(name)  # an unknown name is a usage error (exit 2, with close matches)
    console = cli.console
    failures = 0
    for name in names:
        entry = registry.optimizer(name)
        results = check_optimizer(name, registry)
        failed = [r for r in results if not r.passed]
        failures += len(failed)
        table = Table(title=f"{name} ({entry.distribution} {entry.version})".strip(), title_justify="left")
        table.add_column("check", style="bold", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("detail")
        for r in results:
            table.add_row(r.check, "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]", r.detail)
        console.print(table)
        verdict = "[green]conforms[/green]" if not failed else f"[bold red]{len(failed)} check(s) failed[/bold red]"
        console.print(f"{name}: {verdict}")
    click.get_current_context().exit(1 if failures else 0)
