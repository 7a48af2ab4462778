"""Lion against lucidrains' lion-pytorch (a faithful port of the official google/automl Lion), and Lion-IB
against a transcription of its documented rule and against Lion in the gain -> inf limit; on the digits
network, float64, 200 steps."""

from __future__ import annotations

import math

import pytest
import torch
from harness import spec_named
from optbench.plugins import lion as lion_plugin
from optbench.plugins.lion import Lion

lion_pytorch = pytest.importorskip("lion_pytorch")

LION = spec_named(lion_plugin, "lion")
LION_IB = spec_named(lion_plugin, "lion-ib")
NON_DEFAULT = {"lr": 3e-4, "beta1": 0.95, "beta2": 0.98, "weight_decay": 0.5}


def _ours(spec, **hp):
    merged = {**spec.defaults, **hp}
    return lambda ps: spec.build(ps, **merged)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("config", ["default", "non-default"])
def test_lion_matches_lion_pytorch(fidelity, config: str, model: str) -> None:
    hp = {} if config == "default" else NON_DEFAULT
    merged = {**LION.defaults, **hp}
    ref = lambda ps: lion_pytorch.Lion(ps, lr=merged["lr"], betas=(merged["beta1"], merged["beta2"]),  # noqa: E731
                                       weight_decay=merged["weight_decay"])
    fidelity(_ours(LION, **hp), ref, model=model, min_travel=1e-2 if config == "default" else 5e-2)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_lion_kernels_match_the_loop(fidelity, impl: str) -> None:
    hp = dict(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.5)
    fidelity(lambda ps: Lion(ps, impl=impl, **hp), lambda ps: Lion(ps, impl="loop", **hp), rtol=1e-12)


@pytest.mark.slow
def test_lion_compiled_kernel_matches_the_loop(fidelity) -> None:
    hp = dict(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.5)
    fidelity(lambda ps: Lion(ps, impl="compiled", **hp), lambda ps: Lion(ps, impl="loop", **hp), rtol=1e-12)


@pytest.mark.parametrize("mode", ["snr", "temperature"])
def test_lion_ib_flat_step_matches_the_loop(fidelity, monkeypatch, mode: str) -> None:
    """The flat step (what "auto" runs below 1M parameters) against the per-tensor loop."""
    calls = []
    original = lion_plugin.lion_ib_flat
    monkeypatch.setattr(lion_plugin, "lion_ib_flat", lambda *a, **k: calls.append(1) or original(*a, **k))
    hp = dict(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.5, gain=4.0, eps=1e-8, mode=mode, tau=0.5)
    fidelity(lambda ps: lion_plugin.LionIB(ps, impl="auto", **hp), lambda ps: lion_plugin.LionIB(ps, impl="loop", **hp),
             rtol=1e-12)
    assert len(calls) == 200  # the flat step really ran, every step


class LionIBTranscription(torch.optim.Optimizer):
    """Lion-IB's documented rule (docs/optimizers.md), written from the formulas coordinate-wise in float64
    numpy-free scalar form per tensor; separate from the plugin so the two can disagree."""

    def __init__(self, params, lr, beta1, beta2, weight_decay, mode, gain, tau, eps):
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, wd=weight_decay, mode=mode, gain=gain,
                                      tau=tau, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2, lr, wd = group["beta1"], group["beta2"], group["lr"], group["wd"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                g = p.grad
                c = b1 * st["m"] + (1 - b1) * g  # interpolation uses the momentum before this step
                st["m"] = b2 * st["m"] + (1 - b2) * g
                st["v"] = b2 * st["v"] + (1 - b2) * g * g
                if group["mode"] == "snr":
                    bc = 1 - b2 ** st["t"]
                    m_hat, v_hat = st["m"] / bc, st["v"] / bc
                    variance = torch.clamp(v_hat - m_hat**2, min=0.0)
                    kappa = group["gain"] * m_hat.abs() / (variance + group["eps"])
                else:
                    kappa = group["gain"] / (group["tau"] * torch.sqrt(torch.mean(c**2)))
                p.copy_(p * (1 - lr * wd) - lr * torch.tanh(kappa * c))


@pytest.mark.parametrize("config", ["default", "non-default", "temperature"])
def test_lion_ib_matches_its_documented_rule(fidelity, config: str) -> None:
    hp = {"default": {}, "non-default": {**NON_DEFAULT, "gain": 4.0, "eps": 1e-8},
          "temperature": {"mode": "temperature", "gain": 2.0, "tau": 0.5, "weight_decay": 0.1, "lr": 3e-4}}[config]
    merged = {**LION_IB.defaults, **hp}
    cmp = fidelity(_ours(LION_IB, **hp), lambda ps: LionIBTranscription(ps, **merged), min_travel=5e-3)
    assert math.isfinite(cmp.deviation)


@pytest.mark.parametrize("mode", ["snr", "temperature"])
@pytest.mark.parametrize("gain", [math.inf, 1e30])
def test_lion_ib_infinite_gain_is_lion(fidelity, mode: str, gain: float) -> None:
    """gain = inf used to give NaN (0 * inf where m_hat = 0); now it is the limit, which is Lion wherever
    m_hat != 0 (every coordinate of this network)."""
    merged = {**LION.defaults, **NON_DEFAULT}
    ref = lambda ps: lion_pytorch.Lion(ps, lr=merged["lr"], betas=(merged["beta1"], merged["beta2"]),  # noqa: E731
                                       weight_decay=merged["weight_decay"])
    fidelity(_ours(LION_IB, mode=mode, gain=gain, **NON_DEFAULT), ref, rtol=1e-12, min_travel=5e-2)


def test_lion_ib_infinite_gain_where_the_momentum_is_zero() -> None:
    """The limit where m_hat = 0 exactly: no NaN, no movement there; Lion elsewhere."""
    from optbench.plugins.lion import LionIB

    p = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = LionIB([p], lr=0.1, betas=(0.9, 0.5), gain=math.inf)
    p.grad = torch.tensor([0.2, 0.0, -0.3], dtype=torch.float64)
    opt.step()
    assert p.detach().tolist() == pytest.approx([0.9, -1.0, 0.6], abs=1e-15)
