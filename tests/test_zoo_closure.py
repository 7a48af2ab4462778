"""Closure-protocol optimizers against references: SAM against pytorch_optimizer.SAM; GAM, zo-sgd and AdaFisher
against two steps of their published rule computed here (in float64, from autograd gradients of an explicit
objective), never by calling the implementation; zo-sgd's estimate converges as mu -> 0. The official rules on a
real network over 200 steps: tests/fidelity/ (Entropy-SGD is checked there only)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from optbench.plugins.adafisher import AdaFisher
from optbench.plugins.sharpness_aware import GAM, SAM
from optbench.plugins.zo_sgd import ZOSGD

from optbench.closure import StepClosure
from optbench.runner import RunSettings, run_trial
from optbench.specs import Needs, TaskInstance
from optbench.trial import Trial

DT = torch.float64


class FnTask(TaskInstance):
    """loss = fn(params): the smallest TaskInstance the closure protocol can drive."""

    def __init__(self, params: list[torch.Tensor], fn: Any, model: torch.nn.Module | None = None) -> None:
        self._params, self.fn, self.model = params, fn, model

    def parameters(self) -> list[torch.Tensor]:
        return self._params

    def batches(self):
        while True:
            yield None

    def loss(self, batch: Any) -> torch.Tensor:
        return self.fn()


def drive(opt: torch.optim.Optimizer, task: FnTask, needs: Needs, steps: int) -> StepClosure:
    closure = StepClosure(task, task.parameters())
    for _ in range(steps):
        closure.batch = None
        closure.before_step(needs)
        opt.step(closure.for_step(needs))
    return closure


def quadratic(seed: int, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=gen, dtype=DT)
    return m @ m.T + torch.eye(d, dtype=DT), torch.randn(d, generator=gen, dtype=DT)


def f_quad(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x @ a @ x - b @ x + 0.1 * (x**4).sum()  # non-quadratic, so gradients differ point to point


def grad_quad(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return a @ x - b + 0.4 * x**3


# --- SAM vs pytorch_optimizer.SAM --------------------------------------------------------------------
@pytest.mark.parametrize("base,adaptive", [("sgd", False), ("adamw", False), ("sgd", True)])
def test_sam_matches_pytorch_optimizer(base: str, adaptive: bool) -> None:
    pto = pytest.importorskip("pytorch_optimizer")
    gen = torch.Generator().manual_seed(0)
    x_data, y_data = torch.randn(16, 5, generator=gen, dtype=DT), torch.randn(16, 2, generator=gen, dtype=DT)
    init = [torch.randn(4, 5, generator=gen, dtype=DT), torch.randn(4, generator=gen, dtype=DT),
            torch.randn(2, 4, generator=gen, dtype=DT)]

    def make() -> tuple[list[torch.Tensor], Any]:
        ps = [t.clone().requires_grad_(True) for t in init]
        return ps, lambda: ((torch.tanh(x_data @ ps[0].T + ps[1]) @ ps[2].T - y_data) ** 2).mean()

    hp: dict[str, Any] = {"lr": 0.05, "weight_decay": 0.01}
    ref_kw = dict(hp, momentum=0.9) if base == "sgd" else dict(hp, betas=(0.9, 0.99), eps=1e-8)
    mine_p, mine_f = make()
    mine = SAM(mine_p, base=base, rho=0.05, adaptive=adaptive, momentum=0.9, beta1=0.9, beta2=0.99, **hp)
    ref_p, ref_f = make()
    ref_cls = torch.optim.SGD if base == "sgd" else torch.optim.AdamW
    ref = pto.SAM(ref_p, ref_cls, rho=0.05, adaptive=adaptive, **ref_kw)

    def ref_closure() -> torch.Tensor:
        ref.zero_grad()
        loss = ref_f()
        loss.backward()
        return loss

    task = FnTask(mine_p, mine_f)
    for _ in range(25):
        drive(mine, task, Needs.CLOSURE, 1)
        ref_closure()
        ref.step(ref_closure)
        for a, b in zip(mine_p, ref_p, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not torch.equal(mine_p[0], init[0])


# --- GAM: two steps of the official rule --------------------------------------------------------------
def test_gam_two_steps_by_hand() -> None:
    a, b = quadratic(1)
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=DT)
    lr, mom, rho, nrho, gamma = 0.05, 0.9, 0.02, 0.2, 0.03
    x = x0.clone().requires_grad_(True)
    opt = GAM([x], base="sgd", lr=lr, momentum=mom, rho=rho, norm_rho=nrho, gamma=gamma, beta_1=1.0, beta_2=-1.0,
              beta_3=1.0)
    drive(opt, FnTask([x], lambda: f_quad(a, b, x)), Needs.CLOSURE, 2)

    def unit(v: torch.Tensor) -> torch.Tensor:
        return v / (v.norm() + 1e-12)

    theta, buf = x0.clone(), None
    for _ in range(2):
        g0 = grad_quad(a, b, theta)
        g1 = grad_quad(a, b, theta + rho * unit(g0))
        e_n = nrho * unit(g1 - g0)
        g2 = grad_quad(a, b, theta + e_n)
        g3 = grad_quad(a, b, theta + e_n + rho * unit(g2))
        f, h = g1 + g3, g0 + abs(-1.0) * g2
        orth = h - (h @ f) / (f @ f) * f  # the part of h orthogonal to f
        d = f - gamma * orth
        buf = d.clone() if buf is None else mom * buf + d
        theta = theta - lr * buf
    torch.testing.assert_close(x.detach(), theta, atol=1e-10, rtol=0)


# --- zo-sgd ------------------------------------------------------------------------------------------
def test_zo_sgd_coordinate_two_steps_by_hand() -> None:
    a, b = quadratic(3, d=4)
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=DT)
    lr, mu, k, mom = 0.1, 1e-3, 4, 0.5
    x = x0.clone().requires_grad_(True)
    opt = ZOSGD([x], lr=lr, mu=mu, estimator="coordinate", momentum=mom, weight_decay=0.0)
    torch.manual_seed(5)
    closure = drive(opt, FnTask([x], lambda: f_quad(a, b, x)), Needs.LOSS_ONLY, 2)
    assert closure.passes["backward"] == 0 and closure.passes["forward"] == 2 * (1 + 1 + k)  # every coordinate
    assert x.grad is None

    theta, buf = x0.clone(), None
    for _ in range(2):
        g = torch.zeros(4, dtype=DT)
        for i in range(4):  # a 1-D tensor is never masked: every coordinate is estimated
            e = torch.zeros(4, dtype=DT)
            e[i] = mu
            g[i] = (f_quad(a, b, theta + e) - f_quad(a, b, theta)) / mu
        buf = g.clone() if buf is None else mom * buf + g
        theta = theta - lr * buf
    torch.testing.assert_close(x.detach(), theta, atol=1e-12, rtol=0)


def test_zo_sgd_random_direction_two_steps_by_hand() -> None:
    a, b = quadratic(4)
    x0 = torch.tensor([0.3, -0.2, 0.1], dtype=DT)
    lr, mu, q = 0.05, 1e-3, 3
    x = x0.clone().requires_grad_(True)
    opt = ZOSGD([x], lr=lr, mu=mu, estimator="random", n_directions=q, momentum=0.0, weight_decay=0.0)
    torch.manual_seed(6)
    drive(opt, FnTask([x], lambda: f_quad(a, b, x)), Needs.LOSS_ONLY, 2)

    torch.manual_seed(6)
    theta = x0.clone()
    for _ in range(2):
        f0 = f_quad(a, b, theta)
        g = torch.zeros(3, dtype=DT)
        for _ in range(q):
            u = torch.randn(3, dtype=DT)
            g += (f_quad(a, b, theta + mu * u) - f0) / mu * u / q
        theta = theta - lr * g
    torch.testing.assert_close(x.detach(), theta, atol=1e-12, rtol=0)


@pytest.mark.parametrize("estimator", ["coordinate", "random"])
def test_zo_estimate_converges_to_gradient_as_mu_shrinks(estimator: str) -> None:
    """Coordinate (every coordinate estimated): the estimate itself -> grad f. Random directions: the estimate ->
    (1/q) sum u u^T grad f for the same draws (the directional-derivative limit), whose mean is grad f."""
    a, b = quadratic(7, d=5)
    x = torch.tensor([0.2, -0.1, 0.3, 0.0, -0.4], dtype=DT, requires_grad=True)
    true = grad_quad(a, b, x.detach())
    errors = []
    for mu in (1e-1, 1e-2, 1e-3, 1e-4):
        opt = ZOSGD([x], lr=1.0, mu=mu, estimator=estimator, sparsity=0.0, n_directions=4)
        closure = StepClosure(FnTask([x], lambda: f_quad(a, b, x)), [x])
        torch.manual_seed(0)
        est = opt.estimate(closure, opt.param_groups[0])[0]
        if estimator == "random":
            torch.manual_seed(0)
            us = [torch.randn(5, dtype=DT) for _ in range(4)]
            target = sum(u * (u @ true) for u in us) / 4
        else:
            target = true
        errors.append(float((est - target).norm()))
    assert all(e2 < 0.2 * e1 for e1, e2 in zip(errors, errors[1:], strict=False)), errors  # O(mu): /10 per step
    assert errors[-1] < 1e-3 * float(true.norm())


# --- AdaFisher: two steps of the diagonal K-FAC rule ---------------------------------------------------
class TwoLayer(torch.nn.Module):
    """A Linear layer (hooked) followed by a free per-output scale (not owned by a layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2).to(DT)
        self.scale = torch.nn.Parameter(torch.tensor([1.0, -0.5], dtype=DT))
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=DT))
            self.lin.bias.copy_(torch.tensor([0.05, -0.1], dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.scale


def test_adafisher_three_steps_by_hand() -> None:
    """Three steps with t_cov = 2: the factors are refreshed at steps 1 and 3, reused at step 2; the free scale
    uses the named deviation unhooked="adam" (the official rule itself: tests/fidelity/test_fid_adafisher.py)."""
    xs = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.5]], dtype=DT)
    ts = torch.tensor([[0.5, 0.0], [1.0, -1.0], [0.0, 0.5]], dtype=DT)
    lr, b1, b2, g0, g1, lam, eps, wd = 1e-3, 0.9, 0.999, 0.92, 0.008, 1e-3, 1e-8, 0.01  # gamma 0.8: keep 0.08
    model = TwoLayer()
    opt = AdaFisher(list(model.parameters()), model=model, lr=lr, beta=b1, beta2=b2, gamma=0.8, damping=lam,
                    t_cov=2, eps=eps, weight_decay=wd, unhooked="adam")
    drive(opt, FnTask(list(model.parameters()), lambda: ((model(xs) - ts) ** 2).mean(), model), Needs.GRADIENT, 3)

    def minmax(v: torch.Tensor) -> torch.Tensor:
        return (v - v.min()) / (v.max() - v.min() + 1e-6)

    w = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=DT)
    bias, sc = torch.tensor([0.05, -0.1], dtype=DT), torch.tensor([1.0, -0.5], dtype=DT)
    m = [torch.zeros(2, 2, dtype=DT), torch.zeros(2, dtype=DT), torch.zeros(2, dtype=DT)]
    v_sc = torch.zeros(2, dtype=DT)
    h_ema, s_ema = torch.ones(3, dtype=DT), torch.ones(2, dtype=DT)
    for t in (1, 2, 3):
        w_, b_, s_ = (v.clone().requires_grad_(True) for v in (w, bias, sc))
        z = xs @ w_.T + b_
        z.retain_grad()
        loss = ((z * s_ - ts) ** 2).mean()
        loss.backward()
        if t in (1, 3):
            a_aug = torch.cat([xs, torch.ones(3, 1, dtype=DT)], dim=1)
            h_ema = (1 - g0) * h_ema + g1 * minmax((a_aug**2).mean(0))  # diag of E[a a^T], normalised
            s_ema = (1 - g0) * s_ema + g1 * minmax((z.grad**2).mean(0))  # diag of E[s s^T], normalised
        grads = [w_.grad + wd * w, b_.grad + wd * bias, s_.grad + wd * sc]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
        mh = [mi / (1 - b1**t) for mi in m]
        f_w = torch.outer(s_ema, h_ema[:2]) + lam
        f_b = s_ema * h_ema[2] + lam
        v_sc = b2 * v_sc + (1 - b2) * grads[2] ** 2
        f_sc = (v_sc / (1 - b2**t)).sqrt() + eps
        w, bias, sc = w - lr * mh[0] / f_w, bias - lr * mh[1] / f_b, sc - lr * mh[2] / f_sc
    torch.testing.assert_close(model.lin.weight.detach(), w, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(model.lin.bias.detach(), bias, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(model.scale.detach(), sc, atol=1e-12, rtol=1e-12)
    assert not torch.allclose(w, torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=DT))  # it did move


def test_adafisher_without_a_model_is_a_clear_skipped_row(registry) -> None:
    spec = registry.optimizer("adafisher").spec
    trial = Trial("quadratic-well-conditioned", "smoke", "adafisher", dict(spec.defaults), 0)
    row = run_trial(trial, registry, RunSettings()).row
    assert row["status"] == "skipped"  # not applicable (interface decision 1), not a failure
    assert "needs a model" in row["error"] and "quadratic-well-conditioned" in row["error"]


# --- the closure protocol's fresh batches ----------------------------------------------------------------
class CountingTask(TaskInstance):
    """Batches are the integers 0, 1, 2, ...; the loss records which batch it was evaluated on."""

    def __init__(self) -> None:
        self.x = torch.ones(2, dtype=DT, requires_grad=True)
        self.seen: list[int] = []

    def parameters(self) -> list[torch.Tensor]:
        return [self.x]

    def batches(self):
        i = 0
        while True:
            yield i
            i += 1

    def loss(self, batch: Any) -> torch.Tensor:
        self.seen.append(batch)
        return (self.x**2).sum() * (1 + batch)


class TwoFreshBatches(torch.optim.Optimizer):
    def __init__(self, params: Any) -> None:
        super().__init__(params, {})

    def step(self, closure: Any = None) -> None:
        for _ in range(2):
            closure(fresh_batch=True)


def test_fresh_batches_come_from_the_runs_own_stream() -> None:
    """Each step takes its batch from the stream, each closure(fresh_batch=True) the next one, so no batch is seen
    twice and the next step continues after the batches drawn inside step (as the runner drives it)."""
    task = CountingTask()
    opt = TwoFreshBatches(task.parameters())
    closure = StepClosure(task, task.parameters())
    for _ in range(3):
        closure.next_batch()
        closure.before_step(Needs.CLOSURE)
        opt.step(closure.for_step(Needs.CLOSURE))
    assert task.seen == list(range(9))
    assert closure.passes == {"forward": 9, "backward": 9} and closure.fresh_batches == 6
