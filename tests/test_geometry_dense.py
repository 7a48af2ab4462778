"""The default geometry metrics against dense eigvalsh on a 2,738-parameter CNN trained on real digits, at
three trained states: the errors docs/metrics.md states (α=1 and α=2 gaps within 3%, trace within 5%,
λmax within 1e-5 relative) must hold on the network path (HVPs, no exact spectrum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_models import DigitsCNNTask, dense_gaps, dense_hessian, trained_digits_cnn

from optbench.measure import compute_metrics
from optbench.registry import load_registry

STATES = (30, 150, 600)  # Adam steps on digits: early, mid, late training


@pytest.mark.slow
def test_defaults_against_dense_eigvalsh_on_a_trained_cnn():
    registry = load_registry()
    metrics = [registry.metric(m) for m in ("sharpness", "hessian-trace", "entropy-gap")]
    for steps in STATES:
        model, x, y = trained_digits_cnn(steps)
        params = list(model.parameters())
        n = sum(p.numel() for p in params)
        assert n >= 2000
        hess = dense_hessian(torch.nn.functional.cross_entropy(model(x), y), params, chunk=1024)
        eig = np.linalg.eigvalsh(hess.double().numpy())
        res = compute_metrics(metrics, DigitsCNNTask(model, x, y), params, steps, torch.device("cpu"))
        assert not res.errors, res.errors
        v = res.values
        g1, g2 = dense_gaps(eig)
        assert v["sharpness"] == pytest.approx(eig[-1], rel=1e-5), steps
        assert v["hessian_trace"] == pytest.approx(eig.sum(), rel=0.05), steps
        assert v["entropy_gap"] == pytest.approx(g1, rel=0.03), steps
        assert v["entropy_gap_alpha2"] == pytest.approx(g2, rel=0.03), steps
        assert 0 <= v["entropy_gap"] <= np.log(n)
