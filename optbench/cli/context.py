"""What every command shares, handed down through click's context object: the consoles and the registry.

The registry is loaded on first use, not when the CLI starts, so `optbench --help` and commands that only
read Parquet never import the plugins (and with them torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from optbench.registry import Registry

DEFAULT_RESULTS = "optbench-results"


class ResultsRoot(click.ParamType):
    """A results root: a local directory (given back as a Path) or a filesystem URI such as s3://bucket/runs
    or file:///data/runs (given back as the string, which pathlib would mangle)."""

    name = "DIR|URI"

    def convert(self, value, param, ctx):
        from pathlib import Path

        if isinstance(value, Path) or "://" not in str(value):
            return Path(value)
        return str(value)


RESULTS_ROOT = ResultsRoot()


class CliContext:
    """The state one `optbench` invocation shares between the group and its commands."""

    def __init__(self) -> None:
        self.console = Console()
        self.err_console = Console(stderr=True)
        self._registry: Registry | None = None

    def warn(self, message: str) -> None:
        self.err_console.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)

    @property
    def registry(self) -> Registry:
        """The installed plugins; the plugins' load problems are printed once, as warnings."""
        if self._registry is None:
            from optbench.registry import get_registry

            self._registry = get_registry()
            for problem in self._registry.problems:
                self.warn(str(problem))
        return self._registry

    def optional_registry(self) -> Registry | None:
        """The registry, or None (with a warning) where it cannot load; for commands that can do without it."""
        try:
            return self.registry
        except Exception as exc:  # noqa: BLE001 - e.g. a name clash between plugins: carry on without plugins
            self.warn(f"plugins not loaded ({exc}); optimizer pages use the results' hyperparameters as defaults.")
            return None


def cli_context() -> CliContext:
    """The CliContext of the running invocation (created on demand when a command is invoked on its own)."""
    ctx = click.get_current_context()
    return ctx.ensure_object(CliContext)
