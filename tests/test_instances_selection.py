"""misspecified_pair (CONSTRUCTIONS §8) and mode_tradeoff (§11): exact facts and selection."""

import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import covsim  # noqa: E402
from covsim import bon, selection  # noqa: E402
from covsim.instances import selection as inst_sel  # noqa: E402
from covsim.instances._base import Box  # noqa: E402

# ---------------------------------------------------------------------------
# misspecified_pair


@pytest.fixture(scope="module")
def pair():
    return inst_sel.misspecified_pair()


def test_misspecified_pair_parameters(pair):
    alpha, M = 0.5, 1e4
    assert pair.info["p"] == pytest.approx(alpha**2 / (32 * math.log(M)), rel=1e-14)
    np.testing.assert_allclose(np.asarray(pair.mu), [1 - pair.info["p"], pair.info["p"]])
    pi1, pi2 = pair.candidates
    probs1 = np.exp(np.asarray(covsim.next_token_log_probs(pi1)))[:, 0, 0]
    probs2 = np.exp(np.asarray(covsim.next_token_log_probs(pi2)))[:, 0, 0]
    np.testing.assert_allclose(probs1[inst_sel.PLUS, 1], math.exp(-alpha) / 2)
    np.testing.assert_allclose(probs1[inst_sel.MINUS], [0.5, 0.5])
    np.testing.assert_allclose(probs2[inst_sel.PLUS], [0.5, 0.5])
    np.testing.assert_allclose(probs2[inst_sel.MINUS, 1], 1 / (2 * M))
    with pytest.raises(ValueError, match="alpha"):
        inst_sel.misspecified_pair(alpha=1.5)
    with pytest.raises(ValueError, match="M must exceed"):
        inst_sel.misspecified_pair(alpha=1.0, M=2.0)


@pytest.mark.parametrize("alpha,M", [(0.5, 1e4), (0.25, 1e2), (1.0, 1e4)])
def test_misspecified_pair_exact_coverage_and_kl(alpha, M):
    inst = inst_sel.misspecified_pair(alpha=alpha, M=M)
    p = inst.info["p"]
    pi1, pi2 = inst.candidates
    above = np.array([math.exp(alpha) * 1.001, 2.0, 4.0, 16.0, M])
    above = above[above > math.exp(alpha)]
    cov1 = np.asarray(covsim.coverage(inst.truth, pi1, inst.mu, above))
    np.testing.assert_array_equal(cov1, 0.0)
    grid = np.array([1.0001, 1.5, 2.0, 4.0, M / 2, M, M * 1.01])
    cov2 = np.asarray(covsim.coverage(inst.truth, pi2, inst.mu, grid))
    np.testing.assert_allclose(cov2[grid <= M], p / 2, rtol=1e-12)
    assert cov2[-1] == 0.0
    # closed forms for the whole profile, including N = 1 and N <= e^alpha
    full = np.array([1.0, 1.2, math.exp(alpha), 3.0, M, 2 * M])
    c1, c2 = inst_sel.misspecified_pair_coverage(full, alpha=alpha, M=M)
    np.testing.assert_allclose(np.asarray(covsim.coverage(inst.truth, pi1, inst.mu, full)), c1, atol=1e-14)
    np.testing.assert_allclose(np.asarray(covsim.coverage(inst.truth, pi2, inst.mu, full)), c2, atol=1e-14)
    kl1 = float(covsim.kl(inst.truth, pi1, inst.mu))
    kl2 = float(covsim.kl(inst.truth, pi2, inst.mu))
    assert kl1 == pytest.approx(inst.info["kl_pi1"], rel=1e-12)
    assert kl2 == pytest.approx(inst.info["kl_pi2"], rel=1e-12)
    if (alpha, M) == (0.5, 1e4):
        assert kl2 < kl1
        index, _ = selection.select_min_kl(list(inst.candidates), inst.truth, inst.mu)
        assert int(index) == 1


def _counts(x, y):
    counts = np.zeros((2, 2), dtype=int)
    np.add.at(counts, (np.asarray(x), np.asarray(y)[:, 0]), 1)
    return counts


def test_misspecified_loglik_gap_matches_heldout_logliks(pair):
    x, y = covsim.sample(pair.truth, pair.mu, 3000, key=jax.random.key(4))
    L = np.asarray(selection.heldout_logliks(list(pair.candidates), x, y))
    gap = float(inst_sel.misspecified_loglik_gap(_counts(x, y)))
    assert gap == pytest.approx(L[1].sum() - L[0].sum(), rel=1e-10)
    assert bool(inst_sel.misspecified_mle_prefers_pi2(_counts(x, y))) == (L[1].sum() > L[0].sum())
    # batched counts
    batch = np.stack([_counts(x, y), np.array([[0, 0], [0, 3]])])
    prefers = np.asarray(inst_sel.misspecified_mle_prefers_pi2(batch))
    assert prefers.shape == (2,) and not prefers[1]


def test_tournament_picks_pi1_while_likelihood_picks_pi2(pair):
    n = 20_000  # >> 2/p ≈ 2.4e3
    x, y = covsim.sample(pair.truth, pair.mu, n, key=jax.random.key(7))
    counts = _counts(x, y)
    assert counts[inst_sel.MINUS, 1] > 0
    L = selection.heldout_logliks(list(pair.candidates), x, y)
    index, scores = selection.tournament(L, 4.0)
    assert int(index) == 0
    # closed form of CONSTRUCTIONS §8: score(π₂) = N(−,1)/n, score(π₁) = 0
    np.testing.assert_allclose(np.asarray(scores), [0.0, counts[inst_sel.MINUS, 1] / n])
    assert int(selection.select_min_cross_entropy(L)[0]) == 1
    assert bool(inst_sel.misspecified_mle_prefers_pi2(counts))
    picks = selection.compare_selections(list(pair.candidates), x, y, 4.0, truth=pair.truth, mu=pair.mu)
    assert picks == {"tournament": 0, "min_cross_entropy": 1, "min_kl": 1}


def test_tournament_without_minus_one_samples_falls_back_to_likelihood(pair):
    # No (−, 1) sample: both scores are 0, the tie goes to the higher held-out likelihood.
    x = jnp.asarray([0, 0, 0, 1, 1])
    y = jnp.asarray([[1], [0], [1], [0], [0]])
    L = selection.heldout_logliks(list(pair.candidates), x, y)
    index, scores = selection.tournament(L, 4.0)
    np.testing.assert_array_equal(np.asarray(scores), 0.0)
    assert int(index) == int(np.argmax(np.asarray(L).mean(1)))


# ---------------------------------------------------------------------------
# mode_tradeoff


@pytest.fixture(scope="module")
def mode():
    return inst_sel.mode_tradeoff()


def test_mode_tradeoff_structure(mode):
    info = mode.info
    assert mode.features.shape == (32, 8, 1, 8, 3)
    assert mode.mu.shape == (32,)
    np.testing.assert_allclose(float(mode.mu[:16].sum()), 0.9)
    np.testing.assert_allclose(float(mode.mu.sum()), 1.0)
    pivotal, allowed = np.asarray(info["pivotal"]), np.asarray(info["allowed"])
    np.testing.assert_array_equal(pivotal.sum(1), 2)
    np.testing.assert_array_equal(allowed.sum(-1), np.where(pivotal, 2, 1))
    pivot_tokens = np.where(allowed[pivotal])[1].reshape(-1, 2)
    np.testing.assert_array_equal(np.sort(pivot_tokens % 2, axis=1), [[0, 1]] * len(pivot_tokens))
    again = inst_sel.mode_tradeoff()
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(mode.features))
    other = inst_sel.mode_tradeoff(seed=1)
    assert not np.array_equal(np.asarray(other.info["pivotal"]), pivotal)
    assert isinstance(mode.constraint, Box)
    theta_star = np.asarray(info["theta_star"])
    np.testing.assert_allclose(theta_star, [0.6, 0.0, 80.0])
    assert np.all(theta_star >= np.asarray(mode.constraint.lower))
    assert np.all(theta_star <= np.asarray(mode.constraint.upper))
    assert info["eta"] == pytest.approx(2 / (8 * 16**2))


def test_mode_tradeoff_margins_at_theta_star(mode):
    logits = np.asarray(mode.truth.logits())[:, :, 0]  # (P, H, V)
    pivotal, allowed = np.asarray(mode.info["pivotal"]), np.asarray(mode.info["allowed"])
    target = np.asarray(mode.info["target_y"])
    z = np.asarray(mode.info["class_sign"])
    for x in range(32):
        for h in range(8):
            row = np.sort(logits[x, h])[::-1]
            assert np.argmax(logits[x, h]) == target[x, h]
            if pivotal[x, h]:
                assert row[0] - row[1] == pytest.approx(8.0)  # class margin
                v = target[x, h]
                same_parity = (v % 2) == ((h + 1) % 2)  # positions numbered 1..H
                assert same_parity == (z[x] > 0)  # class 1: parity(v) = parity(h)
            else:
                assert row[0] - row[1] == pytest.approx(9.6)  # forced margin
                assert allowed[x, h, target[x, h]]


def test_mode_tradeoff_kl_and_pass_at_n(mode):
    theta1 = mode.model(mode.info["theta_init"])
    kl1 = float(covsim.kl(mode.truth, theta1, mode.mu))
    assert kl1 > 10.0  # ≈ 11.6: near-uniform start
    assert float(covsim.kl(mode.truth, mode.model(mode.info["theta_star"]), mode.mu)) == 0.0
    # π_D itself succeeds with high probability; the start model almost never
    s_star = np.asarray(bon.success_probability(mode.truth, mode.info["target_y"]))
    assert np.all(s_star > 0.99)
    assert float(bon.pass_at_n_exact(theta1, mode.mu, mode.info["target_y"], 12)) < 1e-3


def test_mode_tradeoff_reference_trajectory_kl_decreases(mode):
    cps = [1, 3, 10, 30]
    thetas = inst_sel.mode_tradeoff_reference_trajectory(mode, cps)
    np.testing.assert_allclose(np.asarray(thetas[0]), np.asarray(mode.info["theta_init"]))
    kl = jax.jit(lambda th: covsim.kl(mode.truth, mode.model(th), mode.mu))
    values = np.array([float(kl(t)) for t in thetas])
    assert np.all(np.diff(values) < 0)
    assert values[-1] == pytest.approx(1.48, abs=0.02)  # CONSTRUCTIONS §11 reference value
