"""A built wheel, installed non-editable into a fresh venv, finds its own plugins and tasks.

This is what proves the package-dir mapping (plugins/ -> optbench.plugins, tasks/ -> optbench.tasks) and the
entry points survive packaging; the editable install used for development would hide a mistake in either.
The new venv sees the outer venv's third-party packages (torch, ...) through a .pth file, so nothing is
downloaded or reinstalled; it must not see the editable optbench.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    # build from a copy so no build/ or egg-info lands in the (shared) checkout
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    for folder in ("optbench", "plugins", "tasks"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", dist, src)
    (wheel,) = dist.glob("optbench-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    new_site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (new_site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    where = _run(py, "-c", "import optbench.plugins.lion as m, optbench.tasks.quadratic as t; "
                 "print(m.__file__); print(t.__file__)", env=env, cwd=tmp_path)
    assert all(line.startswith(str(new_site)) for line in where.split()), where  # the wheel, not the checkout

    # the console script itself, then the other commands in one process (each start imports every plugin)
    exe = venv / "bin" / "optbench"
    optimizers = {e["name"]: e for e in json.loads(_run(exe, "list", "optimizers", "--json", env=env, cwd=tmp_path))}
    assert optimizers["lion-ib"]["distribution"] == "optbench"
    assert {"sgd", "adamw", "lion"} <= set(optimizers)

    results = tmp_path / "results"
    script = (
        "import sys\n"
        "from optbench.cli import main\n"
        "def cli(*args):\n"
        "    try:\n"
        "        main(list(args), standalone_mode=False)\n"
        "    except SystemExit as exc:\n"
        "        sys.exit(exc.code)\n"
        "print('<<TASKS', flush=True)\n"
        "cli('list', 'tasks', '--json')\n"
        "print('TASKS>>', flush=True)\n"
        "cli('run', '-o', 'lion-ib', '-t', 'quadratic-well-conditioned', '--no-metrics', "
        f"'--results', {str(results)!r})\n"
    )
    out = _run(py, "-c", script, env=env, cwd=tmp_path)
    listed = out.split("<<TASKS", 1)[1].split("TASKS>>", 1)[0]
    tasks = {e["name"] for e in json.loads(listed)}
    assert {"quadratic-well-conditioned", "quadratic-ill-conditioned", "quadratic-deep"} <= tasks
    (row_file,) = (results / "trials").glob("*.parquet")
    row = pd.read_parquet(row_file).iloc[0]
    assert row["optimizer"] == "lion-ib" and row["status"] == "ok", row["error"]
