"""The contributor path on the command line: `optbench new-plugin` scaffolds an optimizer package and
`optbench check-plugin` runs the conformance kit (optbench.testing) on installed optimizers."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from optbench.cli.context import cli_context


@click.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["optimizer", "task", "metric"]), default="optimizer", show_default=True,
              help="What the package registers.")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              help="Where to write the package (default: ./optbench-NAME). Must be new or empty.")
def new_plugin_cmd(name: str, kind: str, directory: Path | None) -> None:
    """Write a ready-to-install plugin package for a new optimizer, task or metric NAME (kebab-case)."""
    from optbench.scaffold import write_plugin
    from optbench.settings import speed_reference

    names, root, written = write_plugin(name, directory, kind)
    console = cli_context().console
    console.print(f"[green]wrote[/green] {names.distribution} in {root}:", highlight=False)
    for path in written:
        console.print(f"  {path.relative_to(root)}", highlight=False)
    try_it = {"optimizer": f"optbench run -o {names.optimizer} -o {speed_reference()} --seeds 3 --results results",
              "task": f"optbench run -o {speed_reference()} -t {names.optimizer} --seeds 3 --results results",
              "metric": f"optbench run -o {speed_reference()} --metrics {names.optimizer} --results results"}[kind]
    console.print(
        f"\nnext:\n  cd {root} && pip install -e '.[test]'\n  pytest\n  optbench check-plugin {names.optimizer}\n"
        f"  {try_it}\n"
        "See CONTRIBUTING.md for publishing and submitting it to the leaderboard.", markup=False, highlight=False)


@click.command("check-plugin")
@click.argument("names", nargs=-1, required=True)
def check_plugin_cmd(names: tuple[str, ...]) -> None:
    """Run the conformance kit on the installed optimizer(s), task(s) or metric(s) NAMES; exit 1 if any check
    fails."""
    from optbench.errors import UnknownNameError
    from optbench.kits import check_metric, check_task
    from optbench.testing import check_optimizer

    cli = cli_context()
    registry = cli.registry
    kits = {"optimizer": check_optimizer, "task": check_task, "metric": check_metric}
    plan = []
    for name in names:  # an unknown name is a usage error (exit 2, with close matches of every kind)
        kinds = [k for k in kits if name in registry.entries[k]]
        if not kinds:
            for k in kits:
                if name in registry.conflicts[k]:
                    registry.get(k, name)  # raises: the two plugins that claim it
            every = [n for k in kits for n in registry.entries[k]]
            raise UnknownNameError("optimizer, task or metric", name, every)
        plan += [(k, name) for k in kinds]
    console = cli.console
    failures = 0
    for kind, name in plan:
        entry = registry.get(kind, name)
        results = kits[kind](name, registry)
        failed = [r for r in results if not r.passed]
        failures += len(failed)
        table = Table(title=f"{kind} {name} ({entry.distribution} {entry.version})".strip(), title_justify="left")
        table.add_column("check", style="bold", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("detail")
        for r in results:
            table.add_row(r.check, "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]", r.detail)
        console.print(table)
        verdict = "[green]conforms[/green]" if not failed else f"[bold red]{len(failed)} check(s) failed[/bold red]"
        console.print(f"{name}: {verdict}")
    click.get_current_context().exit(1 if failures else 0)
