"""Fixtures for the differential (fidelity) tests: `fidelity` checks a pair of optimizers with the harness and
records the measured deviation, which the end-of-run summary lists (`pytest tests/fidelity -q` shows it), so the
numbers quoted in docs/optimizers.md come from a command anyone can rerun."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Comparison, assert_matches

_MEASURED: list[tuple[str, Comparison]] = []


class Fidelity:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __call__(self, ours: Any, ref: Any, **kw: Any) -> Comparison:
        """harness.assert_matches, recorded for the summary."""
        cmp = assert_matches(ours, ref, **kw)
        _MEASURED.append((self.nodeid, cmp))
        return cmp

    def record(self, cmp: Comparison) -> Comparison:
        """Record a comparison a test checked itself (e.g. an expected, documented deviation)."""
        _MEASURED.append((self.nodeid, cmp))
        return cmp


@pytest.fixture
def fidelity(request: pytest.FixtureRequest) -> Fidelity:
    return Fidelity(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _MEASURED:
        return
    terminalreporter.section("fidelity: measured deviations (max |ours - ref| / max |ref| over tensors)")
    for nodeid, cmp in _MEASURED:
        terminalreporter.write_line(f"{cmp.deviation:9.2e}  moved {cmp.travel:8.2e}  {nodeid.split('::', 1)[-1]}")
