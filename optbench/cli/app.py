"""The `optbench` command group: turns user errors into one sentence, Ctrl-C into exit code 130 and
SIGTERM (Slurm, `timeout`, a container stop) into the same clean stop with exit code 143.

Each command lives in its own module; this one only assembles them. Command modules import click and rich
at most at import time, so `optbench --help` stays fast; engine modules are imported inside the commands.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from optbench.cli.context import CliContext
from optbench.errors import OptbenchError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds exactly like Ctrl-C (claims released,
    workers stopped, no partial file)."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the command runs, SIGTERM raises `Terminated` (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the unwinding short
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class OptbenchGroup(click.Group):
    """Turns OptbenchError into one clear line, Ctrl-C into exit code 130 and SIGTERM into 143."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        err = ctx.ensure_object(CliContext).err_console
        try:
            with sigterm_unwinds():
                return super().invoke(ctx)
        except OptbenchError as exc:
            err.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False, soft_wrap=True)
            if exc.hint:
                err.print(f"  {exc.hint}", highlight=False, soft_wrap=True)
            if getattr(exc, "exit_now", False):  # a thread is stuck in a library call (Ray connecting): don't wait
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(2)
            sys.exit(2)
        except Terminated:
            err.print("[yellow]terminated:[/yellow] finished trials are saved; re-run the same "
                      "command to finish the rest.")
            sys.exit(143)
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
    from optbench.cli.compact import compact_cmd
    from optbench.cli.gate import gate_cmd
    from optbench.cli.leaderboard import leaderboard
    from optbench.cli.list import list_cmd
    from optbench.cli.plugin import check_plugin_cmd, new_plugin_cmd
    from optbench.cli.report import report_cmd
    from optbench.cli.results import results_cmd
    from optbench.cli.run import run_cmd
    from optbench.cli.tune import tune_cmd

    for command in (list_cmd, run_cmd, results_cmd, gate_cmd, new_plugin_cmd, check_plugin_cmd, leaderboard,
                    report_cmd, tune_cmd, compact_cmd):
        main.add_command(command)


_add_commands()
