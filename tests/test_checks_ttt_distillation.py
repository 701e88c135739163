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
