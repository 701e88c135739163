"""Tests of the SGD theory checks: one tiny cell each, and analyze can return *fails*."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from theory_checks import normalized_sgd_rates, sgd_horizon, sgd_lower_bound  # noqa: E402

KEY = jax.random.PRNGKey(0)
SEEDS = 3


def _finite(out, names, num_seeds=SEEDS):
    for name in names:
        assert name in out, name
        value = np.asarray(out[name])
        assert value.shape == (num_seeds,), (name, value.shape)
        assert np.all(np.isfinite(value)), (name, value)


def _table(rows_by_cell, seeds=8, noise=0.01, rng=np.random.default_rng(0)):
    rows = []
    for cell, metrics in rows_by_cell:
        for s in range(seeds):
            row = dict(cell, seed=s)
            for name, value in metrics.items():
                row[name] = float(value * (1 + noise * rng.standard_normal()))
            rows.append(row)
    return ResultTable(rows)


def _verdicts(summary):
    return {a.name: a.verdict for a in summary.assertions}


# ---------------------------------------------------------------------------
# run_cell on tiny cells


def test_sgd_horizon_cell():
    for method in ("vanilla", "normalized"):
        cell = dict(method=method, H=4, k=1, V=4, T=30, N=4.0)
        out = sgd_horizon.run_cell(cell, KEY, SEEDS)
        _finite(out, ["cov_avg", "kl_avg", "kl_bound"])
        assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= 1))
        assert np.all(out["kl_avg"] >= 0)
        # KL at θ_1 = 0 is large; the average must be below the first iterate's KL
        inst, _, kl_metric, _ = sgd_horizon.pivotal_setup(4, 1, 4)
        assert np.all(out["kl_avg"] <= float(kl_metric(np.zeros(5))) + 1e-9)


def test_stratified_checkpoints_cover_blocks():
    cps = sgd_horizon.stratified_checkpoints(100, 10, seed=3)
    assert len(cps) == 10
    for j, t in enumerate(cps):
        assert 1 + 10 * j <= t < 11 + 10 * j


def test_sgd_lower_bound_cell():
    for factor in (1 / 8, 4.0):
        cells = [c for c in sgd_lower_bound.grid("quick") if c["eta_factor"] == factor]
        cell = dict(cells[0], T=20)
        out = sgd_lower_bound.run_cell(cell, KEY, SEEDS)
        _finite(out, ["min_cov", "mean_cov", "max_theta1", "target", "bound_ok"])
        assert np.all((out["min_cov"] >= 0) & (out["min_cov"] <= out["mean_cov"] + 1e-12))
        if factor > 1:  # case A: oscillation, Cov_N = 1
            assert np.all(out["min_cov"] == 1.0)


def test_normalized_cell():
    cell = dict(sweep="K", H=4, T=30, K=2, k=1, V=4, N=4.0)
    out = normalized_sgd_rates.run_cell(cell, KEY, SEEDS)
    _finite(out, ["cov_avg", "cov_late", "kl_late", "kl_avg"])
    assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= 1))


# ---------------------------------------------------------------------------
# analyze can fail


def test_sgd_horizon_analyze_fails():
    rows = []
    for H, cov in zip([8, 32, 128], [0.3, 0.1, 0.03]):  # vanilla *decreasing*: growth claim fails
        rows.append((dict(method="vanilla", H=H, k=2, V=8, T=100, N=4.0),
                     dict(cov_avg=cov, kl_avg=5.0, kl_bound=1.0, eta=1e-3, sigma2=1.0)))  # KL above bound
        rows.append((dict(method="normalized", H=H, k=2, V=8, T=100, N=4.0),
                     dict(cov_avg=cov * H / 8, kl_avg=0.1, kl_bound=1.0, eta=1e-3, sigma2=1.0)))
    summary = sgd_horizon.analyze(_table(rows), "quick")
    v = _verdicts(summary)
    assert v["vanilla_cov_grows_with_H"] == Verdict.FAILS
    assert v["normalized_cov_no_growth_in_H"] == Verdict.FAILS
    assert v["vanilla_kl_bound_H8"] == Verdict.FAILS
    assert summary.verdict == Verdict.FAILS


def test_sgd_lower_bound_analyze_fails():
    rows = [(dict(T=100, H=16, N=4.0, eta_factor=f, eta=1e-4 * f),
             dict(min_cov=0.0, mean_cov=0.0, all_cov_one=0.0, max_theta1=1.0, target=1e-4,
                  construction_lower=1e-4, r=0.05, case_A=float(f >= 1), requirements_met=1.0,
                  B_bar=381.0, bound_ok=0.0)) for f in (0.5, 4.0)]
    summary = sgd_lower_bound.analyze(_table(rows, noise=0.0), "quick")
    assert summary.verdict == Verdict.FAILS
    assert all(a.verdict == Verdict.FAILS for a in summary.assertions)


def test_normalized_analyze_fails():
    rows = []
    for T in [250, 500, 1000]:
        rows.append((dict(sweep="T", H=32, T=T, K=1, k=2, V=8, N=4.0),
                     dict(cov_avg=0.01 * T / 250, cov_late=0.0, kl_late=0.1, kl_avg=0.1, eta=1e-2, lam=1.0, sigma2=1.0)))
    for K in [1, 4, 16]:
        rows.append((dict(sweep="K", H=32, T=2000, K=K, k=2, V=8, N=4.0),
                     dict(cov_avg=0.01, cov_late=0.01 * K, kl_late=0.1, kl_avg=0.1, eta=1e-2, lam=1.0, sigma2=1.0)))
    for H in [8, 32, 128]:
        rows.append((dict(sweep="H", H=H, T=1000, K=1, k=2, V=8, N=4.0),
                     dict(cov_avg=0.01 * H, cov_late=0.0, kl_late=0.1, kl_avg=0.1, eta=1e-2, lam=1.0, sigma2=1.0)))
    v = _verdicts(normalized_sgd_rates.analyze(_table(rows), "quick"))
    assert v["cov_slope_in_T"] == Verdict.FAILS
    assert v["floor_falls_with_K"] == Verdict.FAILS
    assert v["cov_no_growth_in_H"] == Verdict.FAILS
