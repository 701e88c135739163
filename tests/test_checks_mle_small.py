"""Tests of the missing_mass and tightness checks: one tiny cell each, and analyze can return *fails*."""

import jax

jax.config.update("jax_enable_x64", True)

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
    out = missing_mass.run_cell({"n": 10, "c": 1.0}, KEY, SEEDS)
    _finite(out)
    assert np.all(out["kl_mismatch"] == 0) and np.all(out["tabular_mismatch"] == 0)
    assert np.all(out["closed_cov_mismatch"] == 0)
    # Cov_N ∈ {0, p⋆} and is p⋆ exactly when p̂ = 0 (N ≥ 2, p⋆ = 1/n)
    np.testing.assert_allclose(out["cov_N2"], 0.1 * out["p_hat_zero"], atol=1e-15)
    np.testing.assert_array_equal(out["kl_inf"], out["p_hat_zero"])


def _mm_table(cov_of_n, zero_prob_of_n, kl_mismatch=0.0, seeds=40):
    rows = []
    for n in (10, 100, 1000):
        zeros = int(round(zero_prob_of_n(n) * seeds))
        for s in range(seeds):
            z = float(s < zeros)
            rows.append(dict(n=n, c=1.0, seed=s, p_hat_zero=z, kl_inf=z, kl_mismatch=kl_mismatch, kl_nan=0.0,
                             tabular_mismatch=0.0, closed_cov_mismatch=0.0,
                             cov_N2=z * cov_of_n(n), cov_N16=z * cov_of_n(n)))
    return ResultTable(rows)


def test_missing_mass_analyze_holds_on_theory_table():
    table = _mm_table(lambda n: 1.0 / n, lambda n: (1 - 1.0 / n) ** n)
    verdicts = _verdicts(missing_mass.analyze(table, "quick"))
    assert verdicts["quantile_slope_N2"] == Verdict.HOLDS
    assert verdicts["prob_p_hat_zero"] == Verdict.HOLDS
    assert verdicts["kl_inf_iff_p_hat_zero"] == Verdict.HOLDS


def test_missing_mass_analyze_fails_on_bad_table():
    # coverage decaying like 1/sqrt(n), p̂ = 0 on every run, KL mismatching: all three must fail
    table = _mm_table(lambda n: 1.0 / math.sqrt(n), lambda n: 1.0, kl_mismatch=1.0)
    verdicts = _verdicts(missing_mass.analyze(table, "quick"))
    assert verdicts["quantile_slope_N2"] == Verdict.FAILS
    assert verdicts["mean_slope_N16"] == Verdict.FAILS
    assert verdicts["prob_p_hat_zero"] == Verdict.FAILS
    assert verdicts["kl_inf_iff_p_hat_zero"] == Verdict.FAILS


def test_quantile_slope_recovers_power_law():
    rng = np.random.default_rng(1)
    x = np.array([10.0, 100.0, 1000.0])
    y = x[:, None] ** -0.5 * rng.uniform(0.5, 1.5, size=(3, 200))
    fit = missing_mass.quantile_slope(x, y, 0.9)
    assert fit.valid and fit.lo <= -0.5 <= fit.hi and fit.hi - fit.lo < 0.1


# ---------------------------------------------------------------------------
# tightness


def test_tightness_coarse_cell():
    out = tightness.run_cell(dict(kind="coarse", n=64, d=3, N=0.0, n_max=64), KEY, SEEDS)  # e^B = 5e·64 ≥ 512
    _finite(out)
    assert np.all(out["cov_spread_N"] <= 1e-12)
    assert np.all(out["law_gap"] <= 1e-6)
    assert np.all((out["cov_N2"] >= 0) & (out["cov_N2"] <= 1))


def test_tightness_fine_cells():
    out = tightness.run_cell(dict(kind="fine", n=32, d=4, N=16.0, n_max=32), KEY, SEEDS)
    _finite(out)
    assert np.all(out["closed_cov_mismatch"] == 0)
    out = tightness.run_cell(dict(kind="fine_crosscheck", n=16, d=2, N=4.0, n_max=16), KEY, SEEDS)
    _finite(out)
    assert np.all(out["finite_mismatch"] == 0)


def _tightness_table(coarse_cov, fine_cov, seeds=16, rng=np.random.default_rng(0)):
    rows = []
    cells = {(n, tightness.COARSE_D_FIXED) for n in (64, 128, 256, 512)} | {(256, d) for d in (3, 5, 9, 17)}
    for n, d in sorted(cells):
        for s in range(seeds):
            noise = 1 + 0.05 * rng.standard_normal()
            covs = {f"cov_N{int(N)}": coarse_cov(n, d, N) * noise for N in tightness.COARSE_N}
            rows.append(dict(kind="coarse", n=n, d=d, N=0.0, seed=s, **covs,
                             cov_spread_N=max(covs.values()) - min(covs.values()), closed_form_ok=1.0, law_gap=0.0))
    cells = {(n, 16.0) for n in (256, 1024, 4096)} | {(1024, N) for N in (2.0, 16.0, 256.0, 4096.0)}
    for n, N in sorted(cells):
        for s in range(seeds):
            rows.append(dict(kind="fine", n=n, d=32, N=N, seed=s, cov=fine_cov(n, N) * (1 + 0.05 * rng.standard_normal()),
                             mle_is_theta=1.0, closed_cov_mismatch=0.0))
    return ResultTable(rows)


def test_tightness_analyze_holds_on_theory_table():
    table = _tightness_table(lambda n, d, N: 0.2 * (d - 1) / n, lambda n, N: 4.0 / (n * math.log(N)))
    verdicts = _verdicts(tightness.analyze(table, "quick"))
    for name in ("coarse_slope_n", "coarse_slope_d", "coarse_slope_N", "coarse_flat_in_N", "fine_slope_n",
                 "fine_slope_log_N"):
        assert verdicts[name] == Verdict.HOLDS, name


def test_tightness_analyze_fails_on_bad_table():
    # coarse ∝ √d/√n and growing in N; fine ∝ 1/n with no log N dependence (the uncorrected rate)
    table = _tightness_table(lambda n, d, N: 0.2 * math.sqrt((d - 1) / n) * N**0.3, lambda n, N: 4.0 / n)
    verdicts = _verdicts(tightness.analyze(table, "quick"))
    for name in ("coarse_slope_n", "coarse_slope_d", "coarse_slope_N", "coarse_flat_in_N", "fine_slope_log_N"):
        assert verdicts[name] == Verdict.FAILS, name
