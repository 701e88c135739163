"""Compile less (issue 11, item 5): the run-time-check switch and its effect on JAX's
persistent compilation cache.

- Default ON: a bad traced value still raises under ``jit`` (equinox ``error_if``).
- ``covsim.runtime_checks(False)`` / ``COVSIM_RUNTIME_CHECKS=0``: eager checks still raise
  ``ValueError``; traced checks are left out, so the program holds no host callback and JAX
  (0.10, ``compiler._cache_write``) writes it to the persistent cache.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import covsim
from covsim import _validate


def _pair():
    rng = np.random.default_rng(3)
    p = covsim.TabularModel(jnp.asarray(rng.normal(size=(2, 3, 3, 2))))
    q = covsim.TabularModel(jnp.asarray(rng.normal(size=(2, 3, 3, 2))))
    return p, q


BAD_MU = jnp.asarray([0.5, 0.2])  # sums to 0.7


def test_default_is_on():
    assert _validate.runtime_checks_enabled()


def test_on_a_bad_traced_value_raises_under_jit():
    p, q = _pair()
    with pytest.raises(Exception, match="mu must sum to 1"):
        jax.block_until_ready(jax.jit(lambda mu: covsim.kl(p, q, mu))(BAD_MU))


def test_off_eager_checks_still_raise_and_setting_is_restored():
    p, q = _pair()
    with covsim.runtime_checks(False):
        assert not _validate.runtime_checks_enabled()
        with pytest.raises(ValueError, match="kl: mu must sum to 1"):
            covsim.kl(p, q, BAD_MU)
        with pytest.raises(ValueError, match="horizon"):
            covsim.kl(p, covsim.TabularModel(jnp.zeros((2, 4, 3, 2))), jnp.asarray([0.5, 0.5]))
    assert _validate.runtime_checks_enabled()


def test_off_traced_checks_are_left_out_of_the_program():
    p, q = _pair()

    def f(mu):
        return covsim.kl(p, q, mu)

    on_text = jax.jit(f).lower(jnp.asarray([0.5, 0.5])).as_text()
    with covsim.runtime_checks(False):
        off = jax.jit(lambda mu: covsim.kl(p, q, mu))
        off_text = off.lower(jnp.asarray([0.5, 0.5])).as_text()
        value = off(BAD_MU)  # not refused: the documented trade-off
    assert "callback" in on_text
    assert "callback" not in off_text
    assert np.isfinite(float(value))
    # switched back on: a newly traced function raises again
    with pytest.raises(Exception, match="mu must sum to 1"):
        jax.block_until_ready(jax.jit(lambda mu: covsim.kl(p, q, mu) + 0.0)(BAD_MU))


def test_plain_call_sets_for_the_process_and_refuses_non_bool():
    try:
        covsim.runtime_checks(False)
        assert not _validate.runtime_checks_enabled()
    finally:
        covsim.runtime_checks(True)
    assert _validate.runtime_checks_enabled()
    with pytest.raises(ValueError, match="True or False"):
        covsim.runtime_checks("off")


def test_env_flag_values():
    assert _validate._env_flag(None) and _validate._env_flag("1") and _validate._env_flag("on")
    assert not _validate._env_flag("0") and not _validate._env_flag("off")
    with pytest.raises(ValueError, match="COVSIM_RUNTIME_CHECKS"):
        _validate._env_flag("maybe")


def test_persistent_cache_stores_the_program_only_without_checks(tmp_path):
    """A fresh process: with checks on, JAX refuses to cache the jitted user function (host
    callback); with COVSIM_RUNTIME_CHECKS=0 it writes it."""
    script = textwrap.dedent(f"""
        import os, jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path)!r})
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        import covsim
        rng = np.random.default_rng(3)
        p = covsim.TabularModel(jnp.asarray(rng.normal(size=(2, 3, 3, 2))))
        q = covsim.TabularModel(jnp.asarray(rng.normal(size=(2, 3, 3, 2))))
        def user_fn_checked(mu):
            return covsim.kl(p, q, mu)
        jax.jit(user_fn_checked)(jnp.asarray([0.5, 0.5])).block_until_ready()
        with covsim.runtime_checks(False):
            def user_fn_unchecked(mu):
                return covsim.kl(p, q, mu)
            jax.jit(user_fn_unchecked)(jnp.asarray([0.5, 0.5])).block_until_ready()
        print("ENTRIES", sorted(os.listdir({str(tmp_path)!r})))
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    entries = " ".join(line for line in out.stdout.splitlines() if line.startswith("ENTRIES"))
    assert "user_fn_unchecked" in entries
    assert "user_fn_checked" not in entries


# ---------------------------------------------------------------- Monte Carlo log-ratios


@pytest.mark.parametrize("trial", range(4))
def test_mc_log_ratios_summed_while_drawing_equal_the_sampled_paths(trial):
    """coverage(method="mc") sums lp − lq while drawing: the same draws as covsim.sample and
    the same log-ratios as log_prob(p) − log_prob(q) on them (+inf where q = 0)."""
    from conftest import random_tabular

    from covsim.metrics import _log_ratio, _sampled_log_ratios

    rng = np.random.default_rng(100 + trial)
    P, H, V = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(2, 5))
    p = random_tabular(rng, P, H, V, zero_frac=0.3, prev=trial % 2 == 0, broadcast_h=trial % 3 == 0)
    q = random_tabular(rng, P, H, V, zero_frac=0.3, prev=trial % 4 < 2)
    mu = jnp.asarray(rng.dirichlet(np.ones(P)))
    key = jax.random.PRNGKey(trial)
    x, y = covsim.sample(p, mu, 300, key=key)
    expected = np.asarray(jax.vmap(lambda xi, yi: _log_ratio(p, q, xi, yi))(x, y))
    got = np.asarray(_sampled_log_ratios(p, q, mu, key, 300))
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- pad_horizon: one program for every H

H_MAX = 9


def _linear_law(rng, P, H, V, d):
    features = jnp.asarray(rng.normal(size=(P, H, V + 1, V, d)) / np.sqrt(d))
    theta = rng.normal(size=d)
    return covsim.LinearModel(features, jnp.asarray(theta / np.linalg.norm(theta)), horizon=H)


def _workload(p, mu, key, horizon=None):
    """sample -> constrained MLE -> exact KL, Hellinger, MC coverage (the issue-11 cell)."""
    k_data, k_mc = jax.random.split(key)
    x, y = covsim.sample(p, mu, 300, key=k_data)
    q, diag = covsim.fit_mle(p, x, y, constraint=covsim.Ball(2.0), return_diagnostics=True,
                             **({} if horizon is None else {"horizon": horizon}))
    N = jnp.asarray([1.02, 1.2, 2.0])
    return (q.theta, covsim.kl(p, q, mu), covsim.hellinger2(p, q, mu),
            covsim.coverage(p, q, mu, N, method="mc", num_samples=2000, key=k_mc),
            diag.log_likelihood, diag.iterations)


@pytest.mark.parametrize("H", [1, 4, H_MAX])
def test_padded_linear_workload_equals_unpadded(H):
    rng = np.random.default_rng(H)
    p = _linear_law(rng, 3, H, 4, 5)
    mu = jnp.asarray(rng.dirichlet(np.ones(3)))
    key = jax.random.PRNGKey(11)
    plain = _workload(p, mu, key)
    padded = covsim.pad_horizon(p, H_MAX)
    assert padded.horizon == H_MAX and padded.features.shape[1] == H_MAX
    out = _workload(padded, mu, key, horizon=H)
    for a, b in zip(plain, out):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-14)


def test_padded_sweep_is_one_compiled_program_with_the_same_numbers():
    rng = np.random.default_rng(5)
    mu = jnp.asarray(rng.dirichlet(np.ones(2)))
    sweep = jax.jit(jax.vmap(_workload, in_axes=(None, None, 0, None)))
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    for H in (2, 5, H_MAX):
        p = _linear_law(rng, 2, H, 3, 4)
        out = sweep(covsim.pad_horizon(p, H_MAX), mu, keys, jnp.asarray(H))
        if H == 5:  # (the other horizons: test_padded_linear_workload_equals_unpadded)
            ref = jax.jit(jax.vmap(_workload, in_axes=(None, None, 0)))(p, mu, keys)
            for a, b in zip(ref, out):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-14)
    assert sweep._cache_size() == 1


def test_padded_tabular_pair_same_kl_hellinger_coverage_and_fit(rng):
    from conftest import random_tabular

    H = 3
    p = random_tabular(rng, 2, H, 3, zero_frac=0.3)
    q = random_tabular(rng, 2, H, 3, zero_frac=0.2, broadcast_h=True)
    mu = jnp.asarray([0.3, 0.7])
    pp, qp = covsim.pad_horizon(p, 6), covsim.pad_horizon(q, 6)
    N = jnp.asarray([1.5, 4.0])
    np.testing.assert_allclose(covsim.kl(pp, qp, mu), covsim.kl(p, q, mu), rtol=1e-12)
    np.testing.assert_allclose(covsim.hellinger2(pp, qp, mu), covsim.hellinger2(p, q, mu), rtol=1e-12)
    np.testing.assert_allclose(covsim.coverage(pp, qp, mu, N), covsim.coverage(p, q, mu, N),
                               rtol=1e-12, atol=1e-15)
    key = jax.random.PRNGKey(4)
    np.testing.assert_array_equal(
        covsim.coverage(pp, qp, mu, N, method="mc", num_samples=3000, key=key),
        covsim.coverage(p, q, mu, N, method="mc", num_samples=3000, key=key))
    x, y = covsim.sample(pp, mu, 200, key=key)
    fitted = covsim.fit_mle(pp, x, y, horizon=H)
    ref = covsim.fit_mle(p, x, y[:, :H])
    np.testing.assert_array_equal(fitted.logits[:, :H], ref.logits)


def test_pad_horizon_and_fit_horizon_refuse_bad_values(rng):
    p = _linear_law(rng, 1, 3, 2, 2)
    with pytest.raises(ValueError, match="pad_horizon: horizon must be a Python int >= "):
        covsim.pad_horizon(p, 2)
    assert covsim.pad_horizon(p, 3) is p
    padded = covsim.pad_horizon(p, 5)
    x, y = covsim.sample(padded, jnp.ones(1), 10, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"fit_mle: horizon must lie in \[0, H\] = \[0, 5\], got 6"):
        covsim.fit_mle(padded, x, y, horizon=6)
    with pytest.raises(ValueError, match="fit_mle: horizon must be an integer scalar"):
        covsim.fit_mle(padded, x, y, horizon=2.5)
    with pytest.raises(Exception, match="horizon must lie in"):
        jax.block_until_ready(jax.jit(lambda h: covsim.fit_mle(padded, x, y, horizon=h).theta)(jnp.asarray(7)))
