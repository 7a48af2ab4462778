"""The budget sweep behind docs/metrics.md's cost argument: its floor and its error measurement must be right
on matrices whose answers are known, and a budget set for a sweep must not leak into later metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_models import rotated
from optbench.plugins import geometry

from benchmarks.bench_metrics import dense_truth
from benchmarks.geometry_frontier import hutchpp_floor, worst_errors
from optbench.registry import load_registry


def test_the_hutchpp_floor_is_the_rank_for_a_low_rank_matrix_and_zero_for_the_identity():
    lam = np.zeros(60)
    lam[:3] = [5.0, 2.0, 1.0]
    assert hutchpp_floor(rotated(lam)) == (3, 3, 0)  # deflating the 3 eigenvectors leaves nothing to sample
    # Rademacher probes read the trace of a diagonal matrix exactly (zᵢ² = 1): the floor is 0 products
    assert hutchpp_floor(torch.eye(40, dtype=torch.float64))[0] == 0


def test_a_flat_spectrum_needs_probes_and_the_floor_grows_with_the_required_precision():
    lam = np.random.default_rng(0).uniform(-1.0, 2.0, 200)
    h = rotated(lam)
    loose, tight = hutchpp_floor(h, rel_se=0.1), hutchpp_floor(h, rel_se=0.02)
    assert 0 < loose[0] < tight[0]


def test_the_sweep_measures_small_errors_at_the_default_budget_and_large_ones_at_a_tiny_budget():
    registry = load_registry()
    lam = np.concatenate([[40.0, 20.0, 10.0], np.random.default_rng(1).uniform(-0.5, 1.5, 297)])
    h = rotated(lam)
    want = dense_truth(np.sort(lam))
    default = worst_errors(h, want, 2, registry)
    assert default["sharpness"] < 1e-5
    with geometry.budget(geometry.Budget(12, 0, 1, 2)):
        tiny = worst_errors(h, want, 2, registry)
    assert tiny["entropy_gap"] > 2 * default["entropy_gap"]
    assert geometry.Budget() == geometry.BUDGET  # restored after the block
    assert geometry.Budget().products == 182


def test_a_failing_sweep_still_restores_the_default_budget():
    with pytest.raises(RuntimeError, match="inside"), geometry.budget(geometry.Budget(12, 1, 1, 1)):
        assert geometry.Budget(12, 1, 1, 1) == geometry.BUDGET
        raise RuntimeError("inside the block")
    assert geometry.Budget() == geometry.BUDGET


def test_a_budget_below_the_lanczos_floor_is_refused_rather_than_silently_raised():
    # _eigen runs at least 12 steps: a smaller budget would under-count its products in the sweep's table
    with pytest.raises(ValueError, match="12 Lanczos"):
        geometry.Budget(4, 0, 1, 2)
