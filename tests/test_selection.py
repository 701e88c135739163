"""Tournaments and selection baselines (covsim.selection) against naive references."""

import itertools
import math
import time

import jax


import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import random_tabular  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import covsim  # noqa: E402
from covsim import selection  # noqa: E402
from covsim.exact import TIE_TOLERANCE  # noqa: E402

LOG2 = math.log(2.0)


# ---------------------------------------------------------------------------
# naive references (Python loops)


def naive_covers(rival, base, N):
    if rival == -np.inf:
        return False
    if base == -np.inf:
        return True
    return rival - base >= math.log(N) - TIE_TOLERANCE


def naive_count_matrix(L, N):
    m, n = L.shape
    return np.array([[sum(naive_covers(L[k, i], L[j, i], N) for i in range(n)) for k in range(m)]
                     for j in range(m)])


def naive_select(scores, L):
    means = L.mean(axis=1)
    order = sorted(range(len(scores)), key=lambda j: (scores[j], -means[j], j))
    return order[0]


def naive_tournament(L, N):
    counts = naive_count_matrix(L, N)
    scores = counts.max(axis=1) / L.shape[1]
    return naive_select(scores, L), scores


def naive_offset(L, N, a, on):
    m, n = L.shape
    counts = naive_count_matrix(L, N)
    gamma = N**a
    scores = np.empty(m)
    for j in range(m):
        best = -np.inf
        for k in range(m):
            S = on.shape[3]
            onp = sum(naive_covers(on[j, k, i, s], on[j, j, i, s], N) for i in range(n) for s in range(S))
            best = max(best, counts[j, k] / n - 2 * gamma * onp / (n * S))
        scores[j] = best
    return naive_select(scores, L), scores


# Log-likelihoods on a grid of multiples of log 2 (so differences hit log N exactly for
# N = 2, 4) plus −inf entries.
grid_value = st.one_of(st.integers(-6, 0).map(lambda k: k * LOG2), st.just(-np.inf))


@st.composite
def loglik_matrices(draw):
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 8))
    values = draw(st.lists(grid_value, min_size=m * n, max_size=m * n))
    return np.array(values, dtype=float).reshape(m, n)


@settings(max_examples=40, deadline=None)
@given(L=loglik_matrices(), N=st.sampled_from([1.0, 2.0, 3.0, 4.0, 8.0]))
def test_tournament_matches_naive_double_loop(L, N):
    index, scores = selection.tournament(jnp.asarray(L), N)
    ref_index, ref_scores = naive_tournament(L, N)
    np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=0, atol=1e-15)
    assert int(index) == ref_index


def test_tournament_matches_naive_on_random_continuous_logliks(rng):
    for m, n in [(7, 50), (3, 101), (12, 33)]:
        L = -rng.exponential(3.0, size=(m, n))
        L[rng.random((m, n)) < 0.05] = -np.inf
        for N in (1.0, 1.5, 4.0, 30.0):
            index, scores = selection.tournament(L, N)
            ref_index, ref_scores = naive_tournament(L, N)
            np.testing.assert_allclose(np.asarray(scores), ref_scores, atol=1e-15)
            assert int(index) == ref_index


def test_tournament_counts_ties_at_exactly_log_n():
    # Rival 1 beats candidate 0 by exactly log 4 on both examples (designed tie: counted).
    L = np.log(np.array([[0.1, 0.05], [0.4, 0.2]]))
    _, scores = selection.tournament(L, 4.0)
    np.testing.assert_allclose(np.asarray(scores), [1.0, 0.0])
    # Just above log 4 the comparison fails.
    _, scores = selection.tournament(L, 4.0 * (1 + 1e-6))
    np.testing.assert_allclose(np.asarray(scores), [0.0, 0.0])


def test_tournament_neg_inf_handling():
    L = np.array([
        [-np.inf, -1.0, -np.inf],  # candidate 0: zero on examples 0 and 2
        [-2.0, -1.0, -np.inf],  # candidate 1: zero on example 2 only
    ])
    _, scores = selection.tournament(L, 1e6)
    # 1 covers 0 on example 0 (finite vs −inf); −inf − (−inf) on example 2 never covers.
    np.testing.assert_allclose(np.asarray(scores), [1 / 3, 0.0])
    assert np.all(np.isfinite(np.asarray(scores)))
    # N = 1: self-comparisons count on finite entries only.
    _, scores = selection.tournament(L, 1.0)
    np.testing.assert_allclose(np.asarray(scores), [2 / 3, 2 / 3])


def test_tournament_tie_rules():
    # Scores tie at 0 for all (N huge); highest mean log-likelihood wins.
    L = np.array([[-3.0, -3.0], [-1.0, -2.0], [-2.0, -1.0], [-5.0, -0.5]])
    index, scores = selection.tournament(L, 1e9)
    np.testing.assert_array_equal(np.asarray(scores), 0.0)
    assert int(index) == 1  # means: -3, -1.5, -1.5, -2.75 -> tie between 1 and 2 -> lowest index
    # Only tied-on-score candidates compete on the mean: candidate 3 has the best mean but a
    # worse score.
    L = np.array([[-1.0, -1.0], [-1.0, -1.0], [-0.1, -10.0]])
    index, scores = selection.tournament(L, 2.0)
    assert np.asarray(scores)[2] > 0
    assert int(index) == 0
    # All tied candidates have mean −inf: lowest index among the tied ones.
    L = np.array([[-np.inf, -1.0], [-1.0, -np.inf]])
    index, scores = selection.tournament(L, 2.0)
    np.testing.assert_allclose(np.asarray(scores), [0.5, 0.5])
    assert int(index) == 0


def test_tournament_jit_and_dtype():
    L = jnp.asarray(np.random.default_rng(1).normal(size=(6, 40)))
    expected = selection.tournament(L, 2.0)
    jitted = jax.jit(selection.tournament)(L, 2.0)
    assert int(jitted[0]) == int(expected[0])
    np.testing.assert_array_equal(np.asarray(jitted[1]), np.asarray(expected[1]))
    index32, scores32 = selection.tournament(L.astype(jnp.float32), 2.0)
    assert scores32.dtype == jnp.float32


def test_tournament_timing_200_candidates_10k_examples():
    L = jnp.asarray(np.random.default_rng(0).normal(size=(200, 10_000)) - 5.0)
    index, _ = selection.tournament(L, 4.0)
    index.block_until_ready()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        index, _ = selection.tournament(L, 4.0)
        index.block_until_ready()
        times.append(time.perf_counter() - start)
    print(f"tournament 200 x 10^4 after compile: best {min(times):.3f} s, runs {times}")
    assert min(times) < 5.0


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_tournament_rejects_bad_level(bad):
    with pytest.raises(ValueError, match="N must be"):
        selection.tournament(np.zeros((2, 3)), bad)


def test_tournament_rejects_bad_logliks():
    with pytest.raises(ValueError, match="shape"):
        selection.tournament(np.zeros(3), 2.0)
    with pytest.raises(ValueError, match="NaN"):
        selection.tournament(np.array([[0.0, np.nan]]), 2.0)
    with pytest.raises(ValueError, match="N must be a scalar"):
        selection.tournament(np.zeros((2, 3)), np.array([2.0, 3.0]))


# ---------------------------------------------------------------------------
# offset tournament


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 3), n=st.integers(1, 4),
       S=st.integers(1, 2), N=st.sampled_from([2.0, 4.0, 9.0]), a=st.sampled_from([0.0, 0.25, 0.5]))
def test_offset_tournament_matches_naive(seed, m, n, S, N, a):
    rng = np.random.default_rng(seed)
    L = rng.integers(-5, 1, size=(m, n)) * LOG2
    on = rng.integers(-5, 1, size=(m, m, n, S)) * LOG2
    on[rng.random(on.shape) < 0.1] = -np.inf
    for j in range(m):
        on[j, j] = np.maximum(on[j, j], -3.0)  # own generations have positive probability
    index, scores = selection.offset_tournament(L, N, a, on)
    ref_index, ref_scores = naive_offset(L, N, a, on)
    np.testing.assert_allclose(np.asarray(scores), ref_scores, atol=1e-12)
    assert int(index) == ref_index


def test_offset_tournament_reduces_to_simple_when_no_onpolicy_coverage(rng):
    m, n, S = 6, 40, 3
    L = -rng.exponential(2.0, size=(m, n))
    own = -rng.exponential(1.0, size=(m, n, S))
    on = np.repeat(own[:, None] - 50.0, m, axis=1)  # rivals far below on generations
    on[np.arange(m), np.arange(m)] = own
    for N, a in [(4.0, 0.3), (16.0, 0.0)]:
        off_index, off_scores = selection.offset_tournament(L, N, a, on)
        index, scores = selection.tournament(L, N)
        assert int(off_index) == int(index)
        np.testing.assert_allclose(np.asarray(off_scores), np.asarray(scores))


def test_offset_tournament_rejects_bad_shapes():
    with pytest.raises(ValueError, match="onpolicy_logliks"):
        selection.offset_tournament(np.zeros((2, 3)), 4.0, 0.2, np.zeros((2, 2, 4, 1)))
    with pytest.raises(ValueError, match="a must be"):
        selection.offset_tournament(np.zeros((2, 3)), 4.0, -1.0, np.zeros((2, 2, 3, 1)))


# ---------------------------------------------------------------------------
# candidates, held-out log-likelihoods, on-policy generations


def _random_tabular(rng, P, H, V, **kw):
    return random_tabular(rng, P, H, V, **kw)


def _direct_logliks(models, x, y):
    return np.stack([np.asarray(jax.vmap(lambda xi, yi, mdl=mdl: covsim.log_prob(mdl, xi, yi))(x, y))
                     for mdl in models])


def test_heldout_logliks_list_and_stacked_agree(rng):
    P, H, V, d = 3, 4, 3, 2
    feats = jnp.asarray(rng.normal(size=(P, H, V + 1, V, d)))
    thetas = jnp.asarray(rng.normal(size=(5, d)))
    linear = [covsim.LinearModel(feats, t) for t in thetas]
    x = jnp.asarray(rng.integers(0, P, size=30))
    y = jnp.asarray(rng.integers(0, V, size=(30, H)))
    expected = _direct_logliks(linear, x, y)
    np.testing.assert_allclose(np.asarray(selection.heldout_logliks(linear, x, y)), expected, rtol=1e-12)
    stacked = jax.vmap(lambda t: covsim.LinearModel(feats, t, H))(thetas)
    np.testing.assert_allclose(np.asarray(selection.heldout_logliks(stacked, x, y)), expected, rtol=1e-12)
    # stacked LinearModel with shared (unbatched) features, as eqx.filter_vmap may build it
    shared = eqx.tree_at(lambda mdl: mdl.features, stacked, feats)
    np.testing.assert_allclose(np.asarray(selection.heldout_logliks(shared, x, y)), expected, rtol=1e-12)
    # tabular candidates with different broadcast axes, and a stacked TabularModel
    tabular = [_random_tabular(rng, P, H, V, zero_frac=0.3),
               _random_tabular(rng, 1, H, V, prev=False),
               _random_tabular(rng, P, H, V, broadcast_h=True)]
    expected = _direct_logliks(tabular, x, y)
    got = np.asarray(selection.heldout_logliks(tabular, x, y))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.any(np.isneginf(got)) and not np.any(np.isnan(got))
    logits = jnp.stack([jnp.broadcast_to(t.logits, (P, H, V + 1, V)) for t in tabular])
    stacked_tab = jax.vmap(lambda lg: covsim.TabularModel(lg, H))(logits)
    np.testing.assert_allclose(np.asarray(selection.heldout_logliks(stacked_tab, x, y)), expected,
                               rtol=1e-12)
    mixed = tabular[:1] + linear[:1]
    np.testing.assert_allclose(np.asarray(selection.heldout_logliks(mixed, x, y)),
                               _direct_logliks(mixed, x, y), rtol=1e-12)


def test_heldout_logliks_validation(rng):
    model = _random_tabular(rng, 2, 3, 2)
    with pytest.raises(ValueError, match="shape"):
        selection.heldout_logliks([model], jnp.zeros(4, int), jnp.zeros((4, 2), int))
    with pytest.raises(ValueError, match="tokens y"):
        selection.heldout_logliks([model], jnp.zeros(1, int), jnp.full((1, 3), 2))
    with pytest.raises(ValueError, match="share H and V"):
        selection.heldout_logliks([model, _random_tabular(rng, 2, 2, 2)], jnp.zeros(1, int),
                                  jnp.zeros((1, 3), int))
    with pytest.raises(ValueError, match="at least one"):
        selection.heldout_logliks([], jnp.zeros(1, int), jnp.zeros((1, 3), int))


def _reverse_tail_exact(p_model, other, x, N):
    """P_{y~p(·|x)}[other(y|x)/p(y|x) >= N] by enumeration (NumPy)."""
    H, V = p_model.horizon, p_model.vocab_size
    total = 0.0
    for y in itertools.product(range(V), repeat=H):
        lp = float(covsim.log_prob(p_model, x, jnp.asarray(y)))
        lo = float(covsim.log_prob(other, x, jnp.asarray(y)))
        if lp > -np.inf and lo > -np.inf and lo - lp >= math.log(N) - TIE_TOLERANCE:
            total += math.exp(lp)
    return total


def test_onpolicy_logliks_matches_exact_onpolicy_coverage(rng):
    P, H, V, S = 2, 3, 3, 4000
    models = [_random_tabular(rng, P, H, V, scale=1.5) for _ in range(3)]
    x = jnp.asarray([0, 1])
    on = np.asarray(selection.onpolicy_logliks(models, x, S, key=jax.random.key(3)))
    assert on.shape == (3, 3, 2, S)
    assert np.all(np.isfinite(on[np.arange(3), np.arange(3)]))
    N = 2.0
    for j, k in [(0, 1), (1, 2), (2, 0)]:
        for i in range(2):
            hits = on[j, k, i] - on[j, j, i] >= math.log(N) - TIE_TOLERANCE
            exact = _reverse_tail_exact(models[j], models[k], int(x[i]), N)
            se = math.sqrt(max(exact * (1 - exact), 1e-4) / S)
            assert abs(hits.mean() - exact) < 5 * se, (j, k, i, hits.mean(), exact)


def test_onpolicy_logliks_requires_key(rng):
    with pytest.raises(ValueError, match="key"):
        selection.onpolicy_logliks([_random_tabular(rng, 1, 2, 2)], jnp.zeros(2, int), 2, key=None)


# ---------------------------------------------------------------------------
# baselines and side-by-side comparison


def test_select_min_cross_entropy():
    L = np.array([[-1.0, -3.0], [-2.0, -1.0], [-1.5, -1.5], [-np.inf, 0.0]])
    index, ce = selection.select_min_cross_entropy(L)
    np.testing.assert_allclose(np.asarray(ce), [2.0, 1.5, 1.5, np.inf])
    assert int(index) == 1


def test_select_min_kl_matches_covsim_kl(rng):
    P, H, V = 2, 3, 3
    truth = _random_tabular(rng, P, H, V)
    models = [_random_tabular(rng, P, H, V, zero_frac=0.2) for _ in range(4)] + [truth]
    mu = jnp.asarray([0.3, 0.7])
    index, values = selection.select_min_kl(models, truth, mu)
    kl = jax.jit(covsim.kl)
    expected = np.array([float(kl(truth, mdl, mu)) for mdl in models])
    np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-10, atol=1e-14)
    assert int(index) == int(np.argmin(expected)) == 4


def test_compare_selections_keys(rng):
    P, H, V = 2, 3, 2
    truth = _random_tabular(rng, P, H, V)
    models = [_random_tabular(rng, P, H, V) for _ in range(3)]
    mu = jnp.asarray([0.5, 0.5])
    x, y = covsim.sample(truth, mu, 16, key=jax.random.key(1))
    picks = selection.compare_selections(models, x, y, 2.0)
    assert set(picks) == {"tournament", "min_cross_entropy"}
    picks = selection.compare_selections(models, x, y, 2.0, truth=truth, mu=mu, a=0.2,
                                         key=jax.random.key(2), num_generations=2)
    assert set(picks) == {"tournament", "min_cross_entropy", "offset_tournament", "min_kl"}
    L = selection.heldout_logliks(models, x, y)
    assert picks["tournament"] == int(selection.tournament(L, 2.0)[0])
    assert all(isinstance(v, int) and 0 <= v < 3 for v in picks.values())
    with pytest.raises(ValueError, match="key"):
        selection.compare_selections(models, x, y, 2.0, a=0.2)
    with pytest.raises(ValueError, match="mu"):
        selection.compare_selections(models, x, y, 2.0, truth=truth)
