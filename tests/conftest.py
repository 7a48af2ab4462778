"""Shared fixtures: a CLI runner and a fresh registry, so tests never depend on each other's state."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from optbench.registry import load_registry


@pytest.fixture
def registry():
    return load_registry()


@pytest.fixture
def cli():
    from optbench.cli import main

    runner = CliRunner()

    def invoke(*args: str, **kw):
        return runner.invoke(main, list(args), catch_exceptions=False, **kw)

    return invoke
