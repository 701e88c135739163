"""Tests of the mle_rates and variance_lower_bound theory checks (tiny cells, synthetic tables)."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import theory_checks.mle_rates as mle_rates  # noqa: E402
import theory_checks.variance_lower_bound as vlb  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402


def _verdicts(summary):
    return {a.name: a.verdict for a in summary.assertions}


def test_mle_rates_run_cell_tiny():
    out = mle_rates.run_cell(dict(H=4, k=2, n=4, n_max=8, V=4), jax.random.PRNGKey(0), 3)
    for N in mle_rates.N_VALUES:
        cov = out[mle_rates._metric(N)]
        hw = out[f"cov_halfwidth_N{int(N)}"]
        assert cov.shape == (3,) and np.all(np.isfinite(cov)) and np.all((cov >= -1e-12) & (cov <= 1 + 1e-12))
        assert np.all(hw >= -1e-12)
    assert np.all(out["kl"] >= -1e-12)
    # coverage is non-increasing in N seed by seed (same fitted model)
    covs = np.stack([out[mle_rates._metric(N)] - out[f"cov_halfwidth_N{int(N)}"] for N in mle_rates.N_VALUES])
    highs = np.stack([out[mle_rates._metric(N)] + out[f"cov_halfwidth_N{int(N)}"] for N in mle_rates.N_VALUES])
    assert np.all(covs[1:] <= highs[:-1] + 1e-9)


def _mle_table(cov_fn, seeds=8):
    rows = []
    rng = np.random.default_rng(0)
    for cell in mle_rates.grid("quick"):
        s2 = 200.0 * cell["k"]
        for s in range(seeds):
            r = dict(cell, seed=s, sigma2=s2, kl=0.1)
            for N in mle_rates.N_VALUES:
                r[mle_rates._metric(N)] = cov_fn(cell, N) * (1 + 0.01 * rng.standard_normal())
                r[f"cov_halfwidth_N{int(N)}"] = 0.0
            rows.append(r)
    return ResultTable(rows)


def test_mle_rates_analyze_holds_and_fails():
    good = _mle_table(lambda c, N: 0.5 * c["k"] ** 0.5 * c["n"] ** -0.7 / np.log(N))
    v = _verdicts(mle_rates.analyze(good, "quick"))
    assert v.pop("increasing_in_sigma2") == Verdict.INCONCLUSIVE  # reported only
    assert all(x == Verdict.HOLDS for x in v.values()), v
    # decays slower than the fine term, grows with H and with N: every gated assertion fails
    bad = _mle_table(lambda c, N: 1e-3 * c["H"] / c["k"] * c["n"] ** -0.2 * np.log(N))
    v = _verdicts(mle_rates.analyze(bad, "quick"))
    assert v.pop("increasing_in_sigma2") == Verdict.INCONCLUSIVE
    assert all(x == Verdict.FAILS for x in v.values()), v


def test_variance_lower_bound_run_cell_tiny():
    out = vlb.run_cell(dict(H=12, n=20, N=2.0, n_max=40), jax.random.PRNGKey(1), 3)
    assert np.all(np.isfinite(out["cov"])) and np.all((out["cov"] >= -1e-12) & (out["cov"] <= 1 + 1e-12))
    assert np.all(out["cov"] <= out["p"] + 1e-9)  # only prompt + can be covered
    assert np.all((out["plus_count"] >= 0) & (out["plus_count"] <= 20))


def _vlb_table(cov_fn, seeds=8):
    rng = np.random.default_rng(1)
    return ResultTable(
        dict(cell, seed=s, cov=cov_fn(cell) * (1 + 0.01 * rng.standard_normal()), cov_halfwidth=0.0,
             plus_count=3.0, kl=0.1, p=0.1, sigma2=1.0, rate=0.1)
        for cell in vlb.grid("quick") for s in range(seeds))


def test_variance_lower_bound_analyze_holds_and_fails():
    good = _vlb_table(lambda c: 0.19 * c["H"] / (c["n"] * np.log(c["N"])))
    assert all(x == Verdict.HOLDS for x in _verdicts(vlb.analyze(good, "quick")).values())
    bad = _vlb_table(lambda c: 0.19 * c["H"] ** 2 / (c["n"] ** 0.3 * np.log(c["N"])))
    assert all(x == Verdict.FAILS for x in _verdicts(vlb.analyze(bad, "quick")).values())
