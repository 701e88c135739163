"""Models, sampling, pass@N / pass@k and boundary validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_tabular
from hypothesis import given, settings
from hypothesis import strategies as st

import covsim


def test_log_prob_sums_to_one_over_all_sequences(rng):
    import itertools

    p = random_tabular(rng, 2, 3, 3, zero_frac=0.2)
    for x in range(2):
        total = sum(np.exp(covsim.log_prob(p, x, jnp.array(y))) for y in itertools.product(range(3), repeat=3))
        assert total == pytest.approx(1.0, abs=1e-12)


def test_linear_model_logits_and_broadcast(rng):
    feats = jnp.asarray(rng.normal(size=(1, 1, 1, 3, 2)))
    theta = jnp.array([0.3, -0.2])
    lin = covsim.LinearModel(feats, theta, horizon=4)
    tab = covsim.TabularModel(feats @ theta, horizon=4)
    y = jnp.array([0, 2, 1, 1])
    assert covsim.log_prob(lin, 0, y) == pytest.approx(float(covsim.log_prob(tab, 0, y)))
    assert lin.features is feats or np.all(lin.features == feats)
    assert lin.theta.shape == (2,)


def test_sample_frequencies_match_probabilities(rng):
    p = random_tabular(rng, 2, 2, 2)
    mu = jnp.array([0.25, 0.75])
    n = 40_000
    x, y = covsim.sample(p, mu, n, key=jax.random.PRNGKey(3))
    assert x.shape == (n,) and y.shape == (n, 2)
    for xv in range(2):
        for y0 in range(2):
            for y1 in range(2):
                prob = float(mu[xv] * jnp.exp(covsim.log_prob(p, xv, jnp.array([y0, y1]))))
                freq = np.mean((x == xv) & (y[:, 0] == y0) & (y[:, 1] == y1))
                assert abs(freq - prob) <= 5 * math.sqrt(prob * (1 - prob) / n) + 1e-9


def test_sample_never_draws_zero_probability_tokens():
    logits = jnp.array([[[[0.0, -jnp.inf, 0.0]]]])
    p = covsim.TabularModel(logits, horizon=50)
    _, y = covsim.sample(p, jnp.ones(1), 1000, key=jax.random.PRNGKey(0))
    assert not np.any(y == 1)


def test_sample_requires_key_and_validates():
    p = covsim.TabularModel(jnp.zeros((1, 1, 1, 2)), horizon=3)
    with pytest.raises(ValueError, match="key"):
        covsim.sample(p, jnp.ones(1), 5, key=None)
    with pytest.raises(ValueError, match="n must be"):
        covsim.sample(p, jnp.ones(1), 0, key=jax.random.PRNGKey(0))


def test_model_shape_errors():
    with pytest.raises(ValueError, match="horizon"):
        covsim.TabularModel(jnp.zeros((1, 1, 1, 2)))
    with pytest.raises(ValueError, match="previous-token axis"):
        covsim.TabularModel(jnp.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="theta"):
        covsim.LinearModel(jnp.zeros((1, 2, 1, 2, 3)), jnp.zeros(2))
    with pytest.raises(ValueError, match="horizon=5"):
        covsim.TabularModel(jnp.zeros((1, 3, 1, 2)), horizon=5)


def test_metric_validation_messages():
    p = covsim.TabularModel(jnp.zeros((2, 1, 1, 2)), horizon=2)
    q3 = covsim.TabularModel(jnp.zeros((2, 1, 1, 3)), horizon=2)
    mu = jnp.array([0.5, 0.5])
    with pytest.raises(ValueError, match=r"N must be >= 1, got 0.5"):
        covsim.coverage(p, p, mu, 0.5)
    with pytest.raises(ValueError, match="sum to 1"):
        covsim.kl(p, p, jnp.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="vocabulary size"):
        covsim.kl(p, q3, mu)
    with pytest.raises(ValueError, match="mu has 3 prompts"):
        covsim.kl(p, p, jnp.ones(3) / 3)
    with pytest.raises(ValueError, match="same horizon"):
        covsim.kl(p, covsim.TabularModel(jnp.zeros((2, 1, 1, 2)), horizon=3), mu)
    with pytest.raises(ValueError, match="method"):
        covsim.coverage(p, p, mu, 2.0, method="magic")
    with pytest.raises(ValueError, match="num_samples"):
        covsim.coverage(p, p, mu, 2.0, method="mc", key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="key"):
        covsim.coverage(p, p, mu, 2.0, method="mc", num_samples=10)


def test_pass_at_n_exact_and_stable():
    assert covsim.pass_at_n(0.5, 3) == pytest.approx(0.875)
    assert covsim.pass_at_n(0.0, 10) == 0.0
    assert covsim.pass_at_n(1.0, 10) == 1.0
    tiny = covsim.pass_at_n(jnp.float64(1e-12), 1e6)
    assert tiny == pytest.approx(-math.expm1(1e6 * math.log1p(-1e-12)), rel=1e-12)
    assert covsim.pass_at_n(1e-300, 1e300) == pytest.approx(1 - math.exp(-1.0))
    with pytest.raises(ValueError, match="p_success"):
        covsim.pass_at_n(1.5, 2)


def test_pass_at_k_matches_binomial_formula():
    for n in range(1, 12):
        for c in range(0, n + 1):
            for k in range(1, n + 1):
                want = 1.0 - math.comb(n - c, k) / math.comb(n, k)
                assert covsim.pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
    assert covsim.pass_at_k(5, 0, 5) == 0.0
    assert covsim.pass_at_k(5, 3, 3) == 1.0  # n - c < k


@pytest.mark.parametrize("args, match", [((3, 0, 5), "k=5 exceeds n=3"), ((3, 4, 1), "c=4"),
                                         ((3, -1, 1), "c must be >= 0"), ((3, 1, 0), "k must be >= 1")])
def test_pass_at_k_errors(args, match):
    with pytest.raises(ValueError, match=match):
        covsim.pass_at_k(*args)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(1, 200), c=st.integers(0, 200))
def test_pass_at_k_in_unit_interval_and_monotone_in_c(n, k, c):
    if k > n or c > n:
        return
    value = covsim.pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    if c < n:
        assert covsim.pass_at_k(n, c + 1, k) >= value - 1e-15
    traced = jax.jit(covsim.metrics.pass_at_k_traced)(n, c, k)
    assert float(traced) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_inverse_cdf_never_draws_zero_probability_tail_token(dtype):
    """Uniforms at 0, at interval edges and just below 1 (total not exactly 1): zero-probability
    tokens, inside or after the support, are never drawn."""
    from covsim.models import _invert_cdf

    probs = jnp.asarray([0.3, 0.0, 0.7 * (1 - 1e-7), 0.0, 0.0], dtype=dtype)
    cdf = jnp.cumsum(probs)
    u_max = jnp.nextafter(jnp.asarray(1.0, dtype), jnp.asarray(0.0, dtype))
    u = jnp.asarray([0.0, 0.29, 0.31, 0.5, u_max], dtype=dtype)
    tok = _invert_cdf(jnp.broadcast_to(cdf, (5, 5)), u)
    np.testing.assert_array_equal(np.asarray(tok), [0, 0, 2, 2, 2])
