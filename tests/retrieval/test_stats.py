"""retrieval.stats: relative change, bootstrap interval and permutation p-value (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.stats import compare_groups


def test_no_effect_mostly_not_significant():
    rng = np.random.default_rng(1)
    p = []
    for seed in range(20):
        c, t = rng.poisson(0.4, 200), rng.poisson(0.4, 200)
        p.append(compare_groups(c, np.ones(200), t, np.ones(200), resamples=400, seed=seed).p_value)
    assert np.mean(np.array(p) > 0.05) >= 0.8


def test_real_effect_is_found_with_interval_around_it():
    rng = np.random.default_rng(2)
    c, t = rng.poisson(0.4, 400), rng.poisson(0.8, 400)
    r = compare_groups(c, np.ones(400), t, np.ones(400), resamples=500)
    assert r.p_value < 0.01 and r.ci_low > 0 and r.ci_low <= r.rel_change <= r.ci_high
    assert r.rel_change == pytest.approx(t.mean() / c.mean() - 1)


def test_ratio_of_sums_metric():
    clicks_c, imps_c = np.array([1, 0, 3]), np.array([10, 10, 10])
    clicks_t, imps_t = np.array([2, 2]), np.array([5, 15])
    r = compare_groups(clicks_c, imps_c, clicks_t, imps_t, resamples=100)
    assert r.control == pytest.approx(4 / 30) and r.treatment == pytest.approx(4 / 20)
    assert r.rel_change == pytest.approx((4 / 20) / (4 / 30) - 1)
    assert (r.n_control, r.n_treatment) == (3, 2)


def test_bad_input():
    with pytest.raises(ValueError, match="same length"):
        compare_groups([1, 2], [1], [1], [1])
    with pytest.raises(ValueError, match="empty group"):
        compare_groups([], [], [1], [1])
