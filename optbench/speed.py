"""Step-time ratio of an optimizer to a reference optimizer, measured interleaved in one process.

Two trials timed minutes apart on a shared machine disagree by factors (the load changes in between), so a
ratio of their medians is noise. Here both optimizers step side by side on copies of the same parameter
shapes with the same fixed gradients: A, B, B, A, A, B, ... (the order alternates so a slow drift cancels),
each pair giving one ratio t_A / t_B that the load at that moment scales alike. The reported ratio is the
median of those pair ratios; its interval is the distribution-free confidence interval of a median from
order statistics (the pair ratios' ranks under a binomial law), so nothing is assumed about the shape of the
noise. Threads are pinned for the measurement; the device is synchronised around each step where it has to
be (CUDA), nowhere else.

The reference is a setting (`RunSettings.speed_ref`, default "adamw"), never named by the engine.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: speed columns of a trial row (decision 5)
SPEED_COLUMNS = ("speed_ref", "opt_step_ratio", "opt_step_ratio_lo", "opt_step_ratio_hi")


@dataclass(frozen=True)
class Ratio:
    """Median pair ratio with its confidence interval, and the pair count it came from."""

    median: float
    lo: float
    hi: float
    pairs: int
    ms: float  # median step time of A, for information only (absolute times are not comparable)
    ref_ms: float

    def row(self, reference: str) -> dict[str, Any]:
        return {"speed_ref": reference, "opt_step_ratio": self.median, "opt_step_ratio_lo": self.lo,
                "opt_step_ratio_hi": self.hi}


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: the order statistics x_(j) and x_(n+1-j), with j the
    largest rank such that P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2. With fewer than 6 values no
    such j exists at 95%: the interval is the full range."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2
    cdf, j = 0.0, 0
    for k in range(n + 1):
        cdf += math.comb(n, k) / 2**n
        if cdf > alpha:
            j = k  # P(B <= k-1) <= alpha < P(B <= k): x_(k) .. x_(n+1-k) (1-based) covers the median
            break
    if j == 0:
        return xs[0], xs[-1]
    return xs[j - 1], xs[n - j]


def interleaved(step_a: Callable[[], Any], step_b: Callable[[], Any], pairs: int = 31, warmup: int = 3,
                clock: Callable[[], float] = time.perf_counter, sync: Callable[[], Any] | None = None,
                confidence: float = 0.95) -> Ratio:
    """Time `step_a` against `step_b` in alternating order (ABBA...) and summarise the pair ratios."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        step_a()
        step_b()
    sync()

    def one(step: Callable[[], Any]) -> float:
        t0 = clock()
        step()
        sync()
        return clock() - t0

    ratios, ta, tb = [], [], []
    for k in range(pairs):
        if k % 2 == 0:
            a, b = one(step_a), one(step_b)
        else:
            b, a = one(step_b), one(step_a)
        ta.append(a)
        tb.append(b)
        if b > 0:
            ratios.append(a / b)
    if not ratios:
        return Ratio(math.nan, math.nan, math.nan, 0, math.nan, math.nan)
    lo, hi = median_interval(ratios, confidence)
    return Ratio(statistics.median(ratios), lo, hi, len(ratios), statistics.median(ta) * 1e3,
                 statistics.median(tb) * 1e3)


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Hold torch's intra-op thread count fixed (at `threads`, or where it is) while timing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _clone_with_grads(params: Sequence[Any], seed: int) -> list[Any]:
    """Fresh leaf tensors of the same shapes, dtypes and device, each with a fixed random gradient."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for p in params:
        q = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(device=p.device, dtype=p.dtype)
        q.requires_grad_(True)
        q.grad = (torch.randn(p.shape, generator=gen, dtype=torch.float32) * 1e-3).to(device=p.device, dtype=p.dtype)
        out.append(q)
    return out


def optimizer_step_ratio(build: Callable[[list[Any]], Any], build_ref: Callable[[list[Any]], Any],
                         params: Sequence[Any], needs_closure: bool = False, pairs: int = 31, warmup: int = 3,
                         threads: int | None = None, clock: Callable[[], float] = time.perf_counter) -> Ratio:
    """Ratio of `build(params).step()` to `build_ref(params).step()` on the shapes of `params` (copies; the
    task's own tensors are not touched). Gradients are fixed, so both optimizers do their full arithmetic on
    every step. An optimizer that `needs_closure` gets one that returns a zero loss and leaves the gradients:
    what is timed is the optimizer's own work, not its extra forward/backward passes (those are in the
    trial's step time)."""
    import torch

    device = params[0].device if params else torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    opt = build(_clone_with_grads(params, 0))
    ref = build_ref(_clone_with_grads(params, 0))
    zero = torch.zeros((), device=device)

    def step_a() -> Any:
        return opt.step((lambda *args, **kwargs: zero) if needs_closure else None)

    with pinned_threads(threads):
        return interleaved(step_a, ref.step, pairs=pairs, warmup=warmup, clock=clock, sync=sync)


def is_slower(cand: tuple[float, float, float], base: tuple[float, float, float], tol: float) -> bool:
    """The candidate's ratio is slower than the baseline's only when the intervals say so: even the
    candidate's lower bound exceeds the baseline's upper bound by more than `tol` (a fraction)."""
    return bool(slower_mask(cand[1], base[2], tol))


def slower_mask(cand_lo: Any, base_hi: Any, tol: float) -> Any:
    """is_slower over arrays of the candidate's lower bounds and the baseline's upper bounds (the gate judges
    every cell at once): NaN or a non-positive upper bound never counts as slower."""
    import numpy as np

    cand_lo, base_hi = np.asarray(cand_lo, dtype=float), np.asarray(base_hi, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (base_hi > 0) & (cand_lo / np.where(base_hi > 0, base_hi, 1.0) - 1 > tol)
