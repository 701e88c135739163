"""Best-of-N, exact Pass@N and BoN regret (covsim.bon) against enumeration and Monte Carlo."""

import itertools
import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import random_tabular  # noqa: E402

import covsim  # noqa: E402
from covsim import bon  # noqa: E402

P, H, V = 2, 3, 3
MU = jnp.asarray([0.35, 0.65])


def sequence_probs(model, num_prompts=P):
    """(P, V^H) probabilities in lexicographic order, by explicit products (NumPy)."""
    table = np.exp(np.asarray(covsim.next_token_log_probs(model)))
    out = np.zeros((num_prompts, V**H))
    for x in range(num_prompts):
        for j, y in enumerate(itertools.product(range(V), repeat=model.horizon)):
            prob, prev = 1.0, V
            for h, v in enumerate(y):
                prob *= table[min(x, table.shape[0] - 1), min(h, table.shape[1] - 1),
                              min(prev, table.shape[2] - 1), v]
                prev = v
            out[x, j] = prob
    return out


def sequence_index(y):
    return int(sum(int(v) * V ** (H - 1 - h) for h, v in enumerate(y)))


def first_token_is_zero(x, y):
    return y[0] == 0


def matches_target(x, y):
    target = jnp.asarray([[0, 1, 2], [2, 2, 0]])
    return jnp.all(y == target[x])


# ---------------------------------------------------------------------------
# sampling and Best-of-N


def test_sample_responses_frequencies_match_probabilities(rng):
    model = random_tabular(rng, P, H, V, zero_frac=0.2)
    draws = np.asarray(bon.sample_responses(model, jnp.asarray([0, 1]), 20_000, key=jax.random.key(0)))
    assert draws.shape == (2, 20_000, H)
    probs = sequence_probs(model)
    for x in range(P):
        idx = draws[x] @ (V ** np.arange(H - 1, -1, -1))
        freq = np.bincount(idx, minlength=V**H) / draws.shape[1]
        se = np.sqrt(np.maximum(probs[x] * (1 - probs[x]), 1e-6) / draws.shape[1])
        assert np.all(np.abs(freq - probs[x]) < 5 * se + 1e-12)
        assert np.all(freq[probs[x] == 0] == 0)


def test_best_of_n_returns_argmax_first_on_ties(rng):
    model = random_tabular(rng, P, H, V)
    x = jnp.asarray([0, 1, 1, 0])
    key = jax.random.key(5)

    def reward(xi, y):
        return jnp.sum(y).astype(float) + 0.5 * xi

    out = bon.best_of_n(model, x, reward, 6, key=key)
    draws = np.asarray(bon.sample_responses(model, x, 6, key=key))
    rewards = draws.sum(-1) + 0.5 * np.asarray(x)[:, None]
    np.testing.assert_array_equal(np.asarray(out.choice), rewards.argmax(-1))
    np.testing.assert_array_equal(np.asarray(out.y), draws[np.arange(4), rewards.argmax(-1)])
    np.testing.assert_allclose(np.asarray(out.reward), rewards.max(-1))
    constant = bon.best_of_n(model, x, lambda xi, y: jnp.float64(1.0), 6, key=key)
    np.testing.assert_array_equal(np.asarray(constant.choice), 0)
    np.testing.assert_array_equal(np.asarray(constant.y), draws[:, 0])


def test_best_of_n_vmapped_over_keys_matches_exact_pass_at_n(rng):
    model = random_tabular(rng, P, H, V, scale=1.0)
    target = jnp.asarray([[0, 1, 2], [2, 2, 0]])
    N, seeds = 4, 4000
    keys = jax.random.split(jax.random.key(11), seeds)
    out = jax.vmap(lambda k: bon.best_of_n(model, MU, matches_target, N, key=k))(keys)
    assert out.x.shape == (seeds,) and out.y.shape == (seeds, H)
    exact = float(bon.pass_at_n_exact(model, MU, target, N))
    success = np.asarray(out.reward, dtype=float)
    se = math.sqrt(exact * (1 - exact) / seeds)
    assert abs(success.mean() - exact) < 5 * se
    # prompts are drawn from mu
    assert abs(np.mean(np.asarray(out.x) == 1) - 0.65) < 5 * math.sqrt(0.65 * 0.35 / seeds)


def test_best_of_n_validation(rng):
    model = random_tabular(rng, P, H, V)
    with pytest.raises(ValueError, match="key"):
        bon.best_of_n(model, jnp.asarray([0]), first_token_is_zero, 2, key=None)
    with pytest.raises(ValueError, match="N must be"):
        bon.best_of_n(model, jnp.asarray([0]), first_token_is_zero, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="prompts x"):
        bon.best_of_n(model, jnp.asarray([2]), first_token_is_zero, 2, key=jax.random.key(0))


# ---------------------------------------------------------------------------
# exact success probabilities and Pass@N


def test_success_probability_and_pass_at_n_exact(rng):
    model = random_tabular(rng, P, H, V, zero_frac=0.1)
    target = np.array([[0, 1, 2], [2, 2, 0]])
    probs = sequence_probs(model)
    s = np.array([probs[x, sequence_index(target[x])] for x in range(P)])
    np.testing.assert_allclose(np.asarray(bon.success_probability(model, target)), s, rtol=1e-12)
    N = np.array([1.0, 3.0, 12.0, 1e6])
    expected = np.array([np.sum(np.asarray(MU) * (1 - (1 - s) ** n)) for n in N])
    np.testing.assert_allclose(np.asarray(bon.pass_at_n_exact(model, MU, target, N)), expected,
                               rtol=1e-10)
    mask = np.zeros((P, V**H), dtype=bool)
    mask[0, sequence_index(target[0])] = mask[1, sequence_index(target[1])] = True
    np.testing.assert_allclose(np.asarray(bon.success_probability_from_mask(model, mask)), s,
                               rtol=1e-12)
    np.testing.assert_allclose(np.asarray(bon.pass_at_n_from_mask(model, MU, mask, N)), expected,
                               rtol=1e-10)


def test_success_probability_from_mask_general_sets(rng):
    model = random_tabular(rng, P, H, V, zero_frac=0.2)
    mask = rng.random((P, V**H)) < 0.4
    mask[1] = False  # empty set: probability 0
    probs = sequence_probs(model)
    expected = (probs * mask).sum(1)
    got = np.asarray(bon.success_probability_from_mask(model, mask))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
    assert got[1] == 0.0


def test_mc_estimates_match_exact(rng):
    model = random_tabular(rng, P, H, V, scale=1.0)
    target = np.array([[0, 1, 2], [2, 2, 0]])
    for N in (1, 5):
        est = bon.pass_at_n_mc(model, MU, matches_target, N, 20_000, key=jax.random.key(N))
        exact = float(bon.pass_at_n_exact(model, MU, target, N))
        assert float(est.stderr) > 0
        assert abs(float(est.mean) - exact) < 5 * float(est.stderr)
    mask = np.zeros((P, V**H), dtype=bool)
    for j, y in enumerate(itertools.product(range(V), repeat=H)):
        mask[:, j] = y[0] == 0
    est = bon.success_probability_mc(model, MU, first_token_is_zero, 20_000, key=jax.random.key(9))
    exact = float(jnp.sum(MU * bon.success_probability_from_mask(model, mask)))
    assert abs(float(est.mean) - exact) < 5 * float(est.stderr)


def test_mask_validation(rng):
    model = random_tabular(rng, P, H, V)
    with pytest.raises(ValueError, match="mask must have shape"):
        bon.success_probability_from_mask(model, np.zeros((P, 5), dtype=bool))
    with pytest.raises(ValueError, match="boolean"):
        bon.success_probability_from_mask(model, np.zeros((P, V**H)))
    with pytest.raises(ValueError, match="target_y"):
        bon.success_probability(model, np.zeros((P, H + 1), dtype=int))


# ---------------------------------------------------------------------------
# regret: closed form, necessity and binary sufficiency (EXACT, THEORY §4.1–4.2)


def brute_regret(model, comparator, mu, mask, N):
    q = sequence_probs(model)
    t = sequence_probs(comparator)
    s_model = (q * mask).sum(1)
    s_comp = (t * mask).sum(1)
    return float(np.sum(np.asarray(mu) * (s_comp - 1 + (1 - s_model) ** N)))


def random_pair(rng, seed_scale):
    model = random_tabular(rng, P, H, V, scale=seed_scale, zero_frac=0.15)
    comparator = random_tabular(rng, P, H, V, scale=seed_scale + 0.5, zero_frac=0.15)
    return model, comparator


def test_bon_regret_matches_brute_force(rng):
    model, comparator = random_pair(rng, 1.5)
    mask = rng.random((P, V**H)) < 0.3
    for N in (1, 4, 50):
        np.testing.assert_allclose(float(bon.bon_regret(model, comparator, MU, mask, N)),
                                   brute_regret(model, comparator, MU, mask, N), rtol=1e-10, atol=1e-14)


def test_necessity_mask_matches_definition(rng):
    model, comparator = random_pair(rng, 2.0)
    q, t = sequence_probs(model), sequence_probs(comparator)
    N = 3.0
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (t > 0) & ((q == 0) | (t / q >= 2 * N * (1 - 1e-9)))
    np.testing.assert_array_equal(np.asarray(bon.necessity_mask(model, comparator, N)), expected)


def test_necessity_and_sufficiency_on_random_tiny_laws(rng):
    violations = []
    M_grid = np.array([1.0, 1.5, 2.0, 4.0, 8.0, 32.0])
    for trial in range(12):
        model, comparator = random_pair(rng, 1.0 + 0.5 * (trial % 4))
        mu = jnp.asarray(rng.dirichlet(np.ones(P)))
        for N in (1, 2, 5, 20):
            regret = float(bon.necessity_regret(model, comparator, mu, float(N)))
            cov = float(covsim.coverage(comparator, model, mu, 2.0 * N))
            if regret < 0.5 * cov - 1e-12:
                violations.append(("necessity", trial, N, regret, cov))
            mask = rng.random((P, V**H)) < rng.uniform(0.05, 0.6)
            regret_any = float(bon.bon_regret(model, comparator, mu, mask, N))
            cov_m = np.asarray(covsim.coverage(comparator, model, mu, M_grid))
            bound = cov_m + np.exp(-N / M_grid)
            if np.any(regret_any > bound + 1e-12):
                violations.append(("sufficiency", trial, N, regret_any, bound.min()))
    assert not violations, violations


def test_necessity_bound_is_attained_nontrivially(rng):
    # A base model that misses the comparator's mass: the necessity regret is large and
    # the bound ½·Cov_{2N} is positive (so the inequality test above is not vacuous).
    logits_t = np.zeros((1, 1, 1, 2))
    logits_q = np.array([[[[0.0, -20.0]]]])
    comparator = covsim.TabularModel(jnp.asarray(logits_t), horizon=2)
    model = covsim.TabularModel(jnp.asarray(logits_q), horizon=2)
    mu = jnp.asarray([1.0])
    regret = float(bon.necessity_regret(model, comparator, mu, 4.0))
    cov = float(covsim.coverage(comparator, model, mu, 8.0))
    assert cov == pytest.approx(0.75)
    assert regret >= 0.5 * cov
    assert regret == pytest.approx(0.75, abs=1e-6)
