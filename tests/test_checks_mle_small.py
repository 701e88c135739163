"""Tests of the missing_mass and tightness checks: one tiny cell each, and analyze can return *fails*."""

import jax


import math  # noqa: E402

import numpy as np  # noqa: E402

from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from theory_checks import missing_mass, tightness  # noqa: E402

KEY = jax.random.PRNGKey(0)
SEEDS = 3


def _finite(out, num_seeds=SEEDS):
    for name, value in out.items():
        value = np.asarray(value)
        assert value.shape == (num_seeds,), (name, value.shape)
        assert np.all(np.isfinite(value)), (name, value)


def _verdicts(summary):
    return {a.name: a.verdict for a in summary.assertions}


# ---------------------------------------------------------------------------
# missing_mass


def test_missing_mass_cell_is_consistent():
    out = missing_mass.run_cell({"n": 10, "c": 1.0, "variant": "mle"}, KEY, SEEDS)
    _finite(out)
    assert np.all(out["kl_mismatch"] == 0) and np.all(out["tabular_mismatch"] == 0)
    assert np.all(out["closed_cov_mismatch"] == 0)
    # Cov_N ∈ {0, p⋆} and is p⋆ exactly when p̂ = 0 (N ≥ 2, p⋆ = 1/n)
    np.testing.assert_allclose(out["cov_N2"], 0.1 * out["p_hat_zero"], atol=1e-15)
    np.testing.assert_array_equal(out["kl_inf"], out["p_hat_zero"])


def test_missing_mass_grids():
    for size in ("tiny", "quick", "full"):
        for cells in (missing_mass.grid(size), missing_mass.control_grid(size)):
            assert cells and all(c["c"] / c["n"] <= 0.5 for c in cells)
    assert all(c["variant"] == "control" for c in missing_mass.control_grid("quick"))


def test_sup_scaled_quantile_brute_force():
    from scipy.stats import binom

    for n in (10, 30, 100):
        for N in (2.0, 16.0):
            for delta in (0.1, 0.01):
                sup, arg = missing_mass.sup_scaled_quantile(n, N, delta)
                cs = np.linspace(1e-3, n / 2, 20001)
                # brute force: q_{1-δ} = p⋆ iff P(k ≤ n p⋆/N) > δ (k integer, ties counted)
                hit = binom.cdf(np.floor(cs / N + 1e-9), n, cs / n)
                brute = np.max(np.where(hit > delta, cs, 0.0))
                assert brute <= sup + 1e-9
                assert sup - brute <= n / 2 / 20000 + 1e-6, (n, N, delta, sup, brute)
    # the Poisson-limit values quoted in the issue and docstring
    assert abs(missing_mass.sup_scaled_quantile(100000, 2.0, 0.1)[0] - 6.68) < 0.01
    assert abs(missing_mass.sup_scaled_quantile(100000, 2.0, 0.01)[0] - 20.14) < 0.01


def test_exact_quantile_matches_expected_coverage():
    from covsim.instances.statistical import bernoulli_expected_coverage

    for n, c in ((30, 1.0), (100, 4.0), (300, 8.0)):
        for N in (2.0, 16.0):
            hit = float(missing_mass.hit_probability(n, c, N))
            np.testing.assert_allclose(c / n * hit, float(bernoulli_expected_coverage(c / n, n, N)), rtol=1e-10)


def _mm_table(zero_prob, variant="mle", kl_mismatch=0.0, seeds=200, hit_prob=None):
    rows = []
    for n in (30, 300):
        for c in (1.0, 4.0):
            p0 = zero_prob(n, c)
            hits = {N: (missing_mass.hit_probability(n, c, N) if hit_prob is None else hit_prob) for N in (2.0, 16.0)}
            for s in range(seeds):
                u = (s + 0.5) / seeds
                z = float(u < p0)
                rows.append(dict(n=n, c=c, variant=variant, seed=s, p_hat_zero=z, kl_inf=z,
                                 kl_mismatch=kl_mismatch, kl_nan=0.0, tabular_mismatch=0.0,
                                 closed_cov_mismatch=0.0, p_hat=0.0 if z else 1.0 / n, k=0.0, kl_finite=0.0,
                                 cov_N2=(c / n) * float(u < hits[2.0]), cov_N16=(c / n) * float(u < hits[16.0])))
    return ResultTable(rows)


def _mm_verdicts(table):
    return {a.name: a.verdict for a in missing_mass.CHECK.judge(missing_mass.analyze(table, "quick")).assertions}


def test_missing_mass_analyze_holds_on_theory_table():
    v = _mm_verdicts(_mm_table(lambda n, c: (1 - c / n) ** n, seeds=2000))
    assert all(x == Verdict.HOLDS for x in v.values()), v


def test_missing_mass_analyze_fails_on_bad_table_and_control():
    v = _mm_verdicts(_mm_table(lambda n, c: 1.0, kl_mismatch=1.0, hit_prob=1.0))
    assert v["prob_p_hat_zero"] == Verdict.FAILS
    assert v["cov_law_matches_binomial"] == Verdict.FAILS
    assert v["kl_inf_iff_p_hat_zero"] == Verdict.FAILS
    v = _mm_verdicts(_mm_table(lambda n, c: (1 - c / n) ** n, variant="control"))
    assert v["quantile_bound_sharp"] == Verdict.FAILS


# ---------------------------------------------------------------------------
# tightness


def test_tightness_coarse_cell():
    out = tightness.run_cell(dict(kind="coarse", n=64, d=3, N=0.0, n_max=64, variant="mle"), KEY, SEEDS)  # e^B >= 512
    _finite(out)
    assert np.all(out["cov_spread_N"] <= 1e-12)
    assert np.all(out["law_gap"] <= 1e-6)
    assert np.all((out["cov_N2"] >= 0) & (out["cov_N2"] <= 1))


def test_tightness_fine_cells():
    out = tightness.run_cell(dict(kind="fine", n=32, d=4, N=16.0, n_max=32, variant="mle"), KEY, SEEDS)
    _finite(out)
    assert np.all(out["closed_cov_mismatch"] == 0)
    out = tightness.run_cell(dict(kind="fine_crosscheck", n=16, d=2, N=4.0, n_max=16, variant="mle"), KEY, SEEDS)
    _finite(out)
    assert np.all(out["finite_mismatch"] == 0)


def test_tightness_grids():
    for size in ("tiny", "quick", "full"):
        cells = tightness.grid(size)
        assert all(c["n"] >= c["d"] for c in cells if c["kind"] == "coarse")
        assert all(c["n"] >= 2 * c["d"] and c["N"] >= 2 for c in cells if c["kind"] == "fine")
        assert all(c["variant"] == "control" for c in tightness.control_grid(size))


def _tightness_table(coarse_cov, fine_cov, seeds=64, variant="mle", fine_hit=0.8, rng=None):
    rng = np.random.default_rng(0) if rng is None else rng
    rows = []
    cells = {(n, tightness.COARSE_D_FIXED) for n in (64, 128, 256, 512)} | {(256, d) for d in (3, 5, 9, 17)}
    for n, d in sorted(cells):
        for s in range(seeds):
            noise = 1 + 0.05 * rng.standard_normal()
            covs = {f"cov_N{int(N)}": coarse_cov(n, d, N) * noise for N in tightness.COARSE_N}
            rows.append(dict(kind="coarse", n=n, d=d, N=0.0, variant=variant, seed=s, **covs,
                             cov_spread_N=max(covs.values()) - min(covs.values()), closed_form_ok=1.0, law_gap=0.0))
    cells = {(n, 16.0) for n in (256, 1024, 4096)} | {(1024, N) for N in (2.0, 16.0, 256.0, 4096.0)}
    for n, N in sorted(cells):
        for s in range(seeds):
            hit = (s + 0.5) / seeds < fine_hit
            rows.append(dict(kind="fine", n=n, d=32, N=N, variant=variant, seed=s,
                             cov=fine_cov(n, N) * hit, mle_is_theta=float(hit), closed_cov_mismatch=0.0))
    for s in range(seeds):
        rows.append(dict(kind="fine_crosscheck", n=64, d=3, N=16.0, variant=variant, seed=s, cov=0.0,
                         mle_is_theta=0.0, finite_mismatch=0.0))
    return ResultTable(rows)


def _t_verdicts(table):
    return {a.name: a.verdict for a in tightness.CHECK.judge(tightness.analyze(table, "quick")).assertions}


def _coarse_theory(n, d, N):
    from covsim.instances.statistical import coarse_tightness_expected_coverage

    return float(coarse_tightness_expected_coverage(n, d))


def test_tightness_analyze_holds_on_theory_table():
    table = _tightness_table(_coarse_theory, lambda n, N: 0.125 * 32 / (n * math.log(N)))
    v = _t_verdicts(table)
    assert all(x == Verdict.HOLDS for x in v.values()), v


def test_tightness_analyze_fails_on_bad_table_and_control():
    # coarse ∝ √d/√n, growing in N and below (d-1)/(10n); fine ∝ 1/n with no log N dependence, rarely hit
    table = _tightness_table(lambda n, d, N: 0.01 * math.sqrt((d - 1) / n) * N**0.3 / 8,
                             lambda n, N: 4.0 / n, seeds=128)
    v = _t_verdicts(table)
    for name in ("coarse_slope_n", "coarse_slope_d", "coarse_flat_in_N", "fine_slope_log_N",
                 "coarse_lower_bound_w_p_half", "coarse_mean_matches_closed_form"):
        assert v[name] == Verdict.FAILS, name
    # the fine construction's MLE rarely leaves π_D: the with-probability-0.1 event fails
    table = _tightness_table(_coarse_theory, lambda n, N: 0.125 * 32 / (n * math.log(N)), fine_hit=0.02, seeds=128)
    assert _t_verdicts(table)["fine_lower_bound_w_p_tenth"] == Verdict.FAILS
    table = _tightness_table(_coarse_theory, lambda n, N: 0.125 * 32 / (n * math.log(N)), variant="control",
                             seeds=128)
    v = _t_verdicts(table)
    assert v["coarse_lower_bound_w_p_half"] == Verdict.FAILS
    assert v["fine_lower_bound_w_p_tenth"] == Verdict.FAILS
