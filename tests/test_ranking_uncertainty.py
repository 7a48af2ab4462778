"""Ranking uncertainty: the vectorised bootstrap score agrees with the exact profile score, ties are ties,
and intervals widen with seed noise and shrink without it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optbench.leaderboard import profile
from optbench.leaderboard.uncertainty import _scores, score_intervals, tie_positions


def test_vectorised_scores_equal_the_profile_module_exactly():
    rng = np.random.default_rng(0)
    times = rng.uniform(1, 6, size=(5, 4))
    times[1, 2] = np.inf
    times[3, :] = np.inf  # a task nobody solved
    frame = pd.DataFrame(times, index=[f"p{i}" for i in range(5)], columns=list("abcd"))
    expect = profile.profile_score(profile.performance_ratios(frame))
    np.testing.assert_allclose(_scores(times), expect.to_numpy(), atol=1e-12)


def _trials(times_by_opt):
    rows = []
    for opt, times in times_by_opt.items():
        for seed, t in enumerate(times):
            rows.append(dict(problem="p/smoke", optimizer=opt, seed=seed, status="ok",
                             time_to_target_s=t if math.isfinite(t) else None))
    return pd.DataFrame(rows)


def test_identical_seeds_give_a_point_interval_and_noise_widens_it():
    exact = score_intervals(_trials({"a": [1.0] * 5, "b": [2.0] * 5}), ["p/smoke"], ["a", "b"])
    assert list(exact["score_lo"]) == list(exact["score_hi"]) == [1.0, 2 / 3]
    assert list(exact["rank_lo"]) == list(exact["rank_hi"]) == [1, 2]
    noisy = score_intervals(_trials({"a": [1.0, 3.0, 1.0, 3.0, 1.0], "b": [2.0, 1.5, 2.5, 2.0, 1.5]}),
                            ["p/smoke"], ["a", "b"])
    assert (noisy["score_hi"] - noisy["score_lo"] > 0.1).all() and noisy["rank_lo"].min() == 1


def test_a_seed_that_misses_the_target_puts_zero_inside_the_interval():
    out = score_intervals(_trials({"a": [1.0, 1.0, float("nan"), 1.0], "b": [2.0] * 4}), ["p/smoke"], ["a", "b"])
    a = out.set_index("optimizer").loc["a"]
    assert a["score_lo"] < 1.0 and a["score_hi"] == 1.0  # resamples without the miss are still perfect


def test_equal_scores_share_a_position():
    assert list(tie_positions(pd.Series([0.9, 0.5, 0.5, 0.0, 0.0]))) == [1, 2, 2, 4, 4]
