"""Geometry metric plugins: exact spectra on quadratics, estimates vs dense eigvalsh, failure isolation,
scheduling (--metrics-every, when=final)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from curvature_models import MLPTask, mlp_eigenvalues, trained_mlp

from optbench import MetricSpec, hookimpl
from optbench.measure import compute_metrics
from optbench.registry import load_registry
from optbench.runner import RunSettings, run_trial
from optbench.trial import Trial

GEOMETRY = ["sharpness", "hessian-trace", "entropy-gap", "hessian-spectrum"]


@pytest.fixture(scope="module")
def registry():
    """One registry for the module (loading every entry point takes seconds on a busy machine)."""
    return load_registry()


def gaps_numpy(eigenvalues: np.ndarray) -> tuple[float, float]:
    a = np.abs(eigenvalues)
    p = a / a.sum()
    nz = p[p > 0]
    return math.log(a.size) + float((nz * np.log(nz)).sum()), math.log(a.size) + math.log(float((p**2).sum()))


@pytest.mark.parametrize("task_name", ["quadratic-well-conditioned", "quadratic-ill-conditioned", "quadratic-deep"])
def test_quadratics_use_the_exact_spectrum(registry, task_name):
    task = registry.task(task_name).spec.build("smoke", 0, "cpu", None)
    lam = task.exact_hessian_eigenvalues().numpy()
    res = compute_metrics([registry.metric(m) for m in GEOMETRY], task, task.parameters(), 0, task.device)
    assert not res.errors
    assert res.hvp_calls == 0
    v = res.values
    g1, g2 = gaps_numpy(lam)
    assert v["sharpness"] == pytest.approx(lam.max(), rel=1e-12)
    assert v["hessian_trace"] == pytest.approx(lam.sum(), rel=1e-12)
    assert v["entropy_gap"] == pytest.approx(g1, rel=1e-12)
    assert v["entropy_gap_alpha2"] == pytest.approx(g2, rel=1e-12)
    top = {name: val for split, name, val in res.points if split == "hessian" and name.startswith("eig_")}
    assert top["eig_1"] == pytest.approx(lam.max()) and top["eig_10"] == pytest.approx(np.sort(lam)[-10])


def test_ill_conditioned_numbers_match_the_log_spaced_spectrum(registry):
    """The done-when check: sharpness 10 and the gap of logspace(-3, 1, 200), computed here from scratch."""
    task = registry.task("quadratic-ill-conditioned").spec.build("smoke", 0, "cpu", None)
    res = compute_metrics([registry.metric("sharpness"), registry.metric("entropy-gap")], task,
                          task.parameters(), 0, task.device)
    lam = np.logspace(-3.0, 1.0, 200)
    assert res.values["sharpness"] == pytest.approx(10.0)
    assert res.values["entropy_gap"] == pytest.approx(gaps_numpy(lam)[0], rel=1e-12)


@pytest.fixture(scope="module")
def mlp_metrics(registry):
    model, x, y = trained_mlp()
    task = MLPTask(model, x, y)
    params = list(model.parameters())
    res = compute_metrics([registry.metric(m) for m in GEOMETRY], task, params, 100, x.device)
    return res, mlp_eigenvalues()


def test_mlp_metrics_against_dense_eigvalsh(mlp_metrics):
    res, eig = mlp_metrics
    assert not res.errors
    v = res.values
    assert v["sharpness"] == pytest.approx(eig[-1], rel=0.01)
    assert res.costs["sharpness"]["hvp_calls"] <= 30
    assert v["hessian_trace"] == pytest.approx(eig.sum(), rel=0.05)
    g1, g2 = gaps_numpy(eig)
    # plugin defaults (4 probes × 30 steps); the stated bound, 3%, is checked on a CNN in test_geometry_dense.py
    assert v["entropy_gap"] == pytest.approx(g1, rel=0.03)
    assert v["entropy_gap_alpha2"] == pytest.approx(g2, rel=0.03)
    assert 0 < v["entropy_gap_se"] < 0.05 * g1 and 0 < v["hessian_trace_se"] < 0.05 * abs(eig.sum())


def test_metrics_share_one_lanczos_run_and_record_hvps(mlp_metrics):
    res, _ = mlp_metrics
    costs = res.costs
    assert costs["sharpness"]["hvp_calls"] == 30
    assert costs["hessian-trace"]["hvp_calls"] == 32  # Hutch++ probes only: the Lanczos basis is shared
    assert costs["entropy-gap"]["hvp_calls"] == 4 * 30
    assert costs["hessian-spectrum"]["hvp_calls"] == 0  # reused the sharpness run and the entropy-gap SLQ
    assert res.hvp_calls == sum(c["hvp_calls"] for c in costs.values())
    assert all(c["seconds"] >= 0 for c in costs.values())


def test_spectrum_points_form_a_density(mlp_metrics):
    res, eig = mlp_metrics
    pts = {name: val for split, name, val in res.points if split == "hessian"}
    assert pts["eig_1"] == pytest.approx(eig[-1], rel=1e-3)
    assert pts["eig_2"] == pytest.approx(eig[-2], rel=1e-2)
    xs = np.array([pts[f"density_x_{j:02d}"] for j in range(64)])
    ds = np.array([pts[f"density_{j:02d}"] for j in range(64)])
    assert np.all(np.diff(xs) > 0) and np.all(ds >= 0)
    assert np.trapezoid(ds, xs) == pytest.approx(1.0, abs=0.05)


def test_metrics_are_reproducible_at_a_step(registry):
    model, x, y = trained_mlp(steps=50)
    task = MLPTask(model, x, y)
    metrics = [registry.metric("sharpness"), registry.metric("hessian-trace")]
    a = compute_metrics(metrics, task, list(model.parameters()), 3, x.device).values
    b = compute_metrics(metrics, task, list(model.parameters()), 3, x.device).values
    assert a == b


class BrokenMetrics:
    @hookimpl
    def optbench_register_metrics(self):
        def boom(ctx):
            raise RuntimeError("curvature batch exploded")

        return [MetricSpec("boom", boom), MetricSpec("nan-metric", lambda ctx: {"nan_value": float("nan")})]


def test_a_failing_metric_fails_only_itself():
    registry = load_registry(extra_plugins=[("broken-metrics", BrokenMetrics())])
    trial = Trial(task="quadratic-well-conditioned", preset="smoke", optimizer="adamw",
                  hparams=dict(registry.optimizer("adamw").spec.defaults), seed=0)
    result = run_trial(trial, registry, RunSettings(metrics=["sharpness", "boom", "nan-metric"]))
    row = result.row
    assert row["status"] == "ok"
    assert row["sharpness"] == pytest.approx(10.0)
    errors = json.loads(row["metric_errors"])
    assert "curvature batch exploded" in errors["boom"]
    assert "non-finite" in errors["nan-metric"]
    assert "nan_value" not in json.loads(row["metrics"])


def test_metrics_every_fills_curves_and_final_metrics_run_once(registry):
    trial = Trial(task="quadratic-deep", preset="smoke", optimizer="adamw",
                  hparams=dict(registry.optimizer("adamw").spec.defaults), seed=0)
    result = run_trial(trial, registry, RunSettings(metrics=["sharpness", "hessian-spectrum"], metrics_every=25))
    assert result.row["status"] == "ok"
    sharp_steps = sorted(c["step"] for c in result.curves if c["split"] == "metric" and c["name"] == "sharpness")
    budget = result.row["budget"]
    assert len(sharp_steps) >= 4 and sharp_steps[-1] == budget
    spectrum_steps = {c["step"] for c in result.curves if c["split"] == "hessian"}
    assert spectrum_steps == {budget}  # when=final: only at the end
