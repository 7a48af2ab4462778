"""Entropy gaps estimated on the network path (HVPs → Lanczos → SLQ, no exact spectrum) stay in [0, log n]
and carry finite standard errors, near isotropy and near rank-deficiency; costs and errors reach the row."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from curvature_models import MatrixTask, dense_gaps, rotated
from hypothesis import given, settings
from hypothesis import strategies as st

from optbench import curvature as cv
from optbench.measure import compute_metrics
from optbench.registry import load_registry
from optbench.runner import RunSettings, run_trial
from optbench.trial import Trial

GAP_KEYS = ("entropy_gap", "entropy_gap_alpha2")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def network_path(registry, matrix: torch.Tensor, step: int = 0):
    task = MatrixTask(matrix)
    metrics = [registry.metric(m) for m in ("sharpness", "hessian-trace", "entropy-gap")]
    res = compute_metrics(metrics, task, task.parameters(), step, torch.device("cpu"))
    assert not res.errors, res.errors
    return res


def assert_bounded(values: dict[str, float], n: int) -> None:
    for key in GAP_KEYS:
        assert 0.0 <= values[key] <= math.log(n), (key, values[key])
        assert math.isfinite(values[f"{key}_se"]) and values[f"{key}_se"] >= 0


def test_flat_spectrum_through_the_network_path_is_in_bounds(registry):
    """0.5·Σ cᵢxᵢ², cᵢ ∈ [1, 1.1], n = 500, no exact spectrum given: a gap in [0, log n] near the exact 3.8e-4."""
    c = np.random.default_rng(0).uniform(1.0, 1.1, 500)
    for step in range(5):
        res = network_path(registry, torch.from_numpy(np.diag(c)), step)
        assert_bounded(res.values, 500)
        want1, want2 = dense_gaps(c)
        assert res.values["entropy_gap"] == pytest.approx(want1, abs=5e-3)
        assert res.values["entropy_gap_alpha2"] == pytest.approx(want2, abs=5e-3)
        assert res.values["hessian_trace"] == pytest.approx(c.sum(), rel=0.01)


near_isotropic = st.builds(
    lambda n, spread, seed: 1.0 + spread * np.random.default_rng(seed).random(n),
    st.integers(40, 200), st.floats(0.0, 0.2), st.integers(0, 2**16),
)


def _rank_deficient(n: int, rank: int, scale_decades: float, negative: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lam = np.zeros(n)
    lam[:rank] = 10 ** rng.uniform(-scale_decades, 0.0, rank)
    lam[:rank] *= np.where(rng.random(rank) < negative, -0.1, 1.0)
    lam[rank:] = rng.normal(0, 1e-7, n - rank)  # the near-null bulk, both signs
    return lam


rank_deficient = st.builds(
    _rank_deficient, st.integers(40, 200), st.integers(1, 12), st.floats(0.0, 4.0), st.floats(0.0, 0.5),
    st.integers(0, 2**16),
)


@settings(max_examples=12, deadline=None)
@given(near_isotropic)
def test_gap_in_bounds_near_isotropy_on_the_slq_path(registry, lam):
    res = network_path(registry, rotated(lam))
    assert_bounded(res.values, lam.size)
    assert res.values["entropy_gap"] <= dense_gaps(lam)[0] + 0.02


@settings(max_examples=12, deadline=None)
@given(rank_deficient)
def test_gap_in_bounds_near_rank_deficiency_on_the_slq_path(registry, lam):
    res = network_path(registry, rotated(lam))
    assert_bounded(res.values, lam.size)
    # a handful of nonzero eigenvalues: Lanczos finds them all, so the estimate is close to exact
    want1, want2 = dense_gaps(lam)
    assert res.values["entropy_gap"] == pytest.approx(want1, abs=0.02 * math.log(lam.size))


def test_clamp_and_standard_error_of_the_gap_estimator():
    n = 10
    flat = torch.tensor([[10.0, 0.0, 10.0], [10.0, 0.0, 10.0]], dtype=torch.float64)  # Σ|λ|log|λ| = 0: H = log 10
    est = cv.renyi_gaps_with_se(n, flat)
    assert est.gap1 == 0.0 and est.se1 == 0.0  # the rounding below zero is clamped
    noisy = torch.tensor([[10.0, 1.0, 12.0], [11.0, 2.5, 14.0], [9.0, 0.2, 11.0]], dtype=torch.float64)
    est = cv.renyi_gaps_with_se(n, noisy)
    assert 0 <= est.gap1 <= math.log(n) and est.se1 > 0
    # the delta-method SE agrees with the spread of the gap over resampled probe sets
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(400):
        rows = noisy[rng.integers(0, 3, 3)]
        t1, s, _ = rows.mean(0).tolist()
        boots.append(math.log(n) - math.log(t1) + s / t1)
    assert est.se1 == pytest.approx(np.std(boots) * math.sqrt(3 / 2), rel=0.35)


def test_row_records_costs_and_standard_errors(registry):
    trial = Trial(task="quadratic-well-conditioned", preset="smoke", optimizer="adamw",
                  hparams=dict(registry.optimizer("adamw").spec.defaults), seed=0)
    row = run_trial(trial, registry, RunSettings(metrics=["sharpness", "hessian-trace", "entropy-gap"])).row
    costs = json.loads(row["metric_costs"])
    assert set(costs) == {"sharpness", "hessian-trace", "entropy-gap"}
    assert all(c["hvp_calls"] == 0 and c["seconds"] >= 0 for c in costs.values())  # exact spectrum: no HVPs
    for col in ("sharpness_se", "hessian_trace_se", "entropy_gap_se", "entropy_gap_alpha2_se"):
        assert row[col] == 0.0
