"""Uncertainty for the numbers the board publishes: bootstrap intervals, paired differences, rank correlation.

A benchmark that ranks optimizers from three to five seeds has to say how sure it is. Everything here is the
plain percentile bootstrap over the unit that was actually repeated (seeds, or trials), with a fixed random
generator so that a rebuilt board shows the same intervals. Pure numpy: the leaderboard, `optbench report` and
the gate all call these, and the tests check them against scipy and against coverage on simulated data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: resamples per interval; 2,000 keeps the Monte-Carlo error of a 95% percentile interval's ends well under
#: the intervals' own width for the 3-50 values a board cell has
N_BOOT = 2000
LEVEL = 0.95
SEED = 20250301


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided percentile-bootstrap interval; `n` is how many values it came from."""

    estimate: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.n > 1 and (self.lo > 0 or self.hi < 0)

    def fmt(self, digits: int = 3) -> str:
        if not np.isfinite(self.estimate):
            return "—"
        if self.n < 2 or not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return f"{self.estimate:.{digits}g}"
        return f"{self.estimate:.{digits}g} [{self.lo:.{digits}g}, {self.hi:.{digits}g}]"


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(SEED if seed is None else seed)


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def bootstrap(values: Sequence[float], statistic: Callable[[np.ndarray], np.ndarray] | None = None,
              level: float = LEVEL, n_boot: int = N_BOOT, seed: int | None = None) -> Interval:
    """Percentile-bootstrap interval of `statistic` (default: the mean) over the finite `values`.

    `statistic` takes a 2-D array (resamples x values) and returns one number per resample. With fewer than two
    values there is no spread to resample: the interval is the estimate itself and `n` says so."""
    x = _clean(values)
    stat = statistic or (lambda a: a.mean(axis=-1))
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    estimate = float(stat(x[None, :])[0])
    if len(x) < 2:
        return Interval(estimate, estimate, estimate, len(x))
    idx = _rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    boots = stat(x[idx])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return Interval(estimate, float(lo), float(hi), len(x))


def paired_difference(a: Sequence[float], b: Sequence[float], **kw) -> Interval:
    """Mean of a − b over pairs (the same seed on the same task), with a bootstrap interval over pairs.

    Pairs where either side is missing are dropped; pairing removes the seed-to-seed variation both share
    (data order, initialisation), which is why a paired interval is narrower than two separate ones."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_.shape != b_.shape:
        raise ValueError(f"paired samples differ in length: {a_.shape} vs {b_.shape}")
    keep = np.isfinite(a_) & np.isfinite(b_)
    return bootstrap(a_[keep] - b_[keep], **kw)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing their average rank (what Spearman's rho needs)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, axis=-1, kind="mergesort")
    ranks = np.empty_like(x)
    n = x.shape[-1]
    base = np.arange(1, n + 1, dtype=float)
    np.put_along_axis(ranks, order, np.broadcast_to(base, x.shape).copy(), axis=-1)
    # average the ranks of tied values, row by row (rows are short: tens of trials)
    flat_x, flat_r = x.reshape(-1, n), ranks.reshape(-1, n)
    for row_x, row_r in zip(flat_x, flat_r, strict=True):
        values, inverse, counts = np.unique(row_x, return_inverse=True, return_counts=True)
        if len(values) == n:
            continue
        sums = np.zeros(len(values))
        np.add.at(sums, inverse, row_r)
        row_r[:] = (sums / counts)[inverse]
    return flat_r.reshape(x.shape)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def spearman(x: Sequence[float], y: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT,
             seed: int | None = None) -> Interval:
    """Spearman's rank correlation of the finite (x, y) pairs, with a bootstrap interval over pairs.

    Resamples whose ranks are constant on one side have no correlation and are left out of the interval."""
    x_, y_ = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x_) & np.isfinite(y_)
    x_, y_ = x_[keep], y_[keep]
    n = len(x_)
    if n < 3:
        return Interval(float("nan"), float("nan"), float("nan"), n)
    rho = float(_pearson_rows(average_ranks(x_)[None], average_ranks(y_)[None])[0])
    idx = _rng(seed).integers(0, n, size=(n_boot, n))
    boots = _pearson_rows(average_ranks(x_[idx]), average_ranks(y_[idx]))
    boots = boots[np.isfinite(boots)]
    if len(boots) < n_boot // 2:
        return Interval(rho, float("nan"), float("nan"), n)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return Interval(rho, float(lo), float(hi), n)
