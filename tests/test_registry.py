"""The plugin registry: one way in (entry points), clear errors for duplicates, typos and broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from optbench import OptimizerSpec, hookimpl
from optbench.errors import OptbenchError, UnknownNameError
from optbench.registry import load_registry

GOOD_PLUGIN = '''
import torch
from optbench import OptimizerSpec, hookimpl


def _build(params, **hp):
    return torch.optim.SGD(params, lr=hp["lr"])


@hookimpl
def optbench_register_optimizers():
    return [OptimizerSpec(name="{name}", build=_build, defaults={{"lr": 0.05}},
                          summary="third-party plain SGD (test fixture)")]
'''


def make_distribution(
    root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.0.1"
) -> Path:
    """Write `modules` (name -> source) and a dist-info for `dist` whose `optbench` entry points are
    `entry_points` (entry-point name -> module). Returns `root`, the folder to put on the path."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {module}\n" for ep, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[optbench]\n{lines}")
    return root


def _plugin(*names: str):
    class Plugin:
        @hookimpl
        def optbench_register_optimizers(self):
            return [OptimizerSpec(name=n, build=lambda ps, **hp: torch.optim.SGD(ps, lr=0.1)) for n in names]

    return Plugin()


def test_builtins_come_from_our_own_entry_points(registry) -> None:
    for name in ("sgd", "adamw", "lion", "lion-ib"):
        assert registry.optimizer(name).distribution == "optbench"
    assert "quadratic-well-conditioned" in registry.names("task")
    assert not [p for p in registry.problems if p.distribution == "optbench"]


def test_duplicate_name_names_both_plugins() -> None:
    with pytest.raises(OptbenchError) as info:
        load_registry([("first-plugin", _plugin("twin")), ("second-plugin", _plugin("twin"))], entry_points=False)
    msg = str(info.value)
    assert "'twin'" in msg and "first-plugin" in msg and "second-plugin" in msg


def test_duplicate_of_a_builtin_names_its_distribution(tmp_path: Path, monkeypatch) -> None:
    make_distribution(tmp_path, "optbench-clash", {"clash_plugin": GOOD_PLUGIN.format(name="adamw")},
                      {"clash": "clash_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(OptbenchError) as info:
        load_registry()
    msg = str(info.value)
    assert "optbench-clash" in msg and "optbench-optimizers-torch" in msg and "'adamw'" in msg


def test_unknown_name_suggests_the_close_match(registry) -> None:
    with pytest.raises(UnknownNameError) as info:
        registry.optimizer("lion_ib")
    assert info.value.message == "unknown optimizer 'lion_ib'; did you mean 'lion-ib'?"
    with pytest.raises(UnknownNameError) as info:
        registry.task("quadratic-ill-conditoned")
    assert "quadratic-ill-conditioned" in info.value.matches
    with pytest.raises(UnknownNameError) as info:
        registry.optimizer("zzzzzz")
    assert info.value.matches == [] and "did you mean" not in info.value.message


def test_broken_plugin_is_reported_and_others_load(tmp_path: Path, monkeypatch) -> None:
    make_distribution(
        tmp_path,
        "optbench-half-broken",
        {"good_tp_plugin": GOOD_PLUGIN.format(name="tp-sgd"), "broken_tp_plugin": "import no_such_module_xyz\n"},
        {"tp-good": "good_tp_plugin", "tp-broken": "broken_tp_plugin"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_registry()
    problems = [p for p in registry.problems if p.plugin == "tp-broken"]
    assert len(problems) == 1
    assert problems[0].distribution == "optbench-half-broken"
    assert "optbench-half-broken" in str(problems[0]) and "no_such_module_xyz" in str(problems[0])
    assert registry.optimizer("tp-sgd").distribution == "optbench-half-broken"
    assert {"sgd", "adamw", "lion", "lion-ib"} <= set(registry.names("optimizer"))


def test_a_plugin_whose_hook_raises_is_reported(tmp_path: Path) -> None:
    class Raises:
        @hookimpl
        def optbench_register_optimizers(self):
            raise RuntimeError("boom")

    registry = load_registry([("raiser", Raises()), ("fine", _plugin("fine-opt"))], entry_points=False)
    assert [p.plugin for p in registry.problems] == ["raiser"]
    assert "boom" in str(registry.problems[0])
    assert registry.names("optimizer") == ["fine-opt"]


def _optbench(*args: str, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).parent / "optbench"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=120)


def test_third_party_distribution_lists_and_runs(tmp_path: Path) -> None:
    site = make_distribution(
        tmp_path / "site",
        "optbench-thirdparty-demo",
        {"demo_tp_plugin": GOOD_PLUGIN.format(name="demo-sgd"), "demo_tp_broken": "raise ImportError('nope')\n"},
        {"demo": "demo_tp_plugin", "demo-broken": "demo_tp_broken"},
    )
    listed = _optbench("list", "optimizers", "--json", pythonpath=site)
    assert listed.returncode == 0, listed.stderr
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert entries["demo-sgd"]["plugin"] == "demo"
    assert entries["demo-sgd"]["distribution"] == "optbench-thirdparty-demo"
    assert "lion-ib" in entries  # the broken sibling did not take the others down
    assert "optbench-thirdparty-demo" in listed.stderr and "demo-broken" in listed.stderr

    results = tmp_path / "results"
    ran = _optbench("run", "-o", "demo-sgd", "-t", "quadratic-well-conditioned", "--no-metrics",
                    "--results", str(results), pythonpath=site)
    assert ran.returncode == 0, ran.stderr
    files = list((results / "trials").glob("*.parquet"))
    assert len(files) == 1
    row = pd.read_parquet(files[0]).iloc[0]
    assert row["optimizer"] == "demo-sgd" and row["status"] == "ok", row["error"]
    assert json.loads(row["hparams"]) == {"lr": 0.05}
