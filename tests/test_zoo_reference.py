"""Sophia-H (pytorch-optimizer) and Sophia-G (sophia-opt) on a coupled non-quadratic test function: >= 20 steps
from identical starting points, parameters compared to <= 1e-5. A quick complement to the real-network
differential tests in tests/fidelity/ (diffGrad and FAdam are checked there only).
"""

from __future__ import annotations

import pytest
import torch
from optbench.plugins.sophia import Sophia

pto = pytest.importorskip("pytorch_optimizer")
sophia_opt = pytest.importorskip("sophia_opt")

STEPS = 25
SHAPES = [(7, 5), (11,), (3, 2, 4)]


def _params(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    a = [torch.randn(s, generator=gen) for s in SHAPES]
    return [t.clone().requires_grad_(True) for t in a], [t.clone().requires_grad_(True) for t in a]


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(s, generator=gen) for s in SHAPES]


def _hessian_loss(ps: list[torch.Tensor]) -> torch.Tensor:
    """Non-quadratic, coupled: its Hessian changes with the iterate, so HVPs are exercised for real."""
    total = torch.zeros(())
    for i, p in enumerate(ps):
        x = p.reshape(-1)
        total = total + 0.5 * (1 + i) * (x * x).sum() + 0.25 * (x**4).sum() + x[:-1].mul(x[1:]).sum() * 0.3
    return total


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sophia_h_matches_pytorch_optimizer(weight_decay: float) -> None:
    lr, rho, eps, k = 1e-2, 0.05, 1e-12, 3
    ps, qs = _params()
    ours = Sophia(ps, lr=lr, rho=rho, eps=eps, k=k, weight_decay=weight_decay, estimator="hutchinson")
    # pytorch-optimizer writes lr' * clip(m / max(h, eps'), p): lr' = lr/rho, p = rho, eps' = eps/rho, wd' = wd*rho
    ref = pto.SophiaH(qs, lr=lr / rho, p=rho, eps=eps / rho, weight_decay=weight_decay * rho, update_period=k,
                      betas=(0.965, 0.99))
    for t in range(1, STEPS + 1):
        for opt, params in ((ours, ps), (ref, qs)):
            for p in params:
                p.grad = None
            _hessian_loss(params).backward(create_graph=True)
            torch.manual_seed(t)  # the same Hutchinson probes u for both
            opt.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-5)
    assert ours.state[ps[0]]["sophia_t"] == STEPS


def _sampled_grad(params: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """A stand-in for the gradient on model-sampled labels: depends on the iterate and on a fresh draw."""
    gen = torch.Generator().manual_seed(5000 + count)
    return [0.5 * p.detach() + torch.randn(p.shape, generator=gen) for p in params]


def test_sophia_g_official_schedule_matches_sophia_opt() -> None:
    lr, rho, bs, k, wd = 1e-2, 0.04, 7.0, 3, 0.1
    ps, qs = _params()
    ours = Sophia(ps, lr=lr, rho=rho, bs=bs, k=k, weight_decay=wd, estimator="gnb", schedule="official")
    ref = sophia_opt.SophiaG(qs, lr=lr, rho=rho, weight_decay=wd, betas=(0.965, 0.99))
    calls = {"n": 0}

    def closure(backward: bool = True, create_graph: bool = False, sampled_labels: bool = False) -> torch.Tensor:
        assert sampled_labels, "Sophia-G re-evaluates only for the sampled-label pass"
        calls["n"] += 1
        for p, g in zip(ps, _sampled_grad(ps, calls["n"]), strict=True):
            p.grad = g
        return torch.zeros(())

    ref_estimates = 0
    for t in range(1, STEPS + 1):
        gs = _grads(t)
        real = [g + 0.3 * p.detach() for g, p in zip(gs, ps, strict=True)]
        for p, g in zip(ps, real, strict=True):
            p.grad = g.clone()
        ours.step(closure)
        for p, g in zip(ps, real, strict=True):  # the real gradient is back after the sampled pass
            torch.testing.assert_close(p.grad, g)
        for q, g in zip(qs, gs, strict=True):
            q.grad = g + 0.3 * q.detach()
        ref.step(bs=bs)
        if t % k == 0:  # the official training loop: estimate after step t at the new iterate
            ref_estimates += 1
            for q, g in zip(qs, _sampled_grad(qs, ref_estimates), strict=True):
                q.grad = g
            ref.update_hessian()
    assert calls["n"] == ref_estimates == STEPS // k
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-5)
