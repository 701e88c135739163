"""Tests of the ``ttt`` and ``distillation`` theory checks: tiny cells, the closed-form pieces
against the library, and analyze on synthetic tables giving *holds* and *fails*."""

import itertools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import covsim  # noqa: E402
from covsim.decoding import ttt_kl, ttt_log_prob  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from covsim.fit import sgd  # noqa: E402
from covsim.instances.statistical import kl_horizon_lower_bound  # noqa: E402
from covsim.models import LinearModel  # noqa: E402
from theory_checks import distillation, ttt  # noqa: E402

KEY = jax.random.PRNGKey(0)


def _table(rows_by_cell, seeds=8, noise=0.01, rng=None):
    rng = rng or np.random.default_rng(0)
    rows = []
    for cell, metrics in rows_by_cell:
        for s in range(seeds):
            row = dict(cell, seed=s)
            for name, value in metrics.items():
                row[name] = float(value * (1 + noise * rng.standard_normal()))
            rows.append(row)
    return ResultTable(rows)


def _verdicts(check, table, size="quick"):
    return {a.name: a.verdict for a in check.judge(check.analyze(table, size)).assertions}


# ---------------------------------------------------------------------------
# ttt


def test_ttt_cell_shapes():
    cell = dict(ttt.grid("tiny")[0], H=4, mc=4)
    out = ttt.run_cell(cell, KEY, 3)
    for name in ("kl_avg", "cov_avg", "plain_kl_avg", "plain_cov_avg", "kl_bound", "kl_init"):
        value = np.asarray(out[name])
        assert value.shape == (3,) and np.all(np.isfinite(value)), name
    mu1 = 1 / (2 * cell["n"])
    assert np.all(out["kl_avg"] >= 0)
    assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= mu1 + 1e-12))  # Cov ≤ μ(1) (EXACT, §5.2)
    assert np.all(out["plain_kl_avg"] <= out["kl_init"] + 1e-12)  # θ_1 = 0 is the worst iterate here
    control = ttt.run_cell(dict(cell, variant="plain"), KEY, 3)
    np.testing.assert_allclose(control["kl_avg"], out["plain_kl_avg"])


def test_ttt_training_matches_library_trainer():
    """The closed-form token-level trainer equals covsim.fit.sgd.train(method='token') on a dataset."""
    n, H, T, B = 4, 5, 12, 3.0
    inst = kl_horizon_lower_bound(n, H, B=B, key=KEY)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, T)
    y = rng.integers(0, 2, (T, H))
    eta = 1 / (2 * B**2)
    config = sgd.SGDConfig("token", eta)
    for theta_star in (1.0, -1.0):
        truth = LinearModel(inst.features, jnp.asarray([theta_star]), horizon=H)
        res = sgd.train(inst.model(jnp.zeros(1)), truth, inst.mu, config, num_steps=T, key=KEY,
                        constraint=inst.constraint, checkpoints=tuple(range(1, T + 1)),
                        dataset=(jnp.asarray(x), jnp.asarray(y)))
        mine = ttt.train_thetas(theta_star, jnp.asarray(x), jnp.asarray(y), B=B, eta=eta)
        np.testing.assert_allclose(np.asarray(mine), np.asarray(res.checkpoint_thetas[:, 0]), atol=1e-12)


def test_ttt_path_stats_match_decoding():
    """Λ equals log π_D − covsim.decoding.ttt_log_prob; the exact E_y Σ_h KL (enumeration over
    {0,1}^H) matches covsim.decoding.ttt_kl on prompt 1 within 5 standard errors."""
    n, H, B = 4, 6, 3.0
    eta = 1 / (2 * B**2)
    inst = kl_horizon_lower_bound(n, H, B=B, key=KEY)
    truth = LinearModel(inst.features, jnp.asarray([1.0]), horizon=H)
    learner = inst.model(jnp.zeros(1))
    theta = jnp.asarray([0.2])
    total, weight = 0.0, 0.0
    s = float(jax.nn.sigmoid(2 * B))
    for bits in itertools.product((0, 1), repeat=H):
        y = jnp.asarray(bits)
        kl, lam = ttt.ttt_path_stats(theta[0], 1.0, y, B=B, eta=eta)
        ref = covsim.log_prob(truth, 1, y) - ttt_log_prob(learner, theta, 1, y, learning_rate=eta,
                                                         constraint=inst.constraint)
        np.testing.assert_allclose(float(lam), float(ref), atol=1e-10)
        p = s ** sum(bits) * (1 - s) ** (H - sum(bits))
        total += p * float(kl)
        weight += p
    assert abs(weight - 1) < 1e-12
    est = ttt_kl(truth, learner, theta, jnp.asarray([0.0, 1.0]), learning_rate=eta, constraint=inst.constraint,
                 num_samples=4000, key=KEY)
    assert abs(float(est.mean) - total) <= 5 * float(est.stderr) + 1e-9


def _ttt_rows(ttt_kl_of_h, plain_kl_of_h, cov_of_h):
    rows = []
    for H in (16, 64, 256):
        init = 0.676 * H / 64
        rows.append((dict(H=H, n=32, T=32, B=3.0, N=4.0, mc=64, variant="ttt"),
                     dict(kl_avg=ttt_kl_of_h(H), cov_avg=cov_of_h(H), ttt_kl_avg=ttt_kl_of_h(H),
                          ttt_cov_avg=cov_of_h(H), plain_kl_avg=plain_kl_of_h(H), plain_cov_avg=0.012,
                          kl_bound=0.57, kl_init=init, eta=1 / 18, sigma2=1e-3 * H)))
    return rows


def test_ttt_analyze_holds_and_fails():
    good = _table(_ttt_rows(lambda H: 0.03 * (H / 16) ** 0.1, lambda H: 0.6 * H / 64, lambda H: 0.012))
    v = _verdicts(ttt.CHECK, good)
    assert all(x == Verdict.HOLDS for x in v.values()), v
    bad = _table(_ttt_rows(lambda H: 0.6 * H / 64, lambda H: 0.03, lambda H: 0.001 * H))
    v = _verdicts(ttt.CHECK, bad)
    assert v["kl_no_power_growth_in_H"] == Verdict.FAILS
    assert v["cov_no_power_growth_in_H"] == Verdict.FAILS
    assert v["kl_below_exact_bound"] == Verdict.FAILS
    assert v["plain_kl_grows_with_H"] == Verdict.FAILS


def test_ttt_bound_regime_is_where_it_bites():
    table = _table(_ttt_rows(lambda H: 0.03, lambda H: 0.6 * H / 64, lambda H: 0.012))
    analysis = ttt.analyze(table, "quick")
    ev = analysis.evidence["kl_below_exact_bound"]
    assert ev.cells == [64, 256]
    assert all(b < 1 for b in ev.bound_values)


# ---------------------------------------------------------------------------
# distillation


def test_dyadic_strata_weights_and_unbiasedness():
    T = 1024
    points, picks = distillation.dyadic_strata(T, 8, seed=3)
    assert T // 2 in points and T in points and list(points) == sorted(set(points))
    assert sum(w for _, _, w in picks) == T - 1  # strata tile t = 1..T−1
    assert sum(w for j, _, w in picks if j < 9) == T // 2 - 1
    for j, i, w in picks:  # each pick lies in its dyadic block
        assert 2**j <= points[i] < 2 ** (j + 1)
    # a constant is reproduced exactly; a step function without bias (average over designs)
    half, full, _ = distillation.prefix_averages(np.full((1, len(points)), 0.7), T, picks, points)
    np.testing.assert_allclose([half[0], full[0]], [0.7, 0.7])
    ests = []
    for seed in range(300):
        pts, pk = distillation.dyadic_strata(T, 8, seed=seed)
        vals = (np.asarray(pts) < 300).astype(float)[None, :]
        ests.append(distillation.prefix_averages(vals, T, pk, pts)[1][0])
    assert abs(np.mean(ests) - 299 / T) < 4 * np.std(ests) / np.sqrt(len(ests)) + 1e-12


def test_distillation_cell_shapes():
    for variant in ("truncated", "vanilla"):
        cell = dict(distillation.grid("tiny")[0], H=4, T=16, mc=8, variant=variant)
        out = distillation.run_cell(cell, KEY, 3)
        for name in ("cov_avg", "cov_avg_half", "cov_last", "opt_term", "eta", "cov_block0", "cov_block3"):
            value = np.asarray(out[name])
            assert value.shape == (3,) and np.all(np.isfinite(value)), name
        assert np.all((out["cov_avg"] >= 0) & (out["cov_avg"] <= 1))
        assert np.all(out["cov_block0"] == 1.0)  # θ_1 = 0 covers nothing at N = 4 on pivotal_tokens


def _distill_rows(cov_of_h, half_factor=2.0):
    rows = []
    for H in (8, 32, 128):
        rows.append((dict(H=H, k=2, V=8, N=4.0, T=131072, mc=128, variant="truncated"),
                     dict(cov_avg=cov_of_h(H), cov_avg_half=half_factor * cov_of_h(H), cov_last=0.0,
                          opt_term=0.43, opt_term_half=0.85, eta=1.1e-5, sigma2=385.0)))
    return rows


def test_distillation_analyze_holds_and_fails():
    v = _verdicts(distillation.CHECK, _table(_distill_rows(lambda H: 0.012 * np.log(5 * H) / np.log(40))))
    assert all(x == Verdict.HOLDS for x in v.values()), v
    v = _verdicts(distillation.CHECK, _table(_distill_rows(lambda H: 1e-4 * H, half_factor=0.5)))
    assert v["cov_no_power_growth_in_H"] == Verdict.FAILS
    assert v["cov_decreasing_in_T"] == Verdict.FAILS


def test_distillation_burn_in_cap_covers_the_log_threshold():
    """The declared cap is at least the secant slope of θ_0^*(H) = log((H−k)(V−1)/log N)/B on [8, H_max]."""
    def theta0(H):
        return np.log((H - 2) * 7 / np.log(4.0))
    for H_max in (32, 128, 512):
        slope = np.log(theta0(H_max) / theta0(8)) / np.log(H_max / 8)
        assert slope <= distillation.POWER_SLOPE


def test_distillation_mc_coverage_matches_exact():
    inst, learner, _, _ = distillation.pivotal_setup(4, 1, 4)
    thetas = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, learner.dim)) * 0.2)
    est = np.asarray(distillation._mc_coverage(inst.truth, learner, inst.mu, thetas, KEY, 4.0, num_samples=4000))
    for s in range(2):
        for c in range(3):
            exact = float(covsim.coverage(inst.truth, inst.model(thetas[s, c]), inst.mu, 4.0))
            assert abs(est[s, c] - exact) <= 5 * np.sqrt(max(exact * (1 - exact), 1e-4) / 4000) + 1e-9
