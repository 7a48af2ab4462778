"""How sure the board is: bootstrap intervals over seeds for the cells' means and for the ranking's scores.

The ranking's score (the area under the performance profile, optbench.leaderboard.profile) is a function of
every cell's seeds; resampling each cell's seeds with replacement and recomputing the whole profile gives an
interval for every optimizer's score and for its position. Two optimizers whose intervals overlap are not
separated by this evidence, and the pages say so instead of implying an order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optbench import stats
from optbench.leaderboard import profile

#: whole-profile resamples (each recomputes every cell); 400 keep the 2.5/97.5% ends stable to about ±0.01
N_BOOT = 400
#: cell columns that get an interval (mean over ok seeds)
INTERVAL_COLUMNS = ("final_test_accuracy", "final_test_loss", "time_to_target_s")


def cell_intervals(trials: pd.DataFrame, group: Sequence[str], columns: Sequence[str] = INTERVAL_COLUMNS
                   ) -> pd.DataFrame:
    """Per cell (the `group` columns), a 95% bootstrap interval of each column's mean over its ok seeds."""
    ok = trials[trials["status"] == "ok"]
    rows = []
    for key, grp in ok.groupby(list(group), sort=False):
        out = dict(zip(group, key if isinstance(key, tuple) else (key,), strict=True))
        for col in columns:
            if col not in grp:
                continue
            ci = stats.bootstrap(pd.to_numeric(grp[col], errors="coerce").to_numpy(dtype=float), n_boot=1000)
            out[f"{col}_lo"], out[f"{col}_hi"] = ci.lo, ci.hi
        rows.append(out)
    return pd.DataFrame(rows, columns=[*group, *[f"{c}_{e}" for c in columns for e in ("lo", "hi")]])


def _scores(times: np.ndarray, tau_max: float = profile.TAU_MAX) -> np.ndarray:
    """times[..., problem, optimizer] (inf: target not reached) -> score[..., optimizer] as profile_score does."""
    best = times.min(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(np.isfinite(best), times / np.maximum(best, 1e-12), np.inf)
    contrib = np.where(r <= tau_max, tau_max - np.clip(r, 1.0, None), 0.0)
    return contrib.mean(axis=-2) / (tau_max - 1.0)


def _positions(scores: np.ndarray) -> np.ndarray:
    """Competition ranking along the last axis: 1 + how many have a strictly higher score (ties share)."""
    return 1 + (scores[..., None, :] > scores[..., :, None]).sum(axis=-1)


def score_intervals(trials: pd.DataFrame, problems: Sequence[str], optimizers: Sequence[str],
                    n_boot: int = N_BOOT, seed: int = 11) -> pd.DataFrame:
    """Bootstrap the whole ranking: each cell's seeds are resampled, every score and position recomputed.

    `trials` must carry a `problem` column. A cell's time is the mean time-to-target when every resampled seed
    reached the target, else inf (the profile's rule); a cell nobody ran stays inf."""
    rng = np.random.default_rng(seed)
    p_index = {p: i for i, p in enumerate(problems)}
    o_index = {o: i for i, o in enumerate(optimizers)}
    times = np.full((n_boot, len(problems), len(optimizers)), np.inf)
    runs = trials[trials["status"] != "skipped"]
    for (problem, opt), grp in runs.groupby(["problem", "optimizer"], sort=False):
        if problem not in p_index or opt not in o_index:
            continue
        t = pd.to_numeric(grp["time_to_target_s"], errors="coerce").to_numpy(dtype=float)
        reached = (grp["status"].to_numpy() == "ok") & np.isfinite(t)
        idx = rng.integers(0, len(t), size=(n_boot, len(t)))
        all_reached = reached[idx].all(axis=1)
        mean_t = np.where(reached, t, 0.0)[idx].mean(axis=1)
        times[:, p_index[problem], o_index[opt]] = np.where(all_reached, mean_t, np.inf)
    scores = _scores(times)
    pos = _positions(scores)
    lo, hi = np.quantile(scores, [0.025, 0.975], axis=0)
    plo, phi = np.quantile(pos, [0.025, 0.975], axis=0)
    return pd.DataFrame({"optimizer": list(optimizers), "score_lo": lo, "score_hi": hi,
                         "rank_lo": np.floor(plo).astype(int), "rank_hi": np.ceil(phi).astype(int)})


def tie_positions(scores: pd.Series) -> pd.Series:
    """Competition ranking of exact scores: equal scores share the better position (1, 2, 2, 4)."""
    values = scores.to_numpy(dtype=float)
    return pd.Series([1 + int((values > v).sum()) for v in values], index=scores.index)


def separated(a_lo: float, a_hi: float, b_lo: float, b_hi: float) -> bool:
    """Whether two intervals do not overlap (the evidence orders them)."""
    return not (math.isnan(a_lo) or math.isnan(b_hi)) and (a_lo > b_hi or b_lo > a_hi)
