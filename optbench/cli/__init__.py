"""The `optbench` command line, one module per command. It parses, validates and prints; the engine
modules do the work. Errors a user can fix print one sentence and what to do (exit 2); Ctrl-C keeps
finished trials and exits 130."""

from optbench.cli.app import main

__all__ = ["main"]
