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
# the separation checks (sgd_horizon, sgd_lower_bound, normalized_sgd_rates) on two_prompts


def _judged(check, rows, seeds=8, noise=0.01):
    return check.judge(check.analyze(_table(rows, seeds=seeds, noise=noise), "quick"))


def test_two_prompts_exact_metrics_match_enumeration():
    import covsim
    from theory_checks import _separation

    inst = _separation.two_prompts(6, 3)
    for theta in (np.zeros(2), np.array([0.3, -0.2]), np.array([0.45, 0.9])):
        for N in (2.0, 4.0, 16.0):
            brute = float(covsim.coverage(inst.truth, inst.model(theta), inst.mu, N, method="exact"))
            assert abs(float(_separation.exact_coverage(theta, N, 6, 3)) - brute) < 1e-12
        kl = float(covsim.kl(inst.truth, inst.model(theta), inst.mu))
        assert abs(float(_separation.exact_kl(theta, 6, 3)) - kl) < 1e-12
    assert abs(_separation.sigma2_star(6, 3) - float(covsim.inherent_variance(inst.truth, inst.mu))) < 1e-9


def test_theorem_normalized_meets_both_requirements():
    import math

    from theory_checks import _separation

    for T in (10, 10_000, 10**9):
        eta, lam = _separation.theorem_normalized(4.0, sigma2=10.0, T=T)
        assert lam >= 8 * math.log(4.0) - 1e-9 and eta * lam <= math.log(4.0) / 16 + 1e-12


def test_sgd_horizon_cell():
    for method, variant in (("vanilla", "theorem"), ("normalized", "theorem"), ("normalized", "unnormalized")):
        cell = dict(T=30, K=1, N=4.0, k=2, method=method, variant=variant, H=4, eta=0.01)
        out = sgd_horizon.run_cell(cell, KEY, SEEDS)
        _finite(out, ["cov_avg", "kl_avg", "eta_used", "lam", "sigma2"])
        assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= 1)) and np.all(out["kl_avg"] >= 0)


def _horizon_rows(vanilla_growth, normalized_growth):
    rows = []
    for H in (8, 32, 128):
        for j, eta in enumerate((0.1, 0.01, 0.001)):
            level = 0.01 * (H / 8) ** vanilla_growth * (1 + (j - 1) ** 2)
            rows.append((dict(T=100, K=1, N=4.0, k=8, method="vanilla", variant="theorem", H=H, eta=eta),
                         dict(cov_avg=level, kl_avg=0.1, eta_used=eta, lam=0.0, sigma2=1.0)))
        rows.append((dict(T=100, K=1, N=4.0, k=8, method="normalized", variant="theorem", H=H, eta=0.0),
                     dict(cov_avg=0.02 * (H / 8) ** normalized_growth, kl_avg=0.1, eta_used=1 / 128, lam=11.0,
                          sigma2=1.0)))
    return rows


def test_sgd_horizon_analyze_holds_and_fails():
    holds = _judged(sgd_horizon.CHECK, _horizon_rows(0.8, 0.0))
    assert holds.verdict == Verdict.HOLDS, holds.reason
    fails = _judged(sgd_horizon.CHECK, _horizon_rows(-0.5, 0.8))
    v = _verdicts(fails)
    assert v["vanilla_best_eta_grows"] == Verdict.FAILS and v["normalized_no_growth_in_H"] == Verdict.FAILS


def test_sgd_lower_bound_cell():
    for variant in ("theorem", "init_at_optimum"):
        cell = dict(T=30, H=4, N=4.0, k=2, eta=0.01, variant=variant)
        out = sgd_lower_bound.run_cell(cell, KEY, SEEDS)
        _finite(out, ["cov_avg", "kl_avg", "target", "above"])
        assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= 1))
        if variant == "init_at_optimum":  # θ_1 = θ⋆ and a small step: Cov_N(θ_1) = 0
            assert np.all(out["cov_avg"] < 0.05)


def test_sgd_lower_bound_analyze_holds_and_fails():
    def rows(level):
        out = []
        for H in (8, 128):
            target = sgd_lower_bound.C_CONST * sgd_lower_bound.rate(1000, H, 4.0)
            for eta in (0.1, 0.01):
                cov = level * target
                out.append((dict(T=1000, H=H, N=4.0, k=8, eta=eta, variant="theorem"),
                            dict(cov_avg=cov, kl_avg=0.1, target=target, above=float(cov >= target), sigma2=1.0)))
        return out

    assert _judged(sgd_lower_bound.CHECK, rows(3.0), noise=0.0).verdict == Verdict.HOLDS
    assert _judged(sgd_lower_bound.CHECK, rows(0.3), noise=0.0).verdict == Verdict.FAILS


def test_normalized_cell():
    for arm in ("normalized", "vanilla"):
        cell = dict(arm=arm, variant="theorem", T=40, K=2, H=4, k=2, N=4.0)
        out = normalized_sgd_rates.run_cell(cell, KEY, SEEDS)
        _finite(out, ["cov_avg", "kl_avg", "late_kl", "bound"])
        assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= 1)) and np.all(out["late_kl"] >= 0)


def test_normalized_analyze_holds_and_fails():
    def rows(cov_scale, kl_trend):
        out = []
        for T, K in ((1000, 1), (4000, 1), (1000, 4)):
            b = normalized_sgd_rates.bound(T, K, 4.0, 8.0)
            for arm in ("normalized", "vanilla"):
                out.append((dict(arm=arm, variant="theorem", T=T, K=K, H=16, k=8, N=4.0),
                            dict(cov_avg=cov_scale * b, kl_avg=0.1, late_kl=0.02 * K ** kl_trend, bound=b,
                                 eta_used=1 / 128, lam=11.0, sigma2=8.0)))
        return out

    assert _judged(normalized_sgd_rates.CHECK, rows(0.5, -0.5)).verdict == Verdict.HOLDS
    v = _verdicts(_judged(normalized_sgd_rates.CHECK, rows(2.0, 0.5)))
    assert v["avg_cov_within_thm51_bound"] == Verdict.FAILS and v["late_kl_falls_with_K"] == Verdict.FAILS
