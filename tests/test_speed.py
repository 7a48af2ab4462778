"""The interleaved speed measurement (optbench/speed.py): its interval, and a gate that gives the same answer
twice on identical code. Timing is simulated with a fake clock and a load that changes while the measurement
runs, so nothing here depends on how busy the machine is."""

from __future__ import annotations

import math
import random

import pytest

from optbench.speed import interleaved, is_slower, median_interval, optimizer_step_ratio


@pytest.mark.parametrize("n", [6, 11, 31, 101])
def test_median_interval_ranks_match_the_binomial_quantiles(n):
    stats = pytest.importorskip("scipy.stats")
    xs = list(range(1, n + 1))
    lo, hi = median_interval(xs, 0.95)
    j = int(stats.binom.ppf(0.025, n, 0.5))  # smallest k with P(B <= k) >= 0.025
    if stats.binom.cdf(j, n, 0.5) <= 0.025:
        j += 1
    assert (lo, hi) == (j, n + 1 - j)  # ranks are 1-based: x_(j) = j here
    assert stats.binom.cdf(lo - 1, n, 0.5) <= 0.025 < stats.binom.cdf(lo, n, 0.5)


def test_median_interval_covers_the_true_median():
    """Empirical coverage over 2000 samples of 31 lognormal values (median exactly 1): about 95%, never below."""
    rng = random.Random(0)
    hits = 0
    for _ in range(2000):
        lo, hi = median_interval([rng.lognormvariate(0.0, 0.8) for _ in range(31)])
        hits += lo <= 1.0 <= hi
    assert 0.94 <= hits / 2000 <= 0.995
    assert median_interval([2.0] * 3) == (2.0, 2.0) and median_interval([1.0, 5.0]) == (1.0, 5.0)


class LoadedMachine:
    """A fake clock on a machine whose load jumps between 1x and 12x every few milliseconds of fake time,
    plus 20% jitter per step: what 8 helpers sharing 2 cores look like."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.load_until = 0.0
        self.load = 1.0

    def clock(self) -> float:
        return self.now

    def work(self, seconds: float) -> None:
        if self.now >= self.load_until:
            self.load = self.rng.choice([1.0, 1.0, 1.5, 3.0, 12.0])
            self.load_until = self.now + self.rng.uniform(0.002, 0.02)
        self.now += seconds * self.load * self.rng.lognormvariate(0.0, 0.2)


def measure(seed: int, cost_a: float, cost_b: float = 1e-3):
    m = LoadedMachine(seed)
    r = interleaved(lambda: m.work(cost_a), lambda: m.work(cost_b), pairs=31, clock=m.clock)
    return r.median, r.lo, r.hi


def separate(seed: int, cost_a: float, cost_b: float = 1e-3) -> float:
    """The old way: each optimizer timed in its own trial (31 steps, one after the other), then divided."""
    m = LoadedMachine(seed)
    ta, tb = [], []
    for costs, out in ((cost_a, ta), (cost_b, tb)):
        for _ in range(31):
            t0 = m.clock()
            m.work(costs)
            out.append(m.clock() - t0)
        m.work(0.05)  # the minutes between two trials
    return sorted(ta)[15] / sorted(tb)[15]


def test_gate_on_identical_code_passes_20_of_20_and_a_2x_slowdown_fails_20_of_20():
    tol = 0.1  # slower = the candidate's lower bound more than 10% above the baseline's upper bound
    same = [is_slower(measure(100 + k, 1e-3), measure(200 + k, 1e-3), tol) for k in range(20)]
    assert sum(same) == 0  # 20 of 20 pass
    slowed = [is_slower(measure(300 + k, 2e-3), measure(400 + k, 1e-3), tol) for k in range(20)]
    assert all(slowed)
    # the measurement is what makes the difference: ratios of separately timed trials flag identical code
    old = [separate(100 + k, 1e-3) / separate(200 + k, 1e-3) - 1 > tol for k in range(20)]
    assert sum(old) >= 3


def test_interval_holds_the_median_and_nan_when_nothing_was_timed():
    med, lo, hi = measure(7, 1e-3)
    assert lo <= med <= hi and 0.5 < med < 2.0
    frozen = interleaved(lambda: None, lambda: None, pairs=5, clock=lambda: 0.0)
    assert math.isnan(frozen.median) and frozen.pairs == 0
    assert not is_slower((math.nan,) * 3, (1.0, 0.9, 1.1), 0.1)


def test_real_optimizers_on_task_shapes():
    """AdamW against itself on a small network's shapes: every figure is finite and ordered (no timing claim)."""
    torch = pytest.importorskip("torch")
    params = [torch.zeros(64, 32), torch.zeros(64), torch.zeros(10, 64), torch.zeros(10)]
    before = torch.get_num_threads()
    r = optimizer_step_ratio(lambda ps: torch.optim.AdamW(ps, lr=1e-3), lambda ps: torch.optim.AdamW(ps, lr=1e-3),
                             params, pairs=7, threads=1)
    assert r.pairs == 7 and 0 < r.lo <= r.median <= r.hi and r.ms > 0 and r.ref_ms > 0
    assert torch.get_num_threads() == before  # threads pinned only while timing
    assert all(float(p.abs().sum()) == 0 for p in params)  # the task's own tensors are untouched
    sam = optimizer_step_ratio(lambda ps: _ClosureSGD(ps), lambda ps: torch.optim.SGD(ps, lr=0.1), params,
                               needs_closure=True, pairs=3)
    assert sam.pairs == 3


class _ClosureSGD:
    """An optimizer whose step insists on a closure (as SAM's does)."""

    def __init__(self, params) -> None:
        self.params = list(params)

    def step(self, closure=None):
        assert closure is not None
        loss = closure()
        for p in self.params:
            p.data.add_(p.grad, alpha=-0.1)
        return loss
