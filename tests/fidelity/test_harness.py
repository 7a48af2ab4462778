"""The harness itself: identical optimizers agree exactly, a tiny change is caught, random draws and batches
are reproducible on both sides, and the closure protocols deliver what they promise."""

from __future__ import annotations

import pytest
import torch
from harness import RTOL, compare, digits, make_model, optbench_step, run

from optbench.specs import Needs


def sgd(lr: float = 0.1):
    return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_identical_optimizers_agree_exactly_and_train(model: str) -> None:
    cmp = compare(sgd(), sgd(), model=model)
    assert cmp.deviation == 0.0
    assert cmp.travel > 0.05
    assert cmp.ref.losses[-1] < 0.5 * cmp.ref.losses[0]  # real training on real data
    assert all(p.dtype == torch.float64 for p in cmp.ours.final)


def test_a_relative_change_of_1e4_in_lr_is_caught() -> None:
    cmp = compare(sgd(0.1), sgd(0.1 * (1 + 1e-4)))
    assert cmp.deviation > 5 * RTOL  # the parameters inherit about the same relative change


def test_digits_are_the_real_dataset() -> None:
    x, y = digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float64
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0
    assert sorted(set(y.tolist())) == list(range(10))


def test_random_draws_are_identical_on_both_sides() -> None:
    """A step that uses the global RNG (like a Hutchinson probe) reproduces exactly; noise differs across steps."""
    draws: list[list[torch.Tensor]] = [[], []]

    def noisy(i: int):
        def step(ctx) -> None:
            ctx.backward()
            u = torch.randn(3)
            draws[i].append(u)
            for p in ctx.params:
                p.grad.add_(u[0] * 1e-3)
            ctx.optimizer.step()
        return step

    cmp = compare(sgd(), sgd(), step_ours=noisy(0), step_ref=noisy(1), steps=20)
    assert cmp.deviation == 0.0
    assert all(torch.equal(a, b) for a, b in zip(*draws, strict=True))
    assert not torch.equal(draws[0][0], draws[0][1])


def test_fresh_batches_are_reproducible_and_distinct() -> None:
    seen = []

    def step(ctx) -> None:
        b0, b1 = ctx.fresh_batch(0), ctx.fresh_batch(1)
        seen.append((b0[1], b1[1], ctx.fresh_batch(0)[1]))
        ctx.backward()
        ctx.optimizer.step()

    run(sgd(), step, steps=3)
    for b0, b1, again in seen:
        assert torch.equal(b0, again) and not torch.equal(b0, b1)


def test_optbench_step_hessian_builds_a_graph_and_sampled_labels_differ() -> None:
    class Probe(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.0})
            self.saw_graph = False
            self.sampled_equal_real = True

        def step(self, closure=None):
            p = self.param_groups[0]["params"][0]
            self.saw_graph = p.grad.grad_fn is not None
            real = p.grad.detach().clone()
            closure(sampled_labels=True)
            self.sampled_equal_real = torch.equal(real, p.grad)

    t = run(lambda ps: Probe(ps), optbench_step(Needs.HESSIAN), steps=1)
    assert t.optimizer.saw_graph
    t = run(lambda ps: Probe(ps), optbench_step(Needs.SAMPLED_LABELS), steps=1)
    assert not t.optimizer.saw_graph and not t.optimizer.sampled_equal_real


def test_model_kinds() -> None:
    with pytest.raises(ValueError, match="mlp"):
        make_model("rnn")
    assert sum(p.numel() for p in make_model("mlp").parameters()) == 64 * 32 + 32 + 32 * 10 + 10
