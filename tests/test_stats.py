"""Tests of covsim.experiments.stats and the Summary/Verdict logic."""

import math

import numpy as np
import pytest

from covsim.experiments.check import Assertion, Summary, Verdict, summary_from_json, summary_to_json
from covsim.experiments.stats import (
    SlopeFit,
    bootstrap_ci,
    flat_assertion,
    growth_assertion,
    loglog_slope,
    mean_ci,
    monotone_assertion,
    no_growth_assertion,
    slope_assertion,
    zero_violation_assertion,
)

X = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def power_law(rng, slope=-0.5, scale=3.0, noise=0.05, seeds=32, x=X):
    return scale * x[:, None] ** slope * np.exp(noise * rng.standard_normal((len(x), seeds)))


def fit(slope, lo, hi):
    return SlopeFit(slope, lo, hi, intercept=0.0, n_boot=100)


def test_exact_power_law_recovered_with_zero_width_ci():
    f = loglog_slope(X, 3.0 * X[:, None] ** -0.5 * np.ones((1, 4)))
    assert f.valid
    assert f.slope == pytest.approx(-0.5, abs=1e-12)
    assert f.lo == pytest.approx(-0.5, abs=1e-12) and f.hi == pytest.approx(-0.5, abs=1e-12)
    assert math.exp(f.intercept) == pytest.approx(3.0)


def test_noisy_power_law_ci_contains_truth_and_is_narrow():
    f = loglog_slope(X, power_law(np.random.default_rng(1)), seed=3)
    assert f.valid and f.lo <= -0.5 <= f.hi
    assert f.lo < f.slope < f.hi
    assert 0 < f.hi - f.lo < 0.05
    assert f.n_boot == 2000


def test_bootstrap_ci_has_roughly_nominal_coverage():
    rng = np.random.default_rng(7)
    hits = 0
    for rep in range(100):
        y = power_law(rng, slope=-1.0, noise=0.5, seeds=16)
        f = loglog_slope(X, y, n_boot=400, seed=rep)
        hits += f.lo <= -1.0 <= f.hi
    assert hits >= 82  # nominal 95 (percentile bootstrap is a bit narrow for small S)


def test_fit_is_deterministic_and_leaves_global_rng_alone():
    y = power_law(np.random.default_rng(2))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = loglog_slope(X, y, seed=5), loglog_slope(X, y, seed=5)
    assert a == b
    assert np.array_equal(np.random.get_state()[1], before)
    assert loglog_slope(X, y, seed=6).lo != a.lo


@pytest.mark.parametrize(
    "y, why",
    [
        (np.zeros((6, 4)), "positive"),
        (-np.ones((6, 4)), "positive"),
        (np.full((6, 4), np.inf), "finite"),
        (np.full((6, 4), np.nan), "finite"),
    ],
)
def test_invalid_fits_are_flagged_not_raised(y, why):
    f = loglog_slope(X, y)
    assert not f.valid and why in f.why and math.isnan(f.slope)
    a = slope_assertion("s", f, -1, 0, what="slope of y in x")
    assert a.verdict == Verdict.INCONCLUSIVE and why in a.reason


def test_invalid_shapes_and_x():
    assert not loglog_slope([1.0], [[1.0]]).valid
    assert not loglog_slope([2.0, 2.0], np.ones((2, 3))).valid
    assert not loglog_slope([0.0, 1.0], np.ones((2, 3))).valid
    assert not loglog_slope(X, np.ones((5, 3))).valid


def test_many_zero_seeds_make_bootstrap_invalid():
    y = np.zeros((6, 4))
    y[:, 0] = 1.0  # mean positive, but 1/4 seeds: most resamples at some x are all zero
    f = loglog_slope(X, y)
    assert not f.valid and "bootstrap" in f.why


def test_slope_assertion_three_outcomes_and_reason_quotes_numbers():
    holds = slope_assertion("a", fit(-1.0, -1.05, -0.95), -1.2, -0.8, what="slope")
    fails = slope_assertion("a", fit(-0.5, -0.55, -0.45), -1.2, -0.8, what="slope")
    unsure = slope_assertion("a", fit(-0.8, -0.9, -0.7), -1.2, -0.8, what="slope")
    assert holds.verdict == Verdict.HOLDS
    assert fails.verdict == Verdict.FAILS
    assert unsure.verdict == Verdict.INCONCLUSIVE
    for text in ("-0.800", "-0.900", "-0.700", "-1.2", "-0.8"):
        assert text in unsure.reason
    assert holds.details["band"] == [-1.2, -0.8] and holds.details["slope"] == -1.0


def test_flat_no_growth_growth():
    assert flat_assertion("f", fit(0.01, -0.02, 0.04), 0.1).verdict == Verdict.HOLDS
    assert flat_assertion("f", fit(0.5, 0.4, 0.6), 0.1).verdict == Verdict.FAILS
    assert flat_assertion("f", fit(0.1, 0.0, 0.2), 0.1).verdict == Verdict.INCONCLUSIVE
    assert no_growth_assertion("g", fit(0.0, -0.1, 0.1), 0.2).verdict == Verdict.HOLDS
    assert no_growth_assertion("g", fit(0.5, 0.3, 0.7), 0.2).verdict == Verdict.FAILS
    assert no_growth_assertion("g", fit(0.2, 0.1, 0.3), 0.2).verdict == Verdict.INCONCLUSIVE
    assert growth_assertion("g", fit(1.0, 0.9, 1.1), 0.5).verdict == Verdict.HOLDS
    assert growth_assertion("g", fit(0.1, 0.0, 0.2), 0.5).verdict == Verdict.FAILS
    assert growth_assertion("g", fit(0.5, 0.4, 0.6), 0.5).verdict == Verdict.INCONCLUSIVE
    bad = SlopeFit(math.nan, math.nan, math.nan, math.nan, 0, valid=False, why="no data")
    for a in (no_growth_assertion("g", bad, 0.1), growth_assertion("g", bad, 0.1)):
        assert a.verdict == Verdict.INCONCLUSIVE and "no data" in a.reason


def test_monotone_assertion():
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    noise = 0.01 * rng.standard_normal((4, 20))
    down = np.array([4.0, 3.0, 2.0, 1.0])[:, None] + noise
    assert monotone_assertion("m", x, down).verdict == Verdict.HOLDS
    assert monotone_assertion("m", x, down, direction="increasing").verdict == Verdict.FAILS
    # unsorted x is sorted first
    assert monotone_assertion("m", x[::-1], down[::-1]).verdict == Verdict.HOLDS
    bump = np.array([4.0, 3.0, 3.5, 1.0])[:, None] + noise
    a = monotone_assertion("m", x, bump)
    assert a.verdict == Verdict.FAILS and a.details["violations"] == [1] and "x=2" in a.reason
    flat = 1.0 + noise
    assert monotone_assertion("m", x, flat).verdict == Verdict.INCONCLUSIVE
    assert monotone_assertion("m", x, flat, require_change=False).verdict == Verdict.HOLDS
    # a tiny wrong-way step within tolerance is allowed
    wiggle = np.array([4.0, 3.0, 3.001, 1.0])[:, None] + noise
    assert monotone_assertion("m", x, wiggle).verdict == Verdict.HOLDS
    # exact (S = 1) data: any wrong-way step beyond atol fails
    assert monotone_assertion("m", x, [3.0, 2.0, 2.0 + 1e-9, 1.0]).verdict == Verdict.FAILS
    assert monotone_assertion("m", x, [3.0, 2.0, 2.0 + 1e-9, 1.0], atol=1e-6).verdict == Verdict.HOLDS
    with pytest.raises(ValueError):
        monotone_assertion("m", x, down, direction="up")


def test_zero_violation_assertion():
    assert zero_violation_assertion("z", 0, 100).verdict == Verdict.HOLDS
    assert zero_violation_assertion("z", 3, 100).verdict == Verdict.FAILS
    assert "3 violation" in zero_violation_assertion("z", 3, 100).reason
    assert zero_violation_assertion("z", 0, 0).verdict == Verdict.INCONCLUSIVE


def test_mean_ci_and_bootstrap_ci():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    se = 1.0 / math.sqrt(3)
    assert m == 2.0 and lo == pytest.approx(2 - 1.959964 * se) and hi == pytest.approx(2 + 1.959964 * se)
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    y = np.random.default_rng(0).normal(10.0, 1.0, size=200)
    est, lo, hi = bootstrap_ci(y, np.median, seed=1)
    assert lo < est < hi and lo < 10.0 < hi and hi - lo < 0.5
    assert bootstrap_ci(y, seed=1) == bootstrap_ci(y, seed=1)


def test_summary_verdict_and_reason():
    h = Assertion("h", Verdict.HOLDS, "fine")
    i = Assertion("i", "inconclusive", "unsure")
    f = Assertion("f", Verdict.FAILS, "broken")
    assert Summary([]).verdict == Verdict.INCONCLUSIVE
    assert Summary([h]).verdict == Verdict.HOLDS and Summary([h]).reason == "h: fine"
    assert Summary([h, i]).verdict == Verdict.INCONCLUSIVE and Summary([h, i]).reason == "i: unsure"
    assert Summary([i, f, h]).verdict == Verdict.FAILS
    assert Summary([i, f, h]).reason == "i: unsure; f: broken"
    assert Verdict("holds") == "holds"


def test_summary_json_round_trip_with_non_finite_numbers():
    import json

    a = slope_assertion("a", fit(-1.0, -1.05, -0.95), -math.inf, -0.8, what="slope")
    s = Summary([a], details={"values": np.array([1.0, np.inf, np.nan]), "n": np.int64(3)})
    text = json.dumps(summary_to_json(s), allow_nan=False)
    back = summary_from_json(json.loads(text))
    assert back.verdict == s.verdict and back.reason == s.reason
    assert back.assertions[0].details["band"][0] == -math.inf
    assert back.details["values"][1] == math.inf and math.isnan(back.details["values"][2])
    assert back.details["n"] == 3


def test_slope_fit_dict_round_trip_and_label():
    f = loglog_slope(X, power_law(np.random.default_rng(4)))
    assert SlopeFit.from_dict(f.to_dict()) == f
    assert f.label("Cov_16").startswith("Cov_16: slope -0.5")
    bad = loglog_slope(X, np.zeros((6, 2)))
    assert bad.label("a") == "a: no fit"


def test_binomial_tails_match_scipy():
    from scipy.stats import binom

    from covsim.experiments.stats import binom_cdf, binom_sf

    for n, p in [(20, 0.25), (96, 0.05), (1000, 0.001)]:
        for k in (-1, 0, 1, 3, 10, n):
            assert binom_cdf(k, n, p) == pytest.approx(binom.cdf(k, n, p), abs=1e-12)
            assert binom_sf(k, n, p) == pytest.approx(binom.sf(k, n, p), abs=1e-12)


def test_bracket_robust_assertion_agrees_or_is_inconclusive():
    from covsim.experiments.check import Assertion, Verdict
    from covsim.experiments.stats import bracket_robust_assertion

    def judge(value):
        return Assertion("a", Verdict.HOLDS if value < 1.0 else Verdict.FAILS, f"value {value}", {"v": value})

    same = bracket_robust_assertion("a", judge, {"mid": 0.5, "lower": 0.4, "upper": 0.6}.get)
    assert same.verdict == Verdict.HOLDS and same.reason == "value 0.5"
    split = bracket_robust_assertion("a", judge, {"mid": 0.9, "lower": 0.8, "upper": 1.2}.get)
    assert split.verdict == Verdict.INCONCLUSIVE
    assert "too loose" in split.reason and "upper: fails" in split.reason and split.details == {"v": 0.9}
