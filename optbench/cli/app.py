"""The `optbench` command group: turns user errors into one sentence and Ctrl-C into exit code 130.

Each command lives in its own module; this one only assembles them. Command modules import click and rich
at most at import time, so `optbench --help` stays fast; engine modules are imported inside the commands.
"""

from __future__ import annotations

import sys

import click

from optbench.cli.context import CliContext
from optbench.errors import OptbenchError


class OptbenchGroup(click.Group):
    """Turns OptbenchError into one clear line and Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        err = ctx.ensure_object(CliContext).err_console
        try:
            return super().invoke(ctx)
        except OptbenchError as exc:
            err.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False, soft_wrap=True)
            if exc.hint:
                err.print(f"  {exc.hint}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted:[/yellow] finished trials are saved; re-run the same "
                      "command to finish the rest.")
            sys.exit(130)


@click.group(cls=OptbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optbench")
@click.pass_context
def main(ctx: click.Context) -> None:
    """optbench: benchmark deep-learning optimizers on standard tasks."""
    ctx.ensure_object(CliContext)


def _add_commands() -> None:
    from optbench.cli.gate import gate_cmd
    from optbench.cli.leaderboard import leaderboard
    from optbench.cli.list import list_cmd
    from optbench.cli.plugin import check_plugin_cmd, new_plugin_cmd
    from optbench.cli.report import report_cmd
    from optbench.cli.results import results_cmd
    from optbench.cli.run import run_cmd

    for command in (list_cmd, run_cmd, results_cmd, gate_cmd, new_plugin_cmd, check_plugin_cmd, leaderboard,
                    report_cmd):
        main.add_command(command)


_add_commands()
