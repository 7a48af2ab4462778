"""optbench.stats against scipy (an independent implementation) and against coverage on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from optbench.stats import average_ranks, bootstrap, paired_difference, spearman


def test_average_ranks_match_scipy_rankdata_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(7, 12)).astype(float)  # many ties
    np.testing.assert_allclose(average_ranks(x), sps.rankdata(x, axis=-1))


def test_spearman_estimate_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    y[:5] = y[0]  # ties on one side
    got = spearman(x, y)
    assert got.estimate == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert got.lo < got.estimate < got.hi and got.n == 40


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(2).exponential(size=30)
    ours = bootstrap(x, n_boot=20000, seed=3)
    ref = sps.bootstrap((x,), np.mean, method="percentile", n_resamples=20000, random_state=4).confidence_interval
    width = ref.high - ref.low
    assert ours.estimate == pytest.approx(x.mean())
    assert abs(ours.lo - ref.low) < 0.05 * width and abs(ours.hi - ref.high) < 0.05 * width


def test_bootstrap_mean_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(5)
    covered = 0
    for i in range(400):
        ci = bootstrap(rng.normal(1.0, 1.0, size=25), n_boot=1000, seed=i)
        covered += ci.lo <= 1.0 <= ci.hi
    assert 0.89 <= covered / 400 <= 0.985  # percentile bootstrap under-covers slightly at n = 25


def test_paired_difference_sees_a_shift_that_seed_noise_hides():
    rng = np.random.default_rng(6)
    seed_effect = rng.normal(0, 1.0, size=8)  # shared by both optimizers on the same seed
    a = seed_effect + 0.2 + rng.normal(0, 0.02, size=8)
    b = seed_effect + rng.normal(0, 0.02, size=8)
    paired = paired_difference(a, b)
    assert paired.excludes_zero and paired.lo > 0
    assert not (bootstrap(a).lo > bootstrap(b).hi)  # unpaired intervals overlap: no detectable difference


def test_degenerate_inputs_say_so():
    assert bootstrap([]).n == 0 and np.isnan(bootstrap([]).estimate)
    one = bootstrap([2.0, float("nan")])
    assert (one.estimate, one.lo, one.hi, one.n) == (2.0, 2.0, 2.0, 1) and not one.excludes_zero
    assert np.isnan(spearman([1, 2], [2, 1]).estimate)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1, 2], [1])
