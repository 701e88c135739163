"""Tests of the fine_rate and convex_class checks and their instances (covsim.instances.classes)."""

import jax


import itertools  # noqa: E402
import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import covsim  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from covsim.instances import classes  # noqa: E402
from covsim.instances.statistical import fine_tightness_model, fine_tightness_truth  # noqa: E402
from theory_checks import convex_class, fine_rate  # noqa: E402

KEY = jax.random.PRNGKey(0)


def _verdicts(summary):
    return {a.name: a.verdict for a in summary.assertions}


# ---------------------------------------------------------------------------
# fine_ladder instance


def test_fine_ladder_instance_facts():
    inst = classes.fine_ladder(6144, 32, fine_rate.LEVELS)
    assert inst.mu.shape == (6 * 33,)
    assert float(jnp.sum(inst.mu)) == pytest.approx(1.0, abs=1e-12)
    assert inst.info["epsilon"] == pytest.approx(0.5 * math.sqrt(32 / 1024))
    np.testing.assert_allclose(inst.info["p"], [0.5 * inst.info["epsilon"] ** 2 / L for L in fine_rate.LEVELS])
    with pytest.raises(ValueError, match="n/J >= 2d"):
        classes.fine_ladder(100, 32, (2.5, 5.0))
    with pytest.raises(ValueError, match="increase"):
        classes.fine_ladder(6144, 32, (5.0, 2.5))


def test_fine_ladder_terms_match_docstring():
    t = fine_rate.bound_terms(6144)
    assert t["c_fine"] == pytest.approx(6 * math.log1p(2.0**32) / 6144)
    assert t["c_coarse"] == pytest.approx((6 * math.log(2) + math.log(10)) / 6144)
    assert t["regime_levels"] == [2.5, 5.0, 10.0, 20.0]
    assert all(b < 1 for b in t["bound"].values())


def _ladder_candidates(d, J, eps, levels):
    """The whole product class, block models from fine_tightness (brute force)."""
    truth = fine_tightness_truth(d).logits
    blocks = []
    for L in levels:
        opts = [truth] + [fine_tightness_model(jnp.asarray(s, float), eps, math.exp(L)).logits
                          for s in itertools.product((1.0, -1.0), repeat=d)]
        blocks.append(opts)
    return [covsim.TabularModel(jnp.concatenate(c, axis=0), horizon=1) for c in itertools.product(*blocks)]


@pytest.mark.parametrize("seed", range(4))
def test_fine_ladder_mle_equals_brute_force(seed):
    d, levels, n = 2, (2.5, 5.0), 16
    inst = classes.fine_ladder(n, d, levels, c_eps=0.9, c_p=3.0)  # larger ε, p: both branches occur
    cands = _ladder_candidates(d, 2, inst.info["epsilon"], levels)
    assert len(cands) == (2**d + 1) ** 2
    x, y = covsim.sample(inst.truth, inst.mu, n, key=jax.random.PRNGKey(seed))
    counts = classes.fine_ladder_counts(x, y, d, 2)
    model, gains = classes.fine_ladder_mle(counts, inst.info["epsilon"], jnp.asarray(levels))
    ll = np.asarray([float(jnp.sum(jax.vmap(lambda a, b: covsim.log_prob(c, a, b))(x, y))) for c in cands])
    ll_mle = float(jnp.sum(jax.vmap(lambda a, b: covsim.log_prob(model, a, b))(x, y)))
    assert ll_mle == pytest.approx(ll.max(), abs=1e-9)
    Ns = jnp.exp(jnp.asarray([1.0, 2.5, 3.0, 5.0, 6.0]))
    cov = covsim.coverage(inst.truth, model, inst.mu, Ns)
    closed = classes.fine_ladder_coverage(gains, inst.info["weights"], jnp.asarray(levels), Ns)
    np.testing.assert_allclose(np.asarray(cov)[1:], np.asarray(closed)[1:], atol=1e-14)


def test_fine_ladder_log_covering_is_a_cover():
    # a centre Ber(1/2) on fine prompts covers every π_θ-block at α = −log(1−ε)
    eps = 0.1
    a = -math.log1p(-eps)
    th = fine_tightness_model(jnp.asarray([1.0, -1.0, 1.0]), eps, 8.0).logits[1:]
    centre = jnp.full_like(th, -math.log(2.0))
    assert float(jnp.max(jnp.abs(th - centre))) <= a + 1e-12
    assert float(classes.fine_ladder_log_covering(a, 3, 2, eps)) == pytest.approx(2 * math.log(2))
    assert float(classes.fine_ladder_log_covering(a / 2, 3, 2, eps)) == pytest.approx(2 * math.log(9))


def test_fine_ladder_plugin_zero_on_unseen():
    x = jnp.asarray([1, 1, 1, 1])
    y = jnp.asarray([[1, 0], [1, 1], [1, 1], [0, 1]])
    m = classes.fine_ladder_plugin(x, y, 3)
    p = np.exp(np.asarray(m.logits)).reshape(3, 2, 2)
    np.testing.assert_allclose(p[0], [[1, 0], [1, 0]])  # unseen prompt: token 0
    np.testing.assert_allclose(p[1], [[0.25, 0.75], [0.25, 0.75]])
    np.testing.assert_allclose(p[2], [[1, 0], [1, 0]])


@pytest.mark.parametrize("seed", range(3))
def test_fine_ladder_horizon_mle_and_coverage(seed):
    d, levels, n, H = 2, (2.5, 5.0), 16, 3
    inst = classes.fine_ladder(n, d, levels, horizon=H, c_eps=0.9, c_p=3.0)
    eps = inst.info["epsilon"]
    x, y = covsim.sample(inst.truth, inst.mu, n, key=jax.random.PRNGKey(seed))
    assert np.all(np.asarray(y)[np.asarray(x) % (d + 1) == 0] == 1)  # rare prompts: all ones
    counts = classes.fine_ladder_counts(x, y, d, 2)
    model, gains = classes.fine_ladder_mle(counts, eps, jnp.asarray(levels), H)
    # brute force over the product class with H-token models built from the H = 1 blocks
    best = -np.inf
    for c in _ladder_candidates(d, 2, eps, levels):
        full = classes._ladder_rows(c.logits, d, H)
        m = covsim.TabularModel(full, horizon=H)
        best = max(best, float(jnp.sum(jax.vmap(lambda a, b: covsim.log_prob(m, a, b))(x, y))))
    ll = float(jnp.sum(jax.vmap(lambda a, b: covsim.log_prob(model, a, b))(x, y)))
    assert ll == pytest.approx(best, abs=1e-9)
    Ns = jnp.exp(jnp.asarray([2.5, 3.0, 5.0, 6.0]))  # log N > H·(−log(1−ε)) = 2.5… needs ε small
    if inst.info["fine_radius"] < 2.5:
        cov = covsim.coverage(inst.truth, model, inst.mu, Ns)
        closed = classes.fine_ladder_coverage(gains, inst.info["weights"], jnp.asarray(levels), Ns)
        np.testing.assert_allclose(np.asarray(cov), np.asarray(closed), atol=1e-14)
    assert classes.fine_ladder_log_covering(inst.info["fine_radius"], d, 2, eps, H) == pytest.approx(2 * math.log(2))


# ---------------------------------------------------------------------------
# fine_rate check


def test_fine_rate_run_cell_shapes():
    out = fine_rate.run_cell({"learner": "mle", "n": 6144, "d": 32, "H": 2}, KEY, 3)
    for name, v in out.items():
        assert np.asarray(v).shape == (3,), name
        assert np.all(np.isfinite(v)), name
    assert np.all(out["closed_mismatch"] == 0)
    ctrl = fine_rate.run_cell({"learner": "plugin", "n": 6144, "d": 32, "H": 1}, KEY, 3)
    cols = [fine_rate._col(L) for L in fine_rate.LEVELS]
    for s in range(3):  # the plug-in's coverage is the same at every level
        assert len({float(ctrl[c][s]) for c in cols}) == 1


def _table(fn, S=64, n=6144, h_fn=lambda H: 1.0, rng=np.random.default_rng(0)):
    rows = []
    for H in fine_rate.HS:
        for s in range(S):
            row = {"learner": "mle", "n": n, "d": 32, "H": H, "seed": s, "closed_mismatch": 0.0,
                   "kl": 0.01 * H}
            for L in fine_rate._log_ns():
                row[fine_rate._col(L)] = fn(L, rng) * h_fn(H)
            for L in fine_rate.LEVELS:
                row[f"mle_deviates_L{L:g}"] = 1.0
            rows.append(row)
    return ResultTable(rows)


def test_fine_rate_analyze_holds_on_one_over_log_n():
    table = _table(lambda L, rng: 1e-3 / L * rng.uniform(0.8, 1.2))
    v = _verdicts(fine_rate.CHECK.judge(fine_rate.analyze(table, "quick")))
    assert v == {"decay_in_log_N": Verdict.HOLDS, "below_bound_whp": Verdict.HOLDS,
                 "no_growth_in_H": Verdict.HOLDS}


def test_fine_rate_analyze_fails_when_flat_above_bound_or_growing_in_h():
    table = _table(lambda L, rng: 2e-4 * rng.uniform(0.8, 1.2))
    v = _verdicts(fine_rate.CHECK.judge(fine_rate.analyze(table, "quick")))
    assert v["decay_in_log_N"] == Verdict.FAILS
    table = _table(lambda L, rng: 0.5 / L * rng.uniform(0.8, 1.2))
    v = _verdicts(fine_rate.CHECK.judge(fine_rate.analyze(table, "quick")))
    assert v["below_bound_whp"] == Verdict.FAILS
    table = _table(lambda L, rng: 1e-3 / L * rng.uniform(0.8, 1.2), h_fn=lambda H: float(H))
    v = _verdicts(fine_rate.CHECK.judge(fine_rate.analyze(table, "quick")))
    assert v["no_growth_in_H"] == Verdict.FAILS


# ---------------------------------------------------------------------------
# floored_simplex instance


def _brute_floor_mle(c, f, grid=200000, rng=np.random.default_rng(1)):
    """Best log-likelihood among random points of {q >= f} (a lower bound on the max)."""
    K = len(c)
    w = rng.dirichlet(np.ones(K) * 0.3, size=grid)
    q = (1 - K * f) * w + f
    return float(np.max(np.log(q) @ np.asarray(c, float)))


@pytest.mark.parametrize("seed", range(3))
def test_floored_simplex_mle_is_the_maximizer(seed):
    rng = np.random.default_rng(seed)
    K, f = 6, 0.05
    c = rng.multinomial(20, rng.dirichlet(np.ones(K) * 0.5))
    q = np.asarray(classes.floored_simplex_mle(jnp.asarray(c, float), f))
    assert q.sum() == pytest.approx(1.0, abs=1e-12) and q.min() >= f - 1e-15
    ll = float(np.log(q) @ c)
    assert ll >= _brute_floor_mle(c, f) - 1e-9
    # KKT / first-order condition: (1/n) Σ c_y q̄_y / q̂_y ≤ 1 for any q̄ in the class
    for _ in range(50):
        qbar = (1 - K * f) * rng.dirichlet(np.ones(K)) + f
        assert float(c @ (qbar / q)) / c.sum() <= 1 + 1e-12
    # vertex learner: the best single component
    qv = np.asarray(classes.floored_simplex_vertex_mle(jnp.asarray(c, float), K * f))
    best = max(float(np.log((1 - K * f) * np.eye(K)[k] + f) @ c) for k in range(K))
    assert float(np.log(qv) @ c) == pytest.approx(best)


def test_floored_simplex_instance_facts():
    well = classes.floored_simplex(16, 0.25)
    mis = classes.floored_simplex(16, 0.25, misspecified=True)
    pd = np.exp(np.asarray(well.truth.logits).ravel())
    np.testing.assert_allclose(well.info["theta_bar"], pd, atol=1e-12)  # π_D ∈ Π
    pm = np.exp(np.asarray(mis.truth.logits).ravel())
    tb = np.asarray(mis.info["theta_bar"])
    assert np.all(pm[8:] == 0) and np.allclose(tb[8:], 1 / 64)
    np.testing.assert_allclose(pm[:8] / tb[:8], 8 / 7, rtol=1e-12)
    assert well.info["log_diameter"] == pytest.approx(math.log((1 - 15 / 64) * 64))


def test_floored_simplex_log_covering_is_a_cover():
    K, f = 5, 0.04
    rng = np.random.default_rng(0)
    D = math.log((1 - (K - 1) * f) / f)
    for alpha in (0.05, 0.3, 1.0):
        for _ in range(100):  # the rounding construction of the docstring stays within α
            q = (1 - K * f) * rng.dirichlet(np.ones(K) * 0.3) + f
            g = f * np.exp(alpha * np.floor((np.log(q) - math.log(f)) / alpha))
            centre = g / g.sum()
            assert np.max(np.abs(np.log(centre) - np.log(q))) <= alpha + 1e-12
        assert float(classes.floored_simplex_log_covering(alpha, K, f)) == pytest.approx(
            K * math.log(math.floor(D / alpha) + 1))
    assert float(classes.floored_simplex_log_covering(D * 1.01, K, f)) == 0.0


# ---------------------------------------------------------------------------
# convex_class check


def test_convex_class_run_cell_shapes():
    for learner in ("mle", "vertex"):
        out = convex_class.run_cell({"learner": learner, "spec": "mis", "n": 64}, KEY, 3)
        for name, v in out.items():
            assert np.asarray(v).shape == (3,), name
            assert np.all(np.isfinite(v)), name
    out = convex_class.run_cell({"learner": "mle", "spec": "well", "n": 64}, KEY, 3)
    assert np.all(out["kkt_mean"] <= 1 + 1e-9)


def test_convex_class_bound_uses_bounds_module():
    b, a = convex_class.bound_value(256, 8.0, 0.0)
    assert 0 < a <= 0.5 * math.log(8 / 3) + 1e-12 and 0 < b < 1
    assert convex_class.bound_value(64, 4.0, 0.0)[0] > 1  # vacuous: excluded from the rule


def _cc_table(cov_fn, ins_fn, S=64):
    rows = []
    for spec in ("well", "mis"):
        for n in (256, 1024):
            for s in range(S):
                row = {"learner": "mle", "spec": spec, "n": n, "seed": s, "kkt_mean": 0.99,
                       "log_gap_to_theta_bar": 0.1, "cov_Nprime_theta_bar": 0.0}
                for N in convex_class.N_GRID:
                    row[f"cov_N{N:g}"] = cov_fn(N)
                    row[f"insample_N{N:g}"] = ins_fn(N)
                rows.append(row)
    return ResultTable(rows)


def test_convex_class_analyze_holds_and_fails():
    good = _cc_table(lambda N: 0.01 / N, lambda N: 0.5 / N)
    v = _verdicts(convex_class.CHECK.judge(convex_class.analyze(good, "quick")))
    assert v == {"insample_markov": Verdict.HOLDS, "below_bound_whp": Verdict.HOLDS}
    bad = _cc_table(lambda N: 0.3 / math.log(N), lambda N: 0.3)
    v = _verdicts(convex_class.CHECK.judge(convex_class.analyze(bad, "quick")))
    assert v == {"insample_markov": Verdict.FAILS, "below_bound_whp": Verdict.FAILS}
