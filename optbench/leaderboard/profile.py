"""Dolan–Moré performance profiles over time-to-target, scored as in AlgoPerf.

For each problem p (a task/preset) and optimizer s, the performance ratio is r(p, s) = t(p, s) / min_s t(p, s),
with t = inf when s did not reach the target. The profile rho_s(tau) is the fraction of problems with
r(p, s) <= tau; AlgoPerf integrates it over tau in [1, tau_max = 4]. Because rho is a step function the
integral is exact and short: each problem adds (tau_max - r) / |P| when r <= tau_max, so no grid is needed
and a hand-made example can be checked with pencil and paper.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

TAU_MAX = 4.0


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """`times`: rows are problems, columns optimizers, values seconds (inf or NaN: target not reached).
    Returns r = t / best t per row; a row where nobody reached the target is all inf."""
    t = times.astype(float).fillna(math.inf).clip(lower=1e-12)  # a zero time must not divide by zero
    ratios = t.div(t.min(axis=1), axis=0)  # inf / inf is NaN: nobody reached the target
    return ratios.where(np.isfinite(ratios), math.inf)


def rho(ratios: pd.DataFrame, tau: float) -> pd.Series:
    """Fraction of problems each optimizer solves within a factor tau of the best."""
    if ratios.empty:
        return pd.Series(dtype=float)
    return (ratios <= tau).sum(axis=0) / len(ratios)


def profile_area(ratios: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """Exact integral of rho(tau) over [1, tau_max], per optimizer (between 0 and tau_max - 1)."""
    if ratios.empty:
        return pd.Series(dtype=float)
    contrib = (tau_max - ratios.clip(lower=1.0)).where(ratios <= tau_max, 0.0)
    return contrib.sum(axis=0) / len(ratios)


def profile_score(ratios: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """The area divided by (tau_max - 1): 1 means fastest on every problem, 0 means never within tau_max."""
    return profile_area(ratios, tau_max) / (tau_max - 1.0)


def profile_steps(ratios: pd.DataFrame, optimizer: str, tau_max: float = TAU_MAX) -> tuple[list[float], list[float]]:
    """Breakpoints (tau, rho) of one optimizer's step function on [1, tau_max], for a 'hv' line plot."""
    col = ratios[optimizer]
    taus = sorted({1.0, tau_max, *[float(r) for r in col if 1.0 <= r <= tau_max]})
    return taus, [float(rho(ratios[[optimizer]], tau).iloc[0]) for tau in taus]
