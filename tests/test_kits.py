"""The task and metric conformance kits catch what they claim to, and `check-plugin` runs the kit that fits
the registered kind (plugins defined here, in the test suite)."""

from __future__ import annotations

import itertools

import pytest
from optbench.plugins import torch_optim
from optbench.tasks import quadratic
from optbench.tasks.quadratic import Quadratic

import optbench.registry
from optbench import ColumnSpec, MetricSpec, Preset, TaskSpec, hookimpl
from optbench.kits import check_metric, check_task
from optbench.registry import load_registry


class _NoValidation(Quadratic):
    def evaluate(self):
        return {"test_loss": super().evaluate()["test_loss"]}


_CALLS = itertools.count()


class _Nondeterministic(Quadratic):
    """Its loss depends on state outside the seed (a process-wide counter)."""

    def loss(self, batch):
        return super().loss(batch) + 1e-3 * next(_CALLS)


def _like(kind, name: str) -> TaskSpec:
    base = next(s for s in quadratic.optbench_register_tasks() if s.name == "quadratic-well-conditioned")

    def build(preset, seed, device, data_dir=None, **options):
        task = base.build(preset, seed, device, data_dir, **options)
        task.__class__ = kind
        return task

    return TaskSpec(name, build, presets={"smoke": Preset("tiny")}, suites=())


class KitPlugin:
    @hookimpl
    def optbench_register_tasks(self):
        return [_like(_NoValidation, "no-val-task"), _like(_Nondeterministic, "noisy-task")]

    @hookimpl
    def optbench_register_metrics(self):
        return [MetricSpec("liar-metric", lambda ctx: {"something_else": 1.0}, columns=(ColumnSpec("promised"),)),
                MetricSpec("honest-metric", lambda ctx: {"norm": float(ctx.params[0].detach().norm())},
                           columns=(ColumnSpec("norm"),))]


@pytest.fixture(scope="module")
def kit_registry():
    return load_registry([("torch", torch_optim), ("quadratic", quadratic), ("kit", KitPlugin())], entry_points=False)


@pytest.mark.parametrize("name,failing", [("quadratic-well-conditioned", set()), ("no-val-task", {"evaluate"}),
                                          ("noisy-task", {"deterministic"})])
def test_task_kit(kit_registry, name, failing):
    assert {r.check for r in check_task(name, kit_registry) if not r.passed} == failing


@pytest.mark.parametrize("name,failing", [("honest-metric", set()), ("liar-metric", {"columns"})])
def test_metric_kit(kit_registry, name, failing):
    assert {r.check for r in check_metric(name, kit_registry) if not r.passed} == failing


def test_check_plugin_runs_the_kit_of_each_kind(cli, kit_registry, monkeypatch):
    monkeypatch.setattr(optbench.registry, "_CACHED", kit_registry)
    ok = cli("check-plugin", "quadratic-well-conditioned", "honest-metric")
    assert ok.exit_code == 0, ok.output
    assert "task quadratic-well-conditioned" in ok.output and "metric honest-metric" in ok.output
    bad = cli("check-plugin", "no-val-task")
    assert bad.exit_code == 1 and "val_loss" in bad.output
    unknown = cli("check-plugin", "honest-metrc")
    assert unknown.exit_code == 2 and "honest-metric" in unknown.output


@pytest.mark.parametrize("kind", ["task", "metric"])
def test_new_plugin_kinds_pass_their_own_kit(cli, tmp_path, monkeypatch, kind):
    """The generated package registers through its module's hooks and passes the kit of its kind as written."""
    import importlib

    name = f"my-{kind}"
    out = cli("new-plugin", name, "--kind", kind, "--dir", str(tmp_path / "pkg"))
    assert out.exit_code == 0, out.output
    assert f'"optbench_my_{kind}.{kind}"' in (tmp_path / "pkg" / "pyproject.toml").read_text()
    monkeypatch.syspath_prepend(str(tmp_path / "pkg" / "src"))
    module = importlib.import_module(f"optbench_my_{kind}.{kind}")
    registry = load_registry([("quadratic", quadratic), (name, module)], entry_points=False)
    assert registry.problems == []
    results = (check_task if kind == "task" else check_metric)(name, registry)
    assert all(r.passed for r in results), results
