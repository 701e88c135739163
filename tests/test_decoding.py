"""Test-time-training decoding π^TTT (covsim.decoding; THEORY.md §6.4)."""

import itertools

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import covsim  # noqa: E402
from covsim import decoding  # noqa: E402
from covsim.instances._base import Ball  # noqa: E402

P, H, V, D = 2, 3, 3, 2
ETA = 0.35
BALL = Ball(1.0)


@pytest.fixture(scope="module")
def law():
    rng = np.random.default_rng(7)
    features = jnp.asarray(rng.normal(size=(P, H, V + 1, V, D)))
    truth = covsim.LinearModel(features, jnp.array([0.5, -0.6]))
    learner = covsim.LinearModel(features, jnp.zeros(D))
    theta = jnp.array([-0.3, 0.45])
    mu = jnp.array([0.35, 0.65])
    return features, truth, learner, theta, mu


ALL_Y = jnp.asarray(list(itertools.product(range(V), repeat=H)))  # (V^H, H)


def ttt_table(learner, theta, eta):
    """log π^TTT(y|x) for every prompt and every response, shape (P, V^H)."""
    f = jax.jit(jax.vmap(jax.vmap(
        lambda x, y: decoding.ttt_log_prob(learner, theta, x, y, learning_rate=eta, constraint=BALL),
        in_axes=(None, 0)), in_axes=(0, None)))
    return f(jnp.arange(P), ALL_Y)


def test_zero_step_is_the_base_model(law):
    features, truth, learner, theta, mu = law
    got = ttt_table(learner, theta, 0.0)
    model = covsim.LinearModel(features, theta)
    want = jax.vmap(jax.vmap(lambda x, y: covsim.log_prob(model, x, y), (None, 0)), (0, None))(jnp.arange(P), ALL_Y)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_ttt_is_a_distribution_and_matches_python_reference(law):
    features, truth, learner, theta, mu = law
    table = ttt_table(learner, theta, ETA)
    np.testing.assert_allclose(jax.nn.logsumexp(table, axis=1), 0.0, atol=1e-12)
    # a Python reference for one sequence: teacher-forced projected steps
    x, y = 1, [2, 0, 1]
    current, total = theta, 0.0
    for h in range(H):
        prev = V if h == 0 else y[h - 1]
        context = np.asarray(features[x, h, prev])
        logits = context @ np.asarray(current)
        log_q = logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()
        total += log_q[y[h]]
        score = context[y[h]] - np.exp(log_q) @ context
        current = np.asarray(current) + ETA * score
        current = current / max(1.0, np.linalg.norm(current))
    index = int(np.ravel_multi_index(y, (V,) * H))
    np.testing.assert_allclose(table[x, index], total, rtol=1e-12)
    # and the improper model differs from π_θ
    assert not np.allclose(table, ttt_table(learner, theta, 0.0))


def exact_truth_table(truth):
    return jax.vmap(jax.vmap(lambda x, y: covsim.log_prob(truth, x, y), (None, 0)), (0, None))(jnp.arange(P), ALL_Y)


def test_ttt_kl_matches_enumeration(law):
    features, truth, learner, theta, mu = law
    # learning_rate = 0: the sequence KL of π_θ
    est = decoding.ttt_kl(truth, learner, theta, mu, learning_rate=0.0, constraint=BALL,
                          num_samples=4000, key=jax.random.key(0))
    exact = float(covsim.kl(truth, covsim.LinearModel(features, theta), mu))
    assert abs(float(est.mean) - exact) <= 5 * float(est.stderr)
    # learning_rate > 0: KL(π_D‖π^TTT) = E log(π_D/π^TTT) by enumeration (chain rule)
    log_d = exact_truth_table(truth)
    log_t = ttt_table(learner, theta, ETA)
    exact = float(jnp.sum(mu[:, None] * jnp.exp(log_d) * (log_d - log_t)))
    est = decoding.ttt_kl(truth, learner, theta, mu, learning_rate=ETA, constraint=BALL,
                          num_samples=4000, key=jax.random.key(1), chunk_size=1000)
    assert abs(float(est.mean) - exact) <= 5 * float(est.stderr)
    assert abs(exact - float(covsim.kl(truth, covsim.LinearModel(features, theta), mu))) > 5 * float(est.stderr)


def test_ttt_coverage_matches_enumeration(law):
    features, truth, learner, theta, mu = law
    N = jnp.array([[1.5, 3.0], [10.0, 1.0]])
    log_d = exact_truth_table(truth)
    log_t = ttt_table(learner, theta, ETA)
    ratio = log_d - log_t
    exact = jnp.stack([jnp.sum(mu[:, None] * jnp.exp(log_d) * (ratio >= jnp.log(n) - 1e-9)) for n in N.ravel()])
    est = decoding.ttt_coverage(truth, learner, theta, mu, N, learning_rate=ETA, constraint=BALL,
                                num_samples=4000, key=jax.random.key(2))
    assert est.mean.shape == N.shape
    se = np.maximum(np.asarray(est.stderr).ravel(), 1e-12)
    assert np.all(np.abs(np.asarray(est.mean).ravel() - np.asarray(exact)) <= 5 * se + 1e-12)


def test_ttt_sample_frequencies(law):
    features, truth, learner, theta, mu = law
    n = 20000
    x, y = decoding.ttt_sample(learner, theta, mu, n, key=jax.random.key(3), learning_rate=ETA, constraint=BALL)
    assert x.shape == (n,) and y.shape == (n, H)
    probs = np.asarray(mu[:, None] * jnp.exp(ttt_table(learner, theta, ETA))).ravel()
    cells = np.asarray(x) * V**H + np.ravel_multi_index(np.asarray(y).T, (V,) * H)
    freq = np.bincount(cells, minlength=P * V**H) / n
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(freq - probs) <= 5 * se + 1e-4)
    # the TTT law differs from π_θ enough to be told apart by this test
    base = np.asarray(mu[:, None] * jnp.exp(ttt_table(learner, theta, 0.0))).ravel()
    assert np.any(np.abs(freq - base) > 5 * se + 1e-4)


def test_vmap_over_thetas_and_validation(law):
    features, truth, learner, theta, mu = law
    thetas = jnp.stack([theta, -theta, 0.5 * theta])
    y = jnp.array([0, 1, 2])
    batched = jax.vmap(lambda t: decoding.ttt_log_prob(learner, t, 0, y, learning_rate=ETA, constraint=BALL))(thetas)
    for i in range(3):
        np.testing.assert_allclose(batched[i], decoding.ttt_log_prob(learner, thetas[i], 0, y,
                                                                     learning_rate=ETA, constraint=BALL))
    with pytest.raises(ValueError, match="y must have shape"):
        decoding.ttt_log_prob(learner, theta, 0, y[:2], learning_rate=ETA, constraint=BALL)
    with pytest.raises(ValueError, match="key"):
        decoding.ttt_sample(learner, theta, mu, 5, key=None, learning_rate=ETA, constraint=BALL)
    with pytest.raises(ValueError, match="N must be"):
        decoding.ttt_coverage(truth, learner, theta, mu, 0.5, learning_rate=ETA, constraint=BALL,
                              num_samples=10, key=jax.random.key(0))
