"""When torch.compile cannot build a fused kernel (no C++ compiler, an unsupported platform) the optimizer says so
once and takes its eager loop, and the step it was in is applied exactly once. For a staged kernel (FAdam, Lion-IB
temperature) a stage may fail after earlier stages ran; those are pure, so the loop's update must equal a plain
loop's bit for bit. torch.compile is replaced by a fake that runs chosen functions eagerly and fails on one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from optbench.plugins import diffgrad, fadam, fused, lion


def _fake_compile(fail_on: str) -> Callable:
    def fake(fn: Callable, **_kw: object) -> Callable:
        if fn.__name__ == fail_on:
            def broken(*_a: object) -> None:
                raise RuntimeError("no C++ compiler found")
            return broken
        return fn  # the stage runs eagerly: same graph, no compiler needed

    return fake


CASES = {
    # (optimizer factory, the function whose compilation fails)
    "fadam, first stage": (lambda ps, impl: fadam.FAdam(ps, lr=1e-2, weight_decay=0.1, impl=impl), "_fadam_epsilons"),
    "fadam, second stage": (lambda ps, impl: fadam.FAdam(ps, lr=1e-2, weight_decay=0.1, impl=impl),
                            "_fadam_clip_scales"),
    "fadam, last stage": (lambda ps, impl: fadam.FAdam(ps, lr=1e-2, weight_decay=0.1, impl=impl), "_fadam_apply"),
    "lion-ib temperature, last stage": (
        lambda ps, impl: lion.LionIB(ps, lr=1e-2, mode="temperature", impl=impl), "_lion_ib_temperature_apply"),
    "diffgrad, one graph": (lambda ps, impl: diffgrad.DiffGrad(ps, lr=1e-2, impl=impl), "diffgrad_step"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_kernel_that_fails_to_compile_falls_back_to_the_loop_once(monkeypatch, case: str) -> None:
    make, fail_on = CASES[case]
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(fused, "_failed", {})
    monkeypatch.setattr(torch, "compile", _fake_compile(fail_on))
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(8, 5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)]
    grads = [[torch.randn_like(t) for t in init] for _ in range(4)]
    results = []
    with pytest.warns(RuntimeWarning, match="failed .*no C\\+\\+ compiler"):
        for impl in ("fused", "loop"):
            ps = [t.clone().requires_grad_(True) for t in init]
            opt = make(ps, impl)
            for gs in grads:
                for p, g in zip(ps, gs, strict=True):
                    p.grad = g.clone()
                opt.step()
            results.append([p.detach() for p in ps])
    assert len(fused._failed) == 1  # named once; later steps went straight to the loop
    for a, b, start in zip(*results, init, strict=True):
        assert not torch.equal(a, start)
        assert torch.equal(a, b), f"{case}: the failed step was applied twice or not at all"


@pytest.mark.parametrize("name", ["lion-ib", "fadam", "diffgrad"])
def test_a_copied_optimizer_with_a_flat_step_steps_like_the_original(name: str) -> None:
    """The flat buffers live outside `state` (a pickled or deep-copied optimizer does not carry them): the copy
    rebuilds them from its own per-parameter state and takes the same step as the original."""
    import copy

    build = {"lion-ib": lambda ps: lion.LionIB(ps, lr=1e-2, weight_decay=0.1),
             "fadam": lambda ps: fadam.FAdam(ps, lr=1e-2), "diffgrad": lambda ps: diffgrad.DiffGrad(ps, lr=1e-2)}[name]
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(6, 4, generator=gen).requires_grad_(True), torch.randn(4, generator=gen).requires_grad_(True)]
    opt = build(params)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    twin = copy.deepcopy({"params": params, "opt": opt})
    for p, q in zip(params, twin["params"], strict=True):
        q.grad = p.grad.clone()
    opt.step()
    twin["opt"].step()
    for p, q in zip(params, twin["params"], strict=True):
        assert torch.equal(p.detach(), q.detach())
