"""Zoo optimizers without a reference package, checked against their published rules: expected numbers are
computed here in float64 numpy straight from the formulas (docs/optimizers.md), never by
calling the implementation; plus each method's defining invariant.

arTuRO (the official rule itself is checked in tests/fidelity/test_fid_arturo.py): with the named deviation
early_stop_return="evaluated", the step taken satisfies the KL bound to the bisection tolerance.
MicroAdam: three hand-computed steps (top-k, 4-bit error feedback, ring buffer wrap-around);
with density 1, no quantisation and a window as long as the run it is Adam; its state is ~0.11x AdamW's.
Sophia-G: the paper's schedule on two hand-computed steps. The quadratic's sampled-label loss: E[g_hat^2] = diag(A).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optbench.plugins.arturo import DEFAULTS as ARTURO_DEFAULTS
from optbench.plugins.arturo import Arturo
from optbench.plugins.microadam import MicroAdam
from optbench.plugins.sophia import Sophia
from optbench.tasks.quadratic import optbench_register_tasks
from scipy.optimize import brentq

from optbench import Needs
from optbench.closure import StepClosure

# ---------------------------------------------------------------- arTuRO


def _true_root(kl, bound: float, eta_max: float) -> float:
    return brentq(lambda e: kl(e) - bound, 1e-12, eta_max, xtol=1e-14, rtol=1e-14)


@pytest.mark.parametrize("tight", [False, True])
def test_arturo_step_satisfies_kl_bound_to_bisection_tolerance(tight: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(30, 30, generator=gen, dtype=torch.float64)
    hess = a @ a.T / 30 + torch.eye(30, dtype=torch.float64)
    xs = torch.randn(30, generator=gen, dtype=torch.float64)
    x = torch.zeros(30, dtype=torch.float64, requires_grad=True)
    hp = {**ARTURO_DEFAULTS, "measurement_noise": 1e-3, "lr": 0.01, "early_stop_return": "evaluated"}
    if tight:
        hp.update(eta_tol=1e-10, kl_rtol=1e-12)
    opt = Arturo([x], **hp)
    early_stops = 0
    for _ in range(8):
        x.grad = hess @ (x.detach() - xs)
        before = x.detach().clone()
        prec = opt.state[x]["prec"].clone() if "prec" in opt.state[x] else torch.full_like(x, 1 / hp["var_init"])
        opt.step()
        st, solve = opt.state[x], opt.last_solve
        realized = 0.5 * float((prec * (x.detach() - before) ** 2).sum())  # KL of the step actually taken
        bound = hp["lr"]
        c = hp["reg_weight"] * hp["prior_prec"]
        assert float((st["h"] + c).min()) > 0  # KL(eta) is then decreasing: one root

        def kl(e: float, prec=prec, before=before, st=st, c=c) -> float:
            new = (e * prec * before - st["b"]) / (st["h"] + c + e * prec)
            return 0.5 * float((prec * (new - before) ** 2).sum())

        if tight:
            assert realized == pytest.approx(bound, rel=1e-6)
        elif abs(realized - bound) < hp["kl_rtol"] * bound:
            early_stops += 1
        else:  # stopped on the bracket width: within eta_tol/2 of the root, or at the edge of the warm bracket
            root = _true_root(kl, bound, hp["eta_max"])
            assert abs(solve.eta - root) <= hp["eta_tol"] / 2 + 1e-9 or not (solve.lo <= root <= solve.hi)
    if not tight:
        assert early_stops >= 1


# ---------------------------------------------------------------- MicroAdam


def _quant4_by_hand(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    if hi == lo:
        return np.full_like(a, lo)
    q = np.clip(np.round((a - lo) * 15 / (hi - lo)), 0, 15)
    return lo + q * (hi - lo) / 15


def test_microadam_three_steps_by_hand() -> None:
    lr, b1, b2, eps, m, k = 0.1, 0.9, 0.999, 1e-8, 2, 2
    theta = np.array([0.5, -0.3, 1.2, 0.0, -0.7, 0.25, 0.9, -1.1], dtype=np.float32)
    grads = [np.array([0.31, -0.92, 0.05, 0.47, -0.13, 0.66, -0.28, 0.09]),
             np.array([-0.52, 0.18, 0.83, -0.07, 0.39, -0.61, 0.12, 0.27]),
             np.array([0.15, 0.71, -0.44, 0.58, -0.93, 0.02, 0.36, -0.19])]
    x = torch.tensor(theta, requires_grad=True)
    opt = MicroAdam([x], lr=lr, betas=(b1, b2), eps=eps, m=m, density=0.25, block_size=8, quant_block_size=8,
                    ef_bits=4, value_dtype="float32")
    err = np.zeros(8)
    rows: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(2, dtype=int), np.zeros(2))] * m
    th = theta.astype(np.float64)
    for t, g in enumerate(grads, start=1):
        a = g + err
        idx = np.argsort(-np.abs(a))[:k]
        rows[(t - 1) % m] = (idx, a[idx].copy())
        a[idx] = 0.0
        err = _quant4_by_hand(a)
        z1, z2 = np.zeros(8), np.zeros(8)
        for r in range(min(t, m)):
            age = (t - 1 - r) % m
            np.add.at(z1, rows[r][0], b1**age * rows[r][1])
            np.add.at(z2, rows[r][0], b2**age * rows[r][1] ** 2)
        u = (1 - b1) / (1 - b1**t) * z1 / (np.sqrt((1 - b2) / (1 - b2**t) * z2) + eps)
        th = th - lr * u
        x.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        np.testing.assert_allclose(x.detach().numpy(), th, rtol=1e-5, atol=1e-6)
    st = opt.state[x]
    assert st["I"].dtype == torch.int16 and st["error"].dtype == torch.uint8 and st["error"].numel() == 4


def test_microadam_with_density_one_and_no_quantisation_is_adam() -> None:
    shapes = [(7, 5), (11,), (3, 2, 4)]
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen) for s in shapes]
    ps = [t.clone().requires_grad_(True) for t in init]
    qs = [t.clone().requires_grad_(True) for t in init]
    steps = 20
    ours = MicroAdam(ps, lr=1e-2, density=1.0, ef_bits=0, value_dtype="float32", m=steps, block_size=7)
    ref = torch.optim.Adam(qs, lr=1e-2)
    for t in range(steps):
        g = [torch.randn(s, generator=torch.Generator().manual_seed(100 + t)) for s in shapes]
        for p, q, gi in zip(ps, qs, g, strict=True):
            p.grad = gi + 0.5 * p.detach()
            q.grad = gi + 0.5 * q.detach()
        ours.step()
        ref.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))


def test_microadam_state_is_a_ninth_of_adamw_at_1m_params() -> None:
    w = torch.zeros(1000, 1000, requires_grad=True)
    w.grad = torch.randn(1000, 1000, generator=torch.Generator().manual_seed(0))
    micro = MicroAdam([w])
    micro.step()
    d, block, qblock, m = 10**6, 4096, 4096, 10
    k = (d // block) * math.ceil(block * 0.01) + math.ceil((d % block) * 0.01)
    expected = m * k * (2 + 2) + math.ceil(d / 2) + 2 * 4 * math.ceil(d / qblock)
    assert _state_bytes(micro) == expected  # nothing dense in float32 hides in the state
    v = w.detach().clone().requires_grad_(True)
    v.grad = w.grad.clone()
    adamw = torch.optim.AdamW([v])
    adamw.step()
    assert _state_bytes(micro) < 0.12 * _state_bytes(adamw)


# ---------------------------------------------------------------- Sophia-G (paper schedule)


def _quadratic():  # the task module directly: loading the whole registry imports every plugin (slow, shared CPU)
    spec = next(s for s in optbench_register_tasks() if s.name == "quadratic-well-conditioned")
    return spec.build("smoke", 0, torch.device("cpu"), None)


def test_sophia_g_paper_schedule_two_steps_by_hand() -> None:
    lr, rho, bs, wd, b1, b2 = 0.1, 0.5, 3.0, 0.1, 0.9, 0.99
    theta0 = np.array([1.0, -2.0, 0.5])
    g1, g2 = np.array([0.2, -0.4, 0.1]), np.array([0.1, 0.3, -0.2])
    ghat = np.array([3.0, 0.1, -0.3])
    x = torch.tensor(theta0, requires_grad=True)
    opt = Sophia([x], lr=lr, betas=(b1, b2), rho=rho, weight_decay=wd, k=2, estimator="gnb", bs=bs)
    calls = []

    def closure(backward: bool = True, create_graph: bool = False, sampled_labels: bool = False) -> torch.Tensor:
        calls.append(sampled_labels)
        x.grad = torch.tensor(ghat)
        return torch.zeros(())

    h = (1 - b2) * bs * ghat**2  # estimate at t = 1 (t mod k = 1), before the update
    m1 = (1 - b1) * g1
    th1 = theta0 * (1 - lr * wd) - lr * np.clip(m1 / np.maximum(rho * h, 1e-15), -1, 1)
    m2 = b1 * m1 + (1 - b1) * g2
    th2 = th1 * (1 - lr * wd) - lr * np.clip(m2 / np.maximum(rho * h, 1e-15), -1, 1)
    x.grad = torch.tensor(g1)
    opt.step(closure)
    np.testing.assert_allclose(x.grad.numpy(), g1)  # the real gradient is restored
    np.testing.assert_allclose(x.detach().numpy(), th1, rtol=1e-12)
    x.grad = torch.tensor(g2)
    opt.step(closure)
    np.testing.assert_allclose(x.detach().numpy(), th2, rtol=1e-12)
    assert calls == [True]  # one sampled-label pass, at step 1 only (k = 2)


def test_sophia_g_passes_counted_by_the_runner_protocol() -> None:
    task = _quadratic()
    opt = Sophia(task.parameters(), estimator="gnb", k=10)
    closure = StepClosure(task, task.parameters())
    for _ in range(20):
        closure.batch = None
        closure.before_step(Needs.SAMPLED_LABELS)
        opt.step(closure)
    assert closure.passes == {"forward": 22, "backward": 22}  # 20 + estimates at steps 1 and 11


def test_quadratic_sampled_labels_give_the_hessian_diagonal() -> None:
    task = _quadratic()
    x = task.parameters()[0]
    n_samples = 3000
    sq = torch.zeros_like(x)
    mean = torch.zeros_like(x)
    for _ in range(n_samples):
        x.grad = None
        task.sampled_loss(None).backward()
        sq += x.grad.square()
        mean += x.grad
    q = task._q.double()
    diag_a = (q.square() * task.lam[None, :]).sum(dim=1)
    rel = (sq.double() / n_samples - diag_a).abs() / diag_a
    assert float(rel.mean()) < 0.04 and float(rel.max()) < 0.15  # sampling error ~ sqrt(2/3000) = 2.6%
    assert float((mean.double() / n_samples).abs().max()) < 5 * math.sqrt(float(diag_a.max()) / n_samples)
