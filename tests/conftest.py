"""Shared fixtures: a CLI runner and a fresh registry, so tests never depend on each other's state."""

from __future__ import annotations

import os
import tempfile

import pytest
from click.testing import CliRunner

from optbench.registry import load_registry

# `optbench list` caches its listing; tests keep theirs out of the user's cache directory
os.environ["OPTBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="optbench-test-cache-")


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
