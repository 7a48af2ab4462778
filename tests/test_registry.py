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
from optbench.plugins import torch_optim

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


def test_duplicate_name_names_both_plugins_and_leaves_the_rest_usable() -> None:
    registry = load_registry([("first-plugin", _plugin("twin", "solo-a")), ("second-plugin", _plugin("twin")),
                              ("third-plugin", _plugin("twin", "solo-c"))], entry_points=False)
    [problem] = [str(p) for p in registry.problems]
    assert "'twin'" in problem and all(f"{n}-plugin" in problem for n in ("first", "second", "third"))
    with pytest.raises(OptbenchError) as info:  # the name itself: unusable, with the same sentence
        registry.optimizer("twin")
    assert "first-plugin" in info.value.message and "third-plugin" in info.value.message
    assert "twin" not in registry.names("optimizer")
    assert registry.optimizer("solo-a").plugin == "first-plugin" and registry.optimizer("solo-c")


def test_a_name_clash_leaves_other_commands_working(cli, monkeypatch) -> None:
    import optbench.registry

    clash = load_registry([("torch", torch_optim), ("copy-plugin", _plugin("adamw"))], entry_points=False)
    monkeypatch.setattr(optbench.registry, "_CACHED", clash)
    listed = cli("list", "optimizers", "--json")
    assert listed.exit_code == 0 and "sgd" in listed.stdout and "registered by" in listed.stderr
    run = cli("run", "-o", "adamw", "-t", "quadratic-well-conditioned", "--dry-run")
    assert run.exit_code == 2 and "copy-plugin" in run.output and "Traceback" not in run.output


def test_a_misspelt_hook_is_reported() -> None:
    class Misspelt:
        @hookimpl
        def optbench_register_optimizer(self):  # singular: no such hook
            return []

    registry = load_registry([("typo-plugin", Misspelt()), ("fine", _plugin("fine-opt"))], entry_points=False)
    [problem] = registry.problems
    assert problem.plugin == "typo-plugin" and "optbench_register_optimizer " in str(problem)
    assert registry.names("optimizer") == ["fine-opt"]


def test_duplicate_of_a_builtin_names_its_distribution(tmp_path: Path, monkeypatch) -> None:
    make_distribution(tmp_path, "optbench-clash", {"clash_plugin": GOOD_PLUGIN.format(name="adamw")},
                      {"clash": "clash_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_registry()
    with pytest.raises(OptbenchError) as info:
        registry.optimizer("adamw")
    msg = str(info.value)
    assert "optbench-clash" in msg and "optbench-optimizers-torch" in msg and "'adamw'" in msg
    assert registry.optimizer("sgd").distribution == "optbench"


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
    # a guard against a hang, not a timing check: a run took 138 s at load average 10 on 2 cores
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=900)


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


class _FailingObserver:
    """An observer plugin whose hook raises on every trial."""

    @hookimpl
    def optbench_trial_finished(self, trial):
        raise RuntimeError(f"observer broke on {trial['optimizer']}")


def test_observer_failure_is_printed_after_the_run_and_the_row_is_kept(cli, monkeypatch, tmp_path) -> None:
    from optbench.tasks import quadratic

    import optbench.registry

    registry = load_registry([("torch", torch_optim), ("quadratic", quadratic), ("watcher", _FailingObserver())],
                             entry_points=False)
    monkeypatch.setattr(optbench.registry, "_CACHED", registry)
    out = cli("run", "-o", "sgd", "-t", "quadratic-well-conditioned", "--no-metrics", "--results", str(tmp_path))
    assert out.exit_code == 0, out.output
    said = " ".join(out.stderr.split())  # rich wraps long lines
    assert said.count("observer broke on sgd") == 1
    assert "plugin 'watcher' (from local) failed: optbench_trial_finished raised RuntimeError" in said
    assert out.output.rindex("observer broke") > out.output.index("ran 1 trial")  # after the run's report
    assert len(list((tmp_path / "trials").glob("*.parquet"))) == 1


def test_selection_rules_are_shared_by_the_registry_and_list(cli, monkeypatch) -> None:
    import optbench.registry
    from optbench.selection import Selection

    registry = load_registry([("lib-bridge", _plugin("re-sgd", "re-adam")), ("mine", _plugin("my-sgd", "my-adam"))],
                             entry_points=False)
    assert registry.select("optimizer", Selection(exclude=("*-bridge",))) == ["my-adam", "my-sgd"]
    assert registry.select("optimizer", Selection(patterns=("*sgd",), exclude=("my-*",))) == ["re-sgd"]
    assert registry.select("optimizer", Selection(distribution="elsewhere")) == []
    monkeypatch.setattr(optbench.registry, "_CACHED", registry)
    out = cli("list", "optimizers", "--distribution", "local", "--exclude", "*-bridge", "--exclude", "*adam", "--names")
    assert out.exit_code == 0 and out.stdout.split() == ["my-sgd"]


def test_spec_contracts_are_checked_at_registration() -> None:
    from optbench import MetricSpec, TaskSpec

    class Sloppy:
        @hookimpl
        def optbench_register_tasks(self):
            return [TaskSpec("suite-typo", build=lambda *a, **k: None, suites="default")]

        @hookimpl
        def optbench_register_metrics(self):
            return [MetricSpec("not-callable", compute="sharpness")]

    registry = load_registry([("sloppy", Sloppy()), ("fine", _plugin("fine-opt"))], entry_points=False)
    said = " ".join(str(p) for p in registry.problems)
    assert "suites must be a tuple" in said and "compute is not callable" in said
    assert registry.names("task") == [] and registry.names("metric") == []
    assert registry.names("optimizer") == ["fine-opt"]
