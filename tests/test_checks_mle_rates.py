"""Tests of the mle_rates and variance_lower_bound theory checks (tiny cells, synthetic tables)."""

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import covsim  # noqa: E402
import theory_checks.mle_rates as mle_rates  # noqa: E402
import theory_checks.variance_lower_bound as vlb  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from theory_checks._rates import paired_slope, per_cell_extreme  # noqa: E402


def _verdicts(check, analysis):
    return {a.name: a.verdict for a in check.judge(analysis).assertions}


# -- mle_rates ----------------------------------------------------------------------------------
def test_pivotal_coverage_is_exact_against_the_bracket():
    inst, feats = mle_rates.padded_pivotal(8, 4, 12)
    th = inst.info["theta_star"]
    thh = th.at[0].set(0.5).at[3].add(-0.2)
    truth = covsim.LinearModel(feats, th, horizon=12)
    fit = covsim.LinearModel(feats, thh, horizon=12)
    lo, hi = covsim.coverage(truth, fit, jnp.ones(1), jnp.asarray([2.0, 16.0]), method="bracket", bins=8192)
    mlo, mhi = mle_rates.pivotal_coverage(th, thh, jnp.asarray(4), jnp.asarray(float(inst.info["q"])), (2.0, 16.0), 4)
    assert np.all(mhi - mlo <= 1e-12)
    assert np.all(np.asarray(mlo) >= np.asarray(lo) - 1e-9) and np.all(np.asarray(mhi) <= np.asarray(hi) + 1e-9)


def test_pivotal_sampler_matches_the_truth():
    inst, feats = mle_rates.padded_pivotal(8, 4, 10)
    pos = list(inst.info["pivotal_positions"])
    active = np.arange(10) < 8
    is_piv = np.zeros(10, bool)
    is_piv[pos] = True
    piv_idx = np.zeros(10, np.int32)
    piv_idx[pos] = np.arange(4)
    q = 0.05  # a visible off-rule rate for the test
    y = mle_rates.sample_pivotal(jax.random.PRNGKey(0), 20000, jnp.asarray(active), jnp.asarray(is_piv),
                                 jnp.asarray(piv_idx), jnp.log(inst.info["pivotal_law"]), q, 4)
    y = np.asarray(y)
    law = np.asarray(inst.info["pivotal_law"])
    freq = np.bincount(y[:, pos[1]], minlength=8) / len(y)
    assert np.max(np.abs(freq - law)) < 0.015
    prev = np.concatenate([np.zeros((len(y), 1), int), y[:, :-1]], axis=1)
    det = [h for h in range(8) if h not in pos]
    off = np.mean(y[:, det] != (prev[:, det] + 1) % 8)
    assert abs(off - q) < 0.006
    # the pivotal draws do not depend on H (common random numbers across the H sweep)
    inst2, _ = mle_rates.padded_pivotal(10, 4, 10)
    pos2 = list(inst2.info["pivotal_positions"])
    is2 = np.zeros(10, bool)
    is2[pos2] = True
    idx2 = np.zeros(10, np.int32)
    idx2[pos2] = np.arange(4)
    y2 = np.asarray(mle_rates.sample_pivotal(jax.random.PRNGKey(0), 20000, jnp.ones(10, bool), jnp.asarray(is2),
                                             jnp.asarray(idx2), jnp.log(inst.info["pivotal_law"]), q, 4))
    assert np.array_equal(y[:, pos], y2[:, pos2])


def test_coins_padding_is_inert():
    f6, t6 = mle_rates.coins(6)
    fp, tp = mle_rates.coins(6, pad=10)
    mu = jnp.ones(1)
    s6 = float(covsim.inherent_variance(covsim.LinearModel(f6, t6, horizon=6), mu))
    sp = float(covsim.inherent_variance(covsim.LinearModel(fp, tp, horizon=10), mu))
    assert abs(s6 - sp) < 1e-9 and abs(s6 - 6 * 4 * 0.25 * (1 - np.tanh(0.125) ** 2)) < 1e-9


def test_mle_rates_run_cell_tiny():
    for cell in mle_rates.grid("tiny")[:1] + [c for c in mle_rates.grid("tiny") if c["inst"] == "coins"][:1]:
        out = mle_rates.run_cell(cell, jax.random.PRNGKey(0), 3)
        for N in mle_rates.N_VALUES:
            cov = out[f"cov_N{int(N)}"]
            assert cov.shape == (3,) and np.all(np.isfinite(cov)) and np.all((cov >= -1e-12) & (cov <= 1 + 1e-12))
            assert np.all(out[f"cov_halfwidth_N{int(N)}"] >= -1e-12)
        assert np.all(out["cov_N16"] <= out["cov_N2"] + 1e-9)  # non-increasing in N, seed by seed
        assert np.all(out["insample_kl"] >= -1e-12) and np.all(np.isfinite(out["insample_kl"]))


def _mle_table(cov_fn, ins_fn, seeds=8, variant="mle"):
    rows = []
    rng = np.random.default_rng(0)
    for cell in mle_rates.grid("quick"):
        pivotal = cell["inst"] == "pivotal"
        s2 = 192.0 * cell["k"] if pivotal else 0.98 * cell["k"]
        kl0 = 2.0 * cell["H"] if pivotal else 0.008 * cell["k"]
        common = rng.standard_normal(seeds)  # paired seeds
        for s in range(seeds):
            r = dict(cell, variant=variant, seed=s, sigma2=s2, kl0=kl0, B=16.0 if pivotal else 2.0)
            r["insample_kl"] = ins_fn(cell, s2) * (1 + 0.01 * rng.standard_normal())
            for N in mle_rates.N_VALUES:
                r[f"cov_N{int(N)}"] = cov_fn(cell, N, s2) * (1 + 0.05 * common[s])
                r[f"cov_halfwidth_N{int(N)}"] = 0.0
            rows.append(r)
    return ResultTable(rows)


def test_mle_rates_analyze_holds_and_fails():
    chk = mle_rates.CHECK
    good = _mle_table(lambda c, N, s2: 0.5 * (s2 / c["n"]) ** 0.5 * c["n"] ** -0.5 / np.log(N),
                      lambda c, s2: 0.1 * np.sqrt(s2 / c["n"]))
    v = _verdicts(chk, mle_rates.analyze(good, "quick"))
    assert all(x == Verdict.HOLDS for x in v.values()), v
    # in-sample KL above 2σ⋆/√n, slow decay in n, growth in H, decrease in σ⋆²: every rule fails
    bad = _mle_table(lambda c, N, s2: 1e-3 * c["H"] * c["n"] ** -0.2 / s2 / np.log(N),
                     lambda c, s2: 3.0 * np.sqrt(s2 / c["n"]))
    v = _verdicts(chk, mle_rates.analyze(bad, "quick"))
    assert all(x == Verdict.FAILS for x in v.values()), v


def test_insample_rule_is_vacuous_where_the_bound_is_trivial():
    good = _mle_table(lambda c, N, s2: 0.1 * c["n"] ** -1.0, lambda c, s2: 0.1 * np.sqrt(s2 / c["n"]))
    rows = [dict(r, kl0=1e-6) for r in good.rows]  # the do-nothing learner already beats the bound
    a = {x.name: x for x in mle_rates.CHECK.judge(mle_rates.analyze(ResultTable(rows), "quick")).assertions}
    assert a["insample_kl_lemma"].verdict == Verdict.INCONCLUSIVE and "vacuous" in a["insample_kl_lemma"].reason


# -- helpers ---------------------------------------------------------------------------------------
def test_paired_slope_uses_common_seeds():
    rng = np.random.default_rng(3)
    base = np.exp(rng.standard_normal(64))
    x = np.asarray([8.0, 16.0, 32.0])
    per = np.stack([base * x_i**0.01 for x_i in x])  # seed noise shared across x
    fit = paired_slope(x, per)
    assert fit.valid and abs(fit.slope - 0.01) < 1e-9 and fit.hi - fit.lo < 1e-6


def test_per_cell_extreme_bonferroni():
    cells = [("a", np.full(10, 0.2) + 0.01 * np.arange(10)), ("b", np.full(10, 0.5) + 0.01 * np.arange(10))]
    ev = per_cell_extreme(cells, worst="max")
    assert abs(ev.estimate - 0.545) < 1e-12 and ev.hi > 0.545 > ev.lo
    ev = per_cell_extreme(cells, worst="min")
    assert abs(ev.estimate - 0.245) < 1e-12
    assert ev.details["bonferroni_level"] == 1 - 0.05 / 2


# -- variance_lower_bound ----------------------------------------------------------------------
def test_variance_lower_bound_run_cell_tiny():
    for learner in ("mle", "sign_oracle"):
        out = vlb.run_cell(dict(H=12, n=20, N=2.0, n_max=40, learner=learner), jax.random.PRNGKey(1), 3)
        assert np.all(np.isfinite(out["cov"])) and np.all((out["cov"] >= -1e-12) & (out["cov"] <= 1 + 1e-12))
        assert np.all(out["cov_lo"] <= out["cov"] + 1e-12)
        assert np.all(out["cov"] <= out["p"] + 1e-9)  # only prompt + can be covered
        assert np.all((out["plus_count"] >= 0) & (out["plus_count"] <= 20))


def _vlb_table(cov_fn, seeds=8):
    rng = np.random.default_rng(1)
    rows = []
    for cell in vlb.grid("quick"):
        p = min(1.0, cell["H"] / (4 * cell["n"] * np.log(cell["N"])))
        for s in range(seeds):
            c = cov_fn(cell) * (1 + 0.01 * rng.standard_normal())
            rows.append(dict(cell, seed=s, cov=c, cov_lo=c, cov_halfwidth=0.0, plus_count=3.0, p=p, sigma2=1.0,
                             rate=0.1))
    return ResultTable(rows)


def test_variance_lower_bound_analyze_holds_and_fails():
    chk = vlb.CHECK
    good = _vlb_table(lambda c: 0.19 * c["H"] / (c["n"] * np.log(c["N"])))
    v = _verdicts(chk, vlb.analyze(good, "quick"))
    assert all(x == Verdict.HOLDS for x in v.values()), v
    # P(Λ ≥ log N | +) = 0.01 at (H, n) = (16, 100) and E Cov ∝ H³ n^-0.2: every rule fails
    bad = _vlb_table(lambda c: c["H"] / (4 * c["n"] * np.log(c["N"])) * 0.01 * (c["H"] / 16) ** 2 * (c["n"] / 100) ** 0.8)
    v = _verdicts(chk, vlb.analyze(bad, "quick"))
    assert all(x == Verdict.FAILS for x in v.values()), v


def test_variance_lower_bound_rate_one_order():
    from covsim import bounds
    from covsim.instances import statistical

    assert statistical.variance_lower_bound_rate is bounds.variance_lower_bound_rate
    assert float(bounds.variance_lower_bound_rate(1000, np.e, 10)) == 0.01
