"""offset_tournament and misspecification checks: tiny cells are sane, analyses can hold and fail,
the offset check's count-space tournaments equal the library's."""

import jax


import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import covsim  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from covsim.selection import heldout_logliks, offset_tournament as lib_offset, tournament  # noqa: E402
from theory_checks import misspecification, offset_tournament  # noqa: E402

KEY = jax.random.PRNGKey(0)


def _finite(metrics, seeds):
    for name, value in metrics.items():
        assert value.shape == (seeds,), name
        assert np.all(np.isfinite(value)), name


def _verdicts(check, analysis):
    return {a.name: a.verdict for a in check.judge(analysis).assertions}


# ---------------------------------------------------------------------------
# offset_tournament


def test_offset_instance_exact_facts():
    q = np.exp(offset_tournament.candidate_laws(24)[0])
    covs = offset_tournament.exact_coverages(24)
    names = offset_tournament.candidate_laws(24)[2]
    assert covs[0] == 0.0  # π⋆ is log-ratio-close to π_D
    assert covs[names.index("b")] == pytest.approx(q[2], rel=1e-12)
    for j in offset_tournament.rare_subset(24):
        assert covs[names.index(f"rare{j}")] == pytest.approx(q[3 + j], rel=1e-12)
    assert covs[1] > 0.9  # the far rival
    # the truth does not depend on K, and the smaller sets are subsets
    assert np.array_equal(offset_tournament.candidate_laws(6)[0], offset_tournament.candidate_laws(24)[0])
    assert set(offset_tournament.candidate_laws(6)[3]) <= set(offset_tournament.candidate_laws(24)[3])
    # explicit §7.1 bound bites at the largest quick n and not at n = 64
    assert offset_tournament.explicit_bound(24, 4096) < 0.25
    assert offset_tournament.explicit_bound(24, 64) > 1


@pytest.mark.parametrize("n", [40, 300])
def test_offset_count_space_picks_equal_library(n):
    """The check's count-space tournaments pick what covsim.selection picks on the same data."""
    _, cand_lp, _, _ = offset_tournament.candidate_laws(6)
    truth_lp = offset_tournament.candidate_laws(6)[0]
    rng = np.random.default_rng(n)
    V, S, m = truth_lp.size, offset_tournament.GENERATIONS, cand_lp.shape[0]
    models = [covsim.TabularModel(jnp.asarray(lp)[None, None, None, :], horizon=1) for lp in cand_lp]
    for trial in range(6):
        # bias the draws towards the rare tokens so that ties and rare observations both occur
        p = np.exp(truth_lp) + rng.random(V) * 0.02 * trial
        p /= p.sum()
        y = rng.choice(V, size=n, p=p)
        ys = np.stack([rng.choice(V, size=(n, S), p=np.exp(lp)) for lp in cand_lp])  # (m, n, S)
        x = jnp.zeros(n, dtype=jnp.int32)
        logliks = heldout_logliks(models, x, jnp.asarray(y)[:, None])
        generated = np.moveaxis(cand_lp[:, ys], 0, 1)  # [j, k, i, s]
        lib_off, _ = lib_offset(logliks, offset_tournament.N_LEVEL, offset_tournament.A, jnp.asarray(generated))
        lib_simple, _ = tournament(logliks, offset_tournament.N_LEVEL)
        c = jnp.asarray(np.bincount(y, minlength=V), float)
        g = jnp.asarray(np.stack([np.bincount(ys[j].ravel(), minlength=V) for j in range(m)]), float)
        off, simple = offset_tournament.count_space_picks(jnp.asarray(cand_lp), c, g, float(n))
        assert int(off) == int(lib_off) and int(simple) == int(lib_simple)


def test_offset_counts_are_nested_and_match_the_law():
    cdf = jnp.cumsum(jnp.asarray([0.5, 0.3, 0.2]))
    u = jax.random.uniform(KEY, (20000,))
    small = offset_tournament._counts(u, cdf, 1000)
    big = offset_tournament._counts(u, cdf, 20000)
    assert float(small.sum()) == 1000 and float(big.sum()) == 20000
    assert np.all(np.asarray(small) <= np.asarray(big))
    np.testing.assert_allclose(np.asarray(big) / 20000, [0.5, 0.3, 0.2], atol=0.015)


def test_offset_cells_paired_and_sane():
    covs = offset_tournament.exact_coverages(6)
    a = offset_tournament.run_cell(dict(n=64, num_rare=6, variant="offset", n_max=512), KEY, 4)
    b = offset_tournament.run_cell(dict(n=512, num_rare=6, variant="offset", n_max=512), KEY, 4)
    _finite(a, 4)
    _finite(b, 4)
    assert set(np.round(a["cov_offset"], 15)) <= set(np.round(covs, 15))
    ctrl = offset_tournament.run_cell(dict(n=512, num_rare=6, variant="no_offset", n_max=512), KEY, 4)
    np.testing.assert_array_equal(ctrl["cov_offset"], ctrl["cov_simple"])  # γ = 0: the simple tournament
    np.testing.assert_array_equal(ctrl["cov_simple"], b["cov_simple"])  # same draws


def _offset_rows(cov_offset, cov_simple, *, ns=(64, 256, 1024, 4096), ks=(6, 24), seeds=40):
    rng = np.random.default_rng(0)
    rows = []
    for k in ks:
        for n in ns:
            for s in range(seeds):
                jitter = 1 + 0.2 * rng.random()
                rows.append({"n": n, "num_rare": k, "variant": "offset", "n_max": max(ns), "seed": s,
                             "cov_offset": cov_offset(n) * jitter, "cov_simple": cov_simple(n) * jitter,
                             "cov_simple_explicit": cov_simple(n), "pick_offset": 3.0, "pick_simple": 2.0})
    return ResultTable(rows)


def test_offset_analysis_holds_on_one_over_n():
    table = _offset_rows(lambda n: 0.5 / n, lambda n: 2.3e-3)
    v = _verdicts(offset_tournament.CHECK, offset_tournament.analyze(table, "quick"))
    assert v["offset_mean_rate_cap"] == Verdict.HOLDS
    assert v["offset_quantile_rate_cap"] == Verdict.HOLDS
    assert v["offset_below_simple"] == Verdict.HOLDS
    assert v["simple_explicit_bound"] == Verdict.HOLDS
    assert v["thm_hypotheses"] == Verdict.HOLDS


def test_offset_analysis_fails_on_a_floor():
    # a floor (slope 0) and an offset pick worse than the simple one, and a simple pick above the §7.1 bound
    table = _offset_rows(lambda n: 0.01, lambda n: 0.9)
    v = _verdicts(offset_tournament.CHECK, offset_tournament.analyze(table, "quick"))
    assert v["offset_mean_rate_cap"] == Verdict.FAILS
    assert v["offset_quantile_rate_cap"] == Verdict.FAILS
    assert v["simple_explicit_bound"] == Verdict.FAILS
    table = _offset_rows(lambda n: 0.01, lambda n: 1e-4)
    v = _verdicts(offset_tournament.CHECK, offset_tournament.analyze(table, "quick"))
    assert v["offset_below_simple"] == Verdict.FAILS


def test_offset_cap_fails_if_only_one_K_floors():
    rows = [r for r in _offset_rows(lambda n: 0.5 / n, lambda n: 2.3e-3)]
    for r in rows:
        if r["num_rare"] == 24:
            r["cov_offset"] = 0.01 * (1 + 0.01 * r["seed"])
    v = _verdicts(offset_tournament.CHECK, offset_tournament.analyze(ResultTable(rows), "quick"))
    assert v["offset_mean_rate_cap"] == Verdict.FAILS


def test_paired_slope_recovers_slope_and_is_invalid_on_zeros():
    x = np.asarray([1.0, 2.0, 4.0, 8.0])
    rng = np.random.default_rng(1)
    per = (x ** -1.0)[:, None] * (1 + 0.1 * rng.random((4, 40)))
    fit = offset_tournament.paired_slope(x, per, offset_tournament._mean)
    assert fit["valid"] and fit["lo"] <= -1.0 + 0.05 and fit["hi"] >= -1.0 - 0.05
    assert abs(fit["slope"] + 1) < 0.05
    per[-1] = 0.0
    assert not offset_tournament.paired_slope(x, per, offset_tournament._mean)["valid"]


# ---------------------------------------------------------------------------
# misspecification


def test_misspecification_cell_paired_and_sane():
    metrics = misspecification.run_cell(dict(n=50, variant="tournament", n_max=500), KEY, 4)
    _finite(metrics, 4)
    assert np.all(metrics["mle_closed_form_mismatch"] == 0)
    p = misspecification.instance().info["p"]
    assert np.all(metrics["cov_minkl"] == pytest.approx(p / 2, abs=1e-15))
    ctrl = misspecification.run_cell(dict(n=50, variant="mle_choice", n_max=500), KEY, 4)
    np.testing.assert_array_equal(ctrl["tour_pi2"], ctrl["mle_pi2"])
    np.testing.assert_array_equal(ctrl["mle_pi2"], metrics["mle_pi2"])  # same draws
    big = misspecification.run_cell(dict(n=500, variant="tournament", n_max=500), KEY, 4)
    assert np.all(big["plus_count"] + big["minus_one_count"] >= metrics["plus_count"] + metrics["minus_one_count"])
    assert np.all(big["minus_one_count"] >= metrics["minus_one_count"])  # nested samples


def _misspec_rows(mle_pi2, tour_pi2, *, ns=(100, 100000), seeds=32, minus_one=1.0):
    p = misspecification.instance().info["p"]
    return ResultTable([{"n": n, "variant": "tournament", "n_max": max(ns), "seed": s,
                         "mle_pi2": mle_pi2, "tour_pi2": tour_pi2, "minkl_pi2": 1.0,
                         "cov_mle": p / 2 * mle_pi2, "cov_tour": p / 2 * tour_pi2, "cov_minkl": p / 2,
                         "mle_closed_form_mismatch": 0.0, "minus_one_count": minus_one,
                         "plus_count": float(n)} for n in ns for s in range(seeds)])


def test_misspecification_analysis_holds_and_fails():
    v = _verdicts(misspecification.CHECK, misspecification.analyze(_misspec_rows(1.0, 0.0), "quick"))
    assert all(x == Verdict.HOLDS for x in v.values()), v
    v = _verdicts(misspecification.CHECK, misspecification.analyze(_misspec_rows(0.0, 1.0), "quick"))
    assert v["mle_picks_pi2"] == Verdict.FAILS
    assert v["mle_coverage_stuck"] == Verdict.FAILS
    assert v["tournament_picks_pi1"] == Verdict.FAILS
    assert v["tournament_coverage_vanishes"] == Verdict.FAILS
    # the tournament may pick π₂ when no (−, 1) sample exists: not a violation
    rows = list(_misspec_rows(1.0, 0.0)) + [dict(r, n=50, tour_pi2=1.0, minus_one_count=0.0)
                                           for r in _misspec_rows(1.0, 0.0, ns=(50,))]
    v = _verdicts(misspecification.CHECK, misspecification.analyze(ResultTable(rows), "quick"))
    assert v["tournament_picks_pi1"] == Verdict.HOLDS
    # a largest n below 20/p: rules 2 and 5 cannot be read
    v = _verdicts(misspecification.CHECK,
                  misspecification.analyze(_misspec_rows(1.0, 0.0, ns=(10, 100)), "quick"))
    assert v["tournament_coverage_vanishes"] == Verdict.INCONCLUSIVE
    assert 20 / misspecification.instance().info["p"] > 100 and math.isfinite(misspecification.TOUR_CAP)


def test_misspecification_closed_form_and_minkl_violations_fail():
    rows = list(_misspec_rows(1.0, 0.0))
    rows[0] = dict(rows[0], mle_closed_form_mismatch=1.0, minkl_pi2=0.0)
    v = _verdicts(misspecification.CHECK, misspecification.analyze(ResultTable(rows), "quick"))
    assert v["mle_closed_form"] == Verdict.FAILS
    assert v["minkl_picks_pi2"] == Verdict.FAILS
