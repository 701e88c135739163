"""Tests of the horizon check: the prefix-coupled simulation against the generic pipeline, the exact
control coverage against brute force, and analyze returning holds and fails on synthetic tables."""

import jax


import itertools  # noqa: E402
import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import covsim  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from covsim.instances import statistical as inst  # noqa: E402
from theory_checks import horizon  # noqa: E402

KEY = jax.random.PRNGKey(3)


def _verdicts(analysis):
    return {a.name: a.verdict for a in horizon.CHECK.judge(analysis).assertions}


def test_grid_pairs_H_and_cells_are_json():
    for size in ("tiny", "quick", "full"):
        cells = horizon.grid(size)
        assert len({tuple(sorted(horizon.CHECK.key_params(c).items())) for c in cells}) == 1
        assert all(c["H"] <= c["H_max"] for c in cells)
        assert all(c["variant"] == "biased" for c in horizon.control_grid(size))


def test_run_cell_paired_across_H_and_consistent():
    outs = {H: horizon.run_cell(dict(variant="mle", H=H, H_max=32, n=20, B=1.0), KEY, 6) for H in (8, 32)}
    for out in outs.values():
        for name, v in out.items():
            assert v.shape == (6,) and np.all(np.isfinite(v)), name
    np.testing.assert_array_equal(outs[8]["m"], outs[32]["m"])
    np.testing.assert_array_equal(outs[8]["theta_star"], outs[32]["theta_star"])
    for H, out in outs.items():
        for N in horizon.N_VALUES:
            assert np.all(out[f"cov_{N:g}"] <= 1 / 40 + 1e-12)
        # KL = κ(B)·H/(2n) exactly on the seeds with no rare-prompt sample
        unseen = out["m"] == 0
        np.testing.assert_allclose(out["kl"][unseen], float(covsim.bounds.kappa(1.0)) * H / 40, rtol=1e-12)


def test_prefix_simulation_matches_generic_pipeline():
    """θ̂, KL and Cov_N of the H-prefix shortcut equal covsim.fit_mle / covsim.kl / kl_horizon_coverage at H."""
    n, H, h_max, B = 20, 8, 16, 1.0
    base = inst.kl_horizon_lower_bound(n, h_max, B=B, key=jax.random.PRNGKey(0))
    for seed in range(4):
        k_theta, k_data = jax.random.split(jax.random.PRNGKey(seed))
        theta_star = jnp.where(jax.random.bernoulli(k_theta, 0.5), 1.0, -1.0).reshape(1)
        truth_max = covsim.LinearModel(base.features, theta_star, horizon=h_max)
        x, y = covsim.sample(truth_max, base.mu, n, key=k_data)
        x = x.at[0].set(1)  # make sure the rare prompt is seen
        y8 = y[:, :H]
        truth = covsim.LinearModel(base.features, theta_star, horizon=H)
        fitted = covsim.fit_mle(covsim.LinearModel(base.features, jnp.zeros(1), horizon=H), x, y8,
                                box=(-jnp.ones(1), jnp.ones(1)))
        theta_hat = horizon.prefix_mle(x, y, H, B)
        np.testing.assert_allclose(theta_hat, fitted.theta[0], atol=1e-7)
        np.testing.assert_allclose(theta_hat, inst.kl_horizon_mle(x, y8, B=B)[0], atol=1e-12)
        Ns = jnp.asarray(horizon.N_VALUES)
        cov = horizon.rare_prompt_coverage(theta_star[0], theta_hat, jnp.asarray(float(H)), h_max, B, Ns) / (2 * n)
        np.testing.assert_allclose(cov, inst.kl_horizon_coverage(theta_star, theta_hat.reshape(1), n, H, Ns, B=B),
                                   atol=1e-14)
        kl = covsim.kl(truth, covsim.LinearModel(base.features, theta_hat.reshape(1), horizon=H), base.mu)
        np.testing.assert_allclose(kl, inst.kl_horizon_kl(theta_star, theta_hat, n, H, B=B), rtol=1e-10)


def test_biased_prompt0_coverage_brute_force():
    H, b = 6, horizon.BIAS
    for N in (1.5, 2.0, 4.0):
        total = 0.0
        for y in itertools.product((0, 1), repeat=H):
            lam = sum(math.log(0.5 / (0.5 + b)) if t else math.log(0.5 / (0.5 - b)) for t in y)
            total += 0.5**H * (lam >= math.log(N) - 1e-9)
        np.testing.assert_allclose(horizon.biased_prompt0_coverage(H, N), total, atol=1e-14)


def test_paired_ratio_slope_is_paired():
    rng = np.random.default_rng(0)
    H = np.array([8.0, 16.0, 32.0, 64.0])
    a = rng.exponential(size=200) * (rng.uniform(size=200) < 0.6)  # heavy seed effect, shared across H
    y = H[:, None] * a[None, :] + 1e-3
    fit = horizon.paired_ratio_slope(H, y)
    assert fit.valid and fit.hi - fit.lo < 0.01 and abs(fit.slope - 1) < 0.01


def _table(kl_of, cov_of, exact_cov_of=None, seeds=16, n=100, B=1.0):
    rows = []
    Hs = [8, 16, 32, 64, 128, 256]
    for H in Hs:
        ekl, ecov = horizon.expected_values(n, H, B, False)
        for s in range(seeds):
            unseen = s % 8 < 5
            row = dict(variant="mle", H=H, H_max=max(Hs), n=n, B=B, seed=s, m=0.0 if unseen else 1.0,
                       kl=kl_of(H, unseen), theta_star=1.0, theta_hat=0.0, exact_kl=ekl)
            for j, N in enumerate(horizon.N_VALUES):
                row[f"cov_{N:g}"] = cov_of(H, N, unseen)
                row[f"exact_cov_{N:g}"] = ecov[j] if exact_cov_of is None else exact_cov_of(H, N)
            rows.append(row)
    return ResultTable(rows)


def test_analyze_holds_on_theory_table():
    kappa = float(covsim.bounds.kappa(1.0))
    table = _table(lambda H, u: kappa * H / 200 if u else 0.001, lambda H, N, u: 0.005 if u else 0.0)
    v = _verdicts(horizon.analyze(table, "quick"))
    assert all(x == Verdict.HOLDS for x in v.values()), v


def test_analyze_fails_on_growing_coverage_and_flat_kl():
    table = _table(lambda H, u: 0.01, lambda H, N, u: min(1.0, 1e-4 * H), lambda H, N: min(1.0, 1e-4 * H))
    v = _verdicts(horizon.analyze(table, "quick"))
    assert v["kl_slope_in_H"] == Verdict.FAILS
    assert v["cov_cap_exact"] == Verdict.FAILS
    assert v["cov_no_growth_in_H"] == Verdict.FAILS
    assert v["ratio_slope_in_H"] == Verdict.FAILS
    assert v["kl_lower_bound_w_p_quarter"] == Verdict.FAILS


def test_control_expected_coverage_grows():
    _, e16 = horizon.expected_values(100, 16, 1.0, True)
    _, e256 = horizon.expected_values(100, 256, 1.0, True)
    assert np.all(e256 > e16)  # grows with H for every N
    assert e256[1] > 1 / 200
