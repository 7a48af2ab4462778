"""Lion and Lion-IB against the reference package, their limits, a hand-computed example, and state_dict.

The hand-computed example recomputes the update rule documented in plugins/lion.py with plain Python floats,
so a change to the implementation that silently changes the rule makes it fail.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from optbench.plugins.lion import Lion, LionIB

SHAPES = [(7, 5), (13,), (3, 4, 2), (1,), (64,)]


def _tensors(seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]


def _grad_stream(steps: int, seed: int, dtype=torch.float32) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES] for _ in range(steps)]


def _run(opt_factory, steps: int, seed: int = 0, dtype=torch.float32) -> list[torch.Tensor]:
    params = [t.clone().requires_grad_(True) for t in _tensors(seed, dtype)]
    opt = opt_factory(params)
    for grads in _grad_stream(steps, seed + 1, dtype):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("foreach", [False, True], ids=["per-tensor", "foreach"])
def test_lion_matches_lion_pytorch(foreach: bool) -> None:
    from lion_pytorch import Lion as RefLion

    hp = dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    ours = _run(lambda ps: Lion(ps, foreach=foreach, **hp), steps=100)
    ref = _run(lambda ps: RefLion(ps, **hp), steps=100)
    start = _tensors(0)
    for a, b, s in zip(ours, ref, start, strict=True):
        assert not torch.equal(a, s)  # the optimizer moved
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_lion_foreach_and_per_tensor_agree() -> None:
    hp = dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    a = _run(lambda ps: Lion(ps, foreach=False, **hp), steps=30)
    b = _run(lambda ps: Lion(ps, foreach=True, **hp), steps=30)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["snr", "temperature"])
@pytest.mark.parametrize("foreach", [False, True], ids=["lion-per-tensor", "lion-foreach"])
def test_lion_ib_infinite_gain_is_lion(mode: str, foreach: bool) -> None:
    hp = dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    ib = _run(lambda ps: LionIB(ps, mode=mode, gain=1e30, **hp), steps=50)
    lion = _run(lambda ps: Lion(ps, foreach=foreach, **hp), steps=50)
    for a, b in zip(ib, lion, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["snr", "temperature"])
def test_lion_ib_finite_gain_differs_from_lion(mode: str) -> None:
    """The limit test above must not pass because tanh is never used."""
    hp = dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    ib = _run(lambda ps: LionIB(ps, mode=mode, gain=1.0, eps=1e-3, **hp), steps=5)
    lion = _run(lambda ps: Lion(ps, **hp), steps=5)
    assert any(not torch.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(ib, lion, strict=True))


def _hand_lion_ib(theta, grads, lr, beta1, beta2, wd, mode, gain, tau, eps):
    """The documented rule (plugins/lion.py docstring) with plain floats, one coordinate at a time."""
    theta = list(theta)
    m = [0.0] * len(theta)
    v = [0.0] * len(theta)
    for t, g in enumerate(grads, start=1):
        c = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g, strict=True)]
        m = [beta2 * mi + (1 - beta2) * gi for mi, gi in zip(m, g, strict=True)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        if mode == "snr":
            bc = 1 - beta2**t
            m_hat = [mi / bc for mi in m]
            var = [max(vi / bc - mh * mh, 0.0) + eps for vi, mh in zip(v, m_hat, strict=True)]
            kappa = [gain * abs(mh) / s2 for mh, s2 in zip(m_hat, var, strict=True)]
        else:
            rms = math.sqrt(sum(ci * ci for ci in c) / len(c))
            kappa = [gain / (tau * rms)] * len(c)
        theta = [th * (1 - lr * wd) - lr * math.tanh(k * ci) for th, k, ci in zip(theta, kappa, c, strict=True)]
    return theta


@pytest.mark.parametrize("mode", ["snr", "temperature"])
def test_lion_ib_hand_computed_two_steps(mode: str) -> None:
    theta0 = [1.0, -2.0, 0.5]
    grads = [[0.3, -0.2, 0.05], [-0.1, -0.4, 0.2]]
    hp = dict(lr=0.1, beta1=0.9, beta2=0.5, wd=0.2, mode=mode, gain=0.7, tau=2.0, eps=0.01)
    expected = _hand_lion_ib(theta0, grads, **hp)

    p = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = LionIB([p], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["wd"], mode=mode,
                 gain=hp["gain"], tau=hp["tau"], eps=hp["eps"])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    got = p.detach().tolist()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # the example is in the tanh regime, not the saturated (Lion) one
    lion_like = _hand_lion_ib(theta0, grads, **{**hp, "gain": 1e30})
    assert max(abs(a - b) for a, b in zip(expected, lion_like, strict=True)) > 1e-3


# --- state_dict round trip ------------------------------------------------------------------------------
ROUND_TRIP = {
    "sgd": {"weight_decay": 0.01},
    "adamw": {},
    "lion": {"weight_decay": 0.1},
    "lion-ib": {"weight_decay": 0.1},
    "lion-ib-temperature": {"mode": "temperature"},
}


def _spec(name: str):
    """Straight from the plugin modules: loading every installed plugin is not what these tests are about."""
    from optbench.plugins import lion, torch_optim

    specs = {s.name: s for m in (lion, torch_optim) for s in m.optbench_register_optimizers()}
    return specs[name]


@pytest.mark.parametrize("case", sorted(ROUND_TRIP))
def test_state_dict_round_trip_mid_run(case: str) -> None:
    name = "lion-ib" if case.startswith("lion-ib") else case
    spec = _spec(name)
    hp = {**spec.defaults, **ROUND_TRIP[case]}
    grads = _grad_stream(10, seed=3)

    def feed(params, opt, stream):
        for gs in stream:
            for p, g in zip(params, gs, strict=True):
                p.grad = g.clone()
            opt.step()

    params = [t.clone().requires_grad_(True) for t in _tensors(2)]
    opt = spec.build(params, **hp)
    feed(params, opt, grads[:5])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    saved_params = [p.detach().clone() for p in params]

    feed(params, opt, grads[5:])  # the uninterrupted run

    fresh = [t.clone().requires_grad_(True) for t in saved_params]
    opt2 = spec.build(fresh, **spec.defaults)  # the saved hyperparameters must come back from the state_dict
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    feed(fresh, opt2, grads[5:])
    for a, b, s in zip(params, fresh, saved_params, strict=True):
        assert not torch.equal(a.detach(), s)
        assert torch.equal(a.detach(), b.detach())
    assert copy.deepcopy(opt.state_dict()["param_groups"]) == opt2.state_dict()["param_groups"]


def test_lion_ib_flat_state_is_views_and_survives_a_changing_parameter_set() -> None:
    """The flat step keeps each parameter's moments as views into one buffer (state_dict unchanged in form); a
    parameter that misses a gradient puts the group back on the loop (its step count differs), with the same
    result as a loop-only run."""
    from optbench.plugins.lion import LionIB

    init = _tensors(3)
    grads = _grad_stream(8, seed=5)
    runs = {}
    for impl in ("auto", "loop"):
        params = [t.clone().requires_grad_(True) for t in init]
        opt = LionIB(params, lr=1e-2, weight_decay=0.1, impl=impl)
        for i, gs in enumerate(grads):
            for j, (p, g) in enumerate(zip(params, gs, strict=True)):
                p.grad = None if (i == 4 and j == 1) else g.clone()
            opt.step()
            if impl == "auto" and i == 0:
                bases = {opt.state[p]["exp_avg"]._base.data_ptr() for p in params}
                assert len(bases) == 1  # one flat buffer behind every parameter's first moment
        runs[impl] = [p.detach() for p in params]
    for a, b, s in zip(runs["auto"], runs["loop"], init, strict=True):
        assert not torch.equal(a, s)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
