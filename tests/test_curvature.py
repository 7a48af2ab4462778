"""The curvature engine against dense eigvalsh: Lanczos λmax, Hutch++ trace, SLQ entropy gaps, a saddle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from curvature_models import mlp_eigenvalues, trained_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from optbench import curvature as cv


def gaps_numpy(eigenvalues: np.ndarray) -> tuple[float, float]:
    """docs/metrics.md: p = |λ|/Σ|λ|, gap_α = log n − H_α (written independently of optbench.curvature)."""
    a = np.abs(eigenvalues)
    p = a / a.sum()
    nz = p[p > 0]
    return math.log(a.size) + float((nz * np.log(nz)).sum()), math.log(a.size) + math.log(float((p**2).sum()))


@pytest.fixture(scope="module")
def mlp():
    model, x, y = trained_mlp()
    params = list(model.parameters())
    eig = mlp_eigenvalues()
    grads = torch.autograd.grad(torch.nn.functional.mse_loss(model(x), y), params, create_graph=True)
    count = [0]

    def hvp(vs):
        count[0] += 1
        return [o.detach() for o in torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)]

    return cv.flat_operator(hvp, params), sum(p.numel() for p in params), eig, count


def test_model_is_in_the_briefed_size_range(mlp):
    _, n, eig, _ = mlp
    assert 2000 <= n <= 5000 and eig.size == n


def test_lanczos_sharpness_within_one_percent_in_30_hvps(mlp):
    matvec, n, eig, count = mlp
    count[0] = 0
    top = cv.top_eigen(matvec, n, cv.make_generator(0), "cpu", max_steps=30, tol=1e-3)
    assert count[0] <= 30
    assert abs(top.lambda_max - eig[-1]) <= 0.01 * abs(eig[-1])


def test_hutchpp_trace_within_five_percent(mlp):
    matvec, n, eig, count = mlp
    gen = cv.make_generator(1)
    top = cv.top_eigen(matvec, n, gen, "cpu", max_steps=30, tol=None)
    tr, tr2 = cv.hutchpp_traces(matvec, top.run, gen, probes=16)
    assert abs(tr - eig.sum()) <= 0.05 * abs(eig.sum())
    assert abs(tr2 - (eig**2).sum()) <= 0.05 * (eig**2).sum()


def test_deflated_slq_entropy_gaps_within_two_percent(mlp):
    matvec, n, eig, count = mlp
    gen = cv.make_generator(2)
    top = cv.top_eigen(matvec, n, gen, "cpu", max_steps=30, tol=1e-3)
    idx = top.converged()
    quad = cv.slq(matvec, n, gen, "cpu", probes=8, steps=20, deflate=top.run.ritz_vectors(top.s[:, idx]),
                  deflated_values=top.values[idx])
    g1, g2 = cv.renyi_gaps_from_sums(n, quad.trace(torch.abs), quad.trace(lambda t: cv.xlogx(t.abs())),
                                       quad.trace(lambda t: t * t))
    want1, want2 = gaps_numpy(eig)
    assert abs(g1 - want1) <= 0.02 * want1
    assert abs(g2 - want2) <= 0.02 * want2


def test_same_seed_same_numbers(mlp):
    matvec, n, _, _ = mlp
    a = cv.top_eigen(matvec, n, cv.make_generator(7), "cpu", max_steps=10, tol=1e-9)
    b = cv.top_eigen(matvec, n, cv.make_generator(7), "cpu", max_steps=10, tol=1e-9)
    assert torch.equal(a.values, b.values)


def saddle(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """A rotated indefinite matrix whose most negative eigenvalue is larger in size than the largest."""
    rng = np.random.default_rng(seed)
    lam = np.concatenate([rng.uniform(0.1, 2.0, n - 3), [3.0, -0.5, -5.0]])
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.from_numpy((q * lam) @ q.T), lam


def test_saddle_sharpness_is_algebraic_max_and_entropy_uses_abs():
    m, lam = saddle()
    n = lam.size
    top = cv.top_eigen(cv.dense_operator(m), n, cv.make_generator(0), "cpu", max_steps=n, tol=None)
    assert top.lambda_max == pytest.approx(3.0, rel=1e-8)  # not 5.0 = |λmin|
    want1, want2 = gaps_numpy(lam)
    assert cv.renyi_gaps_from_eigenvalues(torch.from_numpy(lam)) == pytest.approx((want1, want2), rel=1e-12)
    # a full-length Lanczos converges every pair: deflated SLQ is then exact, signs included
    idx = top.converged(rtol=1e-8)
    assert idx.numel() == n
    quad = cv.slq(cv.dense_operator(m), n, cv.make_generator(1), "cpu", probes=2, steps=5,
                  deflate=top.run.ritz_vectors(top.s[:, idx]), deflated_values=top.values[idx])
    got = cv.renyi_gaps_from_sums(n, quad.trace(torch.abs), quad.trace(lambda t: cv.xlogx(t.abs())),
                                    quad.trace(lambda t: t * t))
    assert got == pytest.approx((want1, want2), rel=1e-6)
    assert quad.trace(lambda t: t) == pytest.approx(lam.sum(), rel=1e-6)


def test_zero_hessian_is_a_clear_error():
    with pytest.raises(ValueError, match="zero"):
        cv.renyi_gaps_from_eigenvalues(torch.zeros(5))


spectra = st.lists(st.floats(1e-3, 1e3, allow_nan=False), min_size=2, max_size=60)


@settings(max_examples=200, deadline=None)
@given(spectra)
def test_gap_bounds_on_random_psd_spectra(values):
    lam = torch.tensor(values, dtype=torch.float64)
    g1, g2 = cv.renyi_gaps_from_eigenvalues(lam)
    n, kappa = lam.numel(), float(lam.max() / lam.min())
    eps = 1e-9
    assert -eps <= g1 <= math.log(n) + eps
    assert -eps <= g2 <= math.log(n) + eps
    assert g1 <= math.log(kappa) + eps
    assert g1 <= g2 + eps  # H_2 ≤ H_1 (Rényi entropies decrease in α)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 500), st.floats(1e-6, 1e6))
def test_gap_is_zero_for_a_multiple_of_identity(n, c):
    g1, g2 = cv.renyi_gaps_from_eigenvalues(torch.full((n,), c, dtype=torch.float64))
    assert abs(g1) < 1e-9 and abs(g2) < 1e-9
