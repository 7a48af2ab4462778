"""The fused (torch.compile'd) steps against each optimizer's eager per-tensor loop, the reference, on the digits
network in float64 for 200 steps. Slow: compiling costs tens of seconds per kernel on a loaded 2-core machine."""

from __future__ import annotations

import pytest
import torch
from harness import spec_named
from optbench.plugins import diffgrad, fadam, fused, lion

pytestmark = pytest.mark.slow

CASES = {
    "lion-ib-snr": (lion, "lion-ib", {"lr": 3e-4, "weight_decay": 0.5, "gain": 4.0}),
    "lion-ib-temperature": (lion, "lion-ib", {"lr": 3e-4, "weight_decay": 0.5, "mode": "temperature"}),
    "diffgrad-official": (diffgrad, "diffgrad", {"lr": 3e-3, "weight_decay": 1e-2}),
    "diffgrad-paper-decoupled": (diffgrad, "diffgrad", {"lr": 3e-3, "weight_decay": 1e-2, "eps_mode": "paper",
                                                        "weight_decay_mode": "decoupled"}),
    "fadam": (fadam, "fadam", {"lr": 3e-3, "weight_decay": 0.05, "clip": 0.5}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_step_matches_the_loop(fidelity, monkeypatch, case: str) -> None:
    module, name, hp = CASES[case]
    spec = spec_named(module, name)
    merged = {**spec.defaults, **hp}
    fused._failed.clear()
    compiled_steps = []
    original = fused.run

    def counting(kernel, fallback, *args):
        original(kernel, fallback, *args)
        compiled_steps.append(kernel in fused._compiled and kernel not in fused._failed)

    monkeypatch.setattr(fused, "run", counting)
    fidelity(lambda ps: spec.build(ps, **merged, impl="fused"), lambda ps: spec.build(ps, **merged, impl="loop"),
             rtol=1e-10)
    # the compiled kernel really ran every step (else the comparison would prove nothing)
    assert not fused._failed, f"torch.compile failed, the loop ran instead: {fused._failed}"
    assert len(compiled_steps) == 200 and all(compiled_steps)


def test_float32_fused_lion_ib_uses_the_rational_tanh_and_stays_close() -> None:
    """float32 parameters take the rational tanh: the step still agrees with the exact loop to float32 rounding."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(64, 32), (32,)]
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(30)]
    out = []
    for impl in ("fused", "loop"):
        ps = [t.clone().requires_grad_(True) for t in init]
        opt = lion.LionIB(ps, lr=1e-2, gain=0.05, eps=1e-3, impl=impl)
        for gs in grads:
            for p, g in zip(ps, gs, strict=True):
                p.grad = g.clone()
            opt.step()
        out.append([p.detach() for p in ps])
    assert not fused._failed
    for a, b, s in zip(*out, init, strict=True):
        assert not torch.equal(b, s)
        # 30 steps of lr * the tanh error, plus float32 rounding of the parameters themselves (a few ulps)
        torch.testing.assert_close(a, b, rtol=4 * 2**-23 * 8, atol=30 * 1e-2 * 4e-7)
