"""Tests of covsim.instances.statistical against closed forms, brute force and Monte Carlo."""

import itertools
import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import optimize, stats  # noqa: E402

import covsim  # noqa: E402
from covsim import bounds  # noqa: E402
from covsim.instances._base import Ball, Box  # noqa: E402
from covsim.instances.statistical import (  # noqa: E402
    bernoulli_expected_coverage,
    bernoulli_expected_kl,
    bernoulli_linear_mle_theta,
    bernoulli_missing_mass,
    bernoulli_missing_mass_prob_zero,
    bernoulli_mle,
    bernoulli_tightness_coverage,
    bernoulli_tightness_kl,
    bernoulli_tightness_pair,
    coarse_tightness,
    coarse_tightness_expected_coverage,
    coarse_tightness_mle_theta,
    fine_tightness,
    fine_tightness_counts,
    fine_tightness_coverage,
    fine_tightness_fit,
    fine_tightness_mle,
    fine_tightness_model,
    horizon_mixture,
    horizon_mixture_expected_coverage,
    horizon_mixture_expected_kl,
    horizon_mixture_unseen_share,
    kl_horizon_coverage,
    kl_horizon_expected_coverage,
    kl_horizon_expected_kl,
    kl_horizon_kl,
    kl_horizon_lower_bound,
    kl_horizon_mle,
    pivotal_tokens,
    pivotal_tokens_positions,
    variance_lower_bound,
)


def sup_norm(features):
    return float(jnp.max(jnp.linalg.norm(features, axis=-1)))


def probs(model):
    return np.exp(np.asarray(covsim.next_token_log_probs(model)))


def in_box(theta, box):
    return bool(jnp.all(theta >= box.lower - 1e-12) and jnp.all(theta <= box.upper + 1e-12))


# ---------------------------------------------------------------------------
# §1 bernoulli_missing_mass


def test_bernoulli_missing_mass_tabular():
    inst = bernoulli_missing_mass(0.1)
    assert inst.truth.logits.shape == (1, 1, 1, 2)
    assert inst.truth.logits.dtype == jnp.float64
    np.testing.assert_allclose(probs(inst.truth).ravel(), [0.9, 0.1], rtol=1e-14)
    assert inst.features is None and inst.candidates is None
    # MLE: 0 -> -inf logit, clipped at 1/2.
    assert np.isneginf(bernoulli_mle(0, 20).logits[0, 0, 0, 1])
    np.testing.assert_allclose(probs(bernoulli_mle(15, 20)).ravel(), [0.5, 0.5])
    np.testing.assert_allclose(probs(bernoulli_mle(3, 20)).ravel(), [0.85, 0.15])
    assert float(covsim.kl(inst.truth, bernoulli_mle(0, 20), inst.mu)) == np.inf
    # vmappable
    logits = jax.vmap(lambda k: bernoulli_mle(k, 20).logits)(jnp.arange(21))
    assert logits.shape == (21, 1, 1, 1, 2)
    np.testing.assert_allclose(bernoulli_missing_mass_prob_zero(0.1, 20), 0.9**20, rtol=1e-13)
    assert float(bernoulli_expected_kl(0.1, 20)) == np.inf
    with pytest.raises(ValueError, match="p_star"):
        bernoulli_missing_mass(0.7)


@pytest.mark.parametrize("linear", [False, True])
def test_bernoulli_expected_coverage_brute_force(linear):
    p, n, B = 0.12, 25, 4.0
    inst = bernoulli_missing_mass(p, linear=linear, B=B)
    Ns = jnp.asarray([1.0, 1.5, 2.0, 3.0, 4.0, 16.0])
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)

    @jax.jit
    @jax.vmap
    def coverage_at(k):
        model = inst.model(bernoulli_linear_mle_theta(k, n, B)) if linear else bernoulli_mle(k, n)
        return covsim.coverage(inst.truth, model, inst.mu, Ns)

    brute = pmf @ np.asarray(coverage_at(jnp.arange(n + 1)))
    got = bernoulli_expected_coverage(p, n, Ns, linear=linear, B=B)
    np.testing.assert_allclose(got, brute, rtol=1e-10, atol=1e-15)
    # N >= 2: p * P(Bin(n, p) <= n p / N); the linear fit keeps p̂ >= σ(−B), so only for N <= p e^B
    for N in (2.0, 3.0, 4.0, 16.0):
        expect = p * stats.binom.cdf(math.floor(n * p / N + 1e-9), n, p)
        if linear and N > p * math.exp(B):
            expect = 0.0
        np.testing.assert_allclose(bernoulli_expected_coverage(p, n, N, linear=linear, B=B), expect, rtol=1e-10)


def test_bernoulli_missing_mass_linear():
    p, B = 0.05, 10.0
    inst = bernoulli_missing_mass(p, linear=True, B=B)
    assert inst.features.shape == (1, 1, 1, 2, 1)
    assert isinstance(inst.constraint, Box) and in_box(inst.info["theta_star"], inst.constraint)
    assert sup_norm(inst.features) == pytest.approx(inst.info["B"])
    np.testing.assert_allclose(probs(inst.truth).ravel(), [1 - p, p], rtol=1e-12)
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-12)
    # KL at k = 0 is finite, ≈ p (B + log p)
    kl0 = float(covsim.kl(inst.truth, inst.model(bernoulli_linear_mle_theta(0, 30, B)), inst.mu))
    q = 1 / (1 + math.exp(B))
    assert kl0 == pytest.approx(p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)), rel=1e-10)
    assert kl0 == pytest.approx(p * (B + math.log(p)), rel=0.2)
    # expected KL: brute-force sum over k with covsim.kl
    n = 30
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)
    kls = jax.jit(jax.vmap(
        lambda k: covsim.kl(inst.truth, inst.model(bernoulli_linear_mle_theta(k, n, B)), inst.mu)
    ))(jnp.arange(n + 1))
    brute = pmf @ np.asarray(kls)
    np.testing.assert_allclose(bernoulli_expected_kl(p, n, linear=True, B=B), brute, rtol=1e-10)
    with pytest.raises(ValueError, match="sigmoid"):
        bernoulli_missing_mass(1e-6, linear=True, B=5.0)


# ---------------------------------------------------------------------------
# §2 bernoulli_tightness_pair


@pytest.mark.parametrize("p,N", [(0.5, 2.0), (0.3, 4.0), (0.01, 1e6), (0.2, 7.3)])
def test_bernoulli_tightness_pair(p, N):
    inst = bernoulli_tightness_pair(p, N)
    (cand,) = inst.candidates
    # tie at ratio exactly N is counted; just above N it is not
    assert float(covsim.coverage(inst.truth, cand, inst.mu, N)) == pytest.approx(p, rel=1e-14)
    assert float(covsim.coverage(inst.truth, cand, inst.mu, N * (1 + 1e-6))) == 0.0
    assert float(bernoulli_tightness_coverage(p, N)) == p
    kl = float(covsim.kl(inst.truth, cand, inst.mu))
    np.testing.assert_allclose(bernoulli_tightness_kl(p, N), kl, rtol=1e-12)
    np.testing.assert_allclose(inst.info["kl"], kl, rtol=1e-12)
    # Prop. D.2 sandwich
    assert kl / (math.log(N) - 0.5 + 1 / (2 * N)) <= p + 1e-12
    assert p <= kl / (math.log(N) - 1 + 1 / N) + 1e-12


def test_bernoulli_tightness_pair_validation():
    with pytest.raises(ValueError, match="N must be >= 2"):
        bernoulli_tightness_pair(0.2, 1.5)


# ---------------------------------------------------------------------------
# §3 kl_horizon_lower_bound


def test_kl_horizon_kappa_values():
    assert float(bounds.kappa(1.0)) == pytest.approx(0.3278, abs=1e-4)
    assert float(bounds.kappa(3.0)) == pytest.approx(0.676, abs=1e-3)


@pytest.mark.parametrize("B", [1.0, 3.0])
def test_kl_horizon_instance(B):
    n, H = 10, 5
    keys = jax.random.split(jax.random.key(0), 16)
    batch = jax.vmap(lambda k: kl_horizon_lower_bound(n, H, B=B, key=k))(keys)
    signs = np.asarray(batch.info["theta_star"]).ravel()
    assert set(signs) == {-1.0, 1.0}
    inst = kl_horizon_lower_bound(n, H, B=B, key=jax.random.key(3))
    assert inst.features.shape == (2, 1, 1, 2, 1)
    assert sup_norm(inst.features) == pytest.approx(B)
    np.testing.assert_allclose(inst.mu, [1 - 1 / (2 * n), 1 / (2 * n)])
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-12)
    # KL on the unseen event (θ̂ = 0) is exactly κ(B) H / (2n)
    kl0 = covsim.kl(inst.truth, inst.model(jnp.zeros(1)), inst.mu)
    np.testing.assert_allclose(kl0, float(bounds.kappa(B)) * H / (2 * n), rtol=1e-12)
    np.testing.assert_allclose(inst.info["kl_when_unseen"], kl0, rtol=1e-12)
    # closed-form KL and coverage against covsim at other θ̂
    Ns = jnp.asarray([1.5, 2.0, 16.0, 256.0])
    theta_hats = jnp.asarray([-1.0, -0.2, 0.0, 0.4, 1.0])

    @jax.jit
    @jax.vmap
    def compare(theta_hat):
        model = inst.model(theta_hat[None])
        ts = inst.info["theta_star"]
        return (kl_horizon_kl(ts, theta_hat, n, H, B=B), covsim.kl(inst.truth, model, inst.mu),
                kl_horizon_coverage(ts, theta_hat, n, H, Ns, B=B),
                covsim.coverage(inst.truth, model, inst.mu, Ns))

    kl_closed, kl_ref, cov_closed, cov_ref = compare(theta_hats)
    np.testing.assert_allclose(kl_closed, kl_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov_closed, cov_ref, rtol=1e-12, atol=1e-15)
    assert np.all(np.asarray(cov_ref) <= 1 / (2 * n) + 1e-15)
    assert float(cov_ref.max()) > 0  # the comparison is not vacuous


def test_kl_horizon_mle_matches_scipy():
    n, H, B = 8, 3, 1.0
    inst = kl_horizon_lower_bound(n, H, B=B, key=jax.random.key(1))
    # the instance's law on prompt 1: P(token 1) = σ(2Bθ)
    table = probs(inst.model(jnp.asarray([0.3])))
    assert table[1, 0, 0, 1] == pytest.approx(1 / (1 + math.exp(-2 * B * 0.3)), rel=1e-12)
    np.testing.assert_allclose(table[0], 0.5)
    rng = np.random.default_rng(0)
    x = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    for _ in range(6):
        y = rng.integers(2, size=(n, H))
        ones = y[x == 1].sum()
        total = (x == 1).sum() * H

        def nll(t):
            return -(ones * math.log(1 / (1 + math.exp(-2 * B * t)))
                     + (total - ones) * math.log(1 / (1 + math.exp(2 * B * t))))

        ref = optimize.minimize_scalar(nll, bounds=(-1, 1), method="bounded", options={"xatol": 1e-10}).x
        assert float(kl_horizon_mle(x, y, B=B)[0]) == pytest.approx(ref, abs=1e-5)
    assert float(kl_horizon_mle(np.zeros(n, int), np.ones((n, H), int), B=B)[0]) == 0.0
    assert float(kl_horizon_mle(np.ones(n, int), np.ones((n, H), int), B=B)[0]) == 1.0
    assert float(kl_horizon_mle(np.ones(n, int), np.zeros((n, H), int), B=B)[0]) == -1.0


def test_kl_horizon_expectations_monte_carlo():
    n, H, B, S = 12, 4, 1.0, 2000
    Ns = jnp.asarray([2.0, 16.0])
    base = kl_horizon_lower_bound(n, H, B=B, key=jax.random.key(0))

    def one(key):
        k_truth, k_data = jax.random.split(key)
        inst = kl_horizon_lower_bound(n, H, B=B, key=k_truth)
        x, y = covsim.sample(inst.truth, inst.mu, n, key=k_data)
        theta_hat = kl_horizon_mle(x, y, B=B)
        ts = inst.info["theta_star"]
        return kl_horizon_kl(ts, theta_hat, n, H, B=B), kl_horizon_coverage(ts, theta_hat, n, H, Ns, B=B)

    kls, covs = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), S))
    expect_kl = kl_horizon_expected_kl(n, H, B=B)
    assert abs(float(kls.mean()) - float(expect_kl)) < 5 * float(kls.std()) / math.sqrt(S)
    expect_cov = kl_horizon_expected_coverage(n, H, Ns, B=B)
    assert expect_cov.shape == (2,)
    se = np.asarray(covs.std(0)) / math.sqrt(S)
    assert np.all(np.abs(np.asarray(covs.mean(0)) - np.asarray(expect_cov)) < 5 * se + 1e-12)
    assert np.all(np.asarray(expect_cov) <= 1 / (2 * n))
    # lower bound from the unseen event alone
    assert float(expect_kl) >= base.info["prob_unseen"] * base.info["kl_when_unseen"]


@pytest.mark.parametrize("B", [1.0, 3.0])
def test_kl_horizon_expectations_enumeration(B):
    """All 2^n · 2^(nH) datasets of a tiny instance (θ⋆ = +1): exact expectations."""
    n, H = 3, 2
    s = 1 / (1 + math.exp(-2 * B))
    xs = np.array(list(itertools.product((0, 1), repeat=n)))
    ys = np.array(list(itertools.product((0, 1), repeat=n * H))).reshape(-1, n, H)
    X = np.repeat(xs, len(ys), axis=0)
    Y = np.tile(ys, (len(xs), 1, 1))
    mu1 = 1 / (2 * n)
    ones = Y.sum(-1)
    p_y = np.where(X == 1, s**ones * (1 - s) ** (H - ones), 0.5**H).prod(-1)
    weight = np.where(X == 1, mu1, 1 - mu1).prod(-1) * p_y
    assert weight.sum() == pytest.approx(1.0)
    Ns = jnp.asarray([2.0, 8.0])
    theta_star = jnp.ones(1)

    @jax.jit
    @jax.vmap
    def metrics(x, y):
        theta_hat = kl_horizon_mle(x, y, B=B)
        return (kl_horizon_kl(theta_star, theta_hat, n, H, B=B),
                kl_horizon_coverage(theta_star, theta_hat, n, H, Ns, B=B))

    kls, covs = metrics(jnp.asarray(X), jnp.asarray(Y))
    np.testing.assert_allclose(kl_horizon_expected_kl(n, H, B=B), weight @ np.asarray(kls), rtol=1e-10)
    np.testing.assert_allclose(kl_horizon_expected_coverage(n, H, Ns, B=B), weight @ np.asarray(covs), rtol=1e-10)


# ---------------------------------------------------------------------------
# §4 coarse_tightness


def test_coarse_tightness_instance():
    n, d = 20, 4
    inst = coarse_tightness(n, d)
    assert inst.info["B"] == pytest.approx(math.log(5 * n) + 1)
    assert inst.features.shape == (1, 1, 1, d, d)
    assert sup_norm(inst.features) == pytest.approx(inst.info["B"])
    assert in_box(inst.info["theta_star"], inst.constraint)
    pi = probs(inst.truth).ravel()
    np.testing.assert_allclose(pi[0], 4 * n / (d - 1 + 4 * n), rtol=1e-12)
    np.testing.assert_allclose(pi[1:], 1 / (d - 1 + 4 * n), rtol=1e-12)
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-12)
    with pytest.raises(ValueError, match="n >= d"):
        coarse_tightness(3, 4)
    with pytest.raises(ValueError, match="log\\(5n\\)"):
        coarse_tightness(20, 4, B=2.0)


def test_coarse_tightness_mle_and_coverage_flat_in_N():
    n, d = 12, 4
    inst = coarse_tightness(n, d)
    B = inst.info["B"]
    counts = np.array([9.0, 2.0, 1.0, 0.0])
    theta, ok = coarse_tightness_mle_theta(counts, B)
    assert bool(ok)

    def nll(t):
        logits = B * t
        return -(counts @ logits - n * np.log(np.sum(np.exp(logits))))

    ref = optimize.minimize(nll, np.zeros(d), bounds=[(-1, 1)] * d, method="L-BFGS-B",
                            options={"ftol": 1e-15, "gtol": 1e-12}).x
    assert nll(np.asarray(theta)) <= nll(ref) + 1e-9
    np.testing.assert_allclose(theta[:3], ref[:3], atol=1e-4)
    # Cov_N = π_D(unseen label) for every 2 <= N <= e^B
    unseen = inst.info["pi_rest"]
    Ns = jnp.asarray([2.0, 8.0, math.exp(B / 2), math.exp(B)])
    cov = covsim.coverage(inst.truth, inst.model(theta), inst.mu, Ns)
    np.testing.assert_allclose(cov, unseen, rtol=1e-12)
    assert float(covsim.coverage(inst.truth, inst.model(theta), inst.mu, math.exp(2 * B) * 10)) == 0.0


def test_coarse_tightness_expected_coverage_monte_carlo():
    n, d, S = 30, 8, 20000
    inst = coarse_tightness(n, d)
    rng = np.random.default_rng(3)
    pi = probs(inst.truth).ravel()
    counts = rng.multinomial(n, pi, size=S)
    unseen_mass = ((counts == 0) * pi).sum(axis=1)
    expect = float(coarse_tightness_expected_coverage(n, d))
    # label 0 never unseen in practice; expectation over labels 2..d
    assert abs(unseen_mass.mean() - expect) < 5 * unseen_mass.std() / math.sqrt(S)
    assert inst.info["expected_coverage"] == pytest.approx(expect)


# ---------------------------------------------------------------------------
# §5 fine_tightness


def log_likelihoods(tables, x, y):
    """Log-likelihood of every candidate from its next-token table ``(P, 2)`` (H = 1), in NumPy."""
    x, y = np.asarray(x), np.asarray(y)[:, 0]
    return np.array([table[x, y].sum() for table in tables])


@pytest.mark.parametrize("d", [2, 3])
def test_fine_tightness_mle_matches_brute_force(d):
    n, N = 6 * d, 4.0
    # a larger ε so that both branches (π̂ = π_θ and π̂ = π_D) occur among few datasets
    inst = fine_tightness(n, d, N, c_eps=1.2)
    assert len(inst.candidates) == 2**d + 1
    eps = inst.info["epsilon"]
    num = 40
    draw = jax.jit(jax.vmap(lambda k: covsim.sample(inst.truth, inst.mu, n, key=k)))
    xs, ys = draw(jax.random.split(jax.random.key(d), num))

    @jax.jit
    @jax.vmap
    def closed_form(x, y):
        model, signs, gain = fine_tightness_mle(fine_tightness_counts(x, y, d), eps, N)
        ll_model = jnp.sum(jax.vmap(lambda xi, yi: covsim.log_prob(model, xi, yi))(x, y))
        fitted = fine_tightness_fit(inst, x, y)
        return ll_model, gain, jnp.all(fitted.logits == model.logits)

    ll_model, gain, same = closed_form(xs, ys)
    assert bool(jnp.all(same))
    tables = [np.asarray(covsim.next_token_log_probs(c))[:, 0, 0, :] for c in inst.candidates]
    picked_theta = 0
    for i in range(num):
        lls = log_likelihoods(tables, xs[i], ys[i])
        best = lls.max()
        assert float(ll_model[i]) == pytest.approx(best, abs=1e-9)
        # G = max over θ of L(π_θ) − L(π_D)
        np.testing.assert_allclose(float(gain[i]), lls[1:].max() - lls[0], atol=1e-9)
        chose_truth = float(gain[i]) <= 0
        assert chose_truth == bool(lls[0] >= best)
        picked_theta += not chose_truth
    assert 0 < picked_theta < num  # both branches exercised


def test_fine_tightness_coverage_and_shapes():
    n, d, N = 40, 3, 16.0
    inst = fine_tightness(n, d, N)
    eps, p = inst.info["epsilon"], inst.info["p"]
    assert eps == pytest.approx(0.5 * math.sqrt(d / n))
    assert p == pytest.approx(d / (8 * n * math.log(N)))
    np.testing.assert_allclose(inst.mu, [p] + [(1 - p) / d] * d)
    assert float(jnp.sum(inst.mu)) == pytest.approx(1.0)
    for cand in inst.candidates[1:]:
        # ratio exactly N at prompt 0: the tie is counted
        assert float(covsim.coverage(inst.truth, cand, inst.mu, N)) == pytest.approx(p, rel=1e-12)
        assert float(covsim.coverage(inst.truth, cand, inst.mu, N * (1 + 1e-6))) == 0.0
    assert float(covsim.coverage(inst.truth, inst.candidates[0], inst.mu, N)) == 0.0
    assert float(fine_tightness_coverage(1.0, p)) == p and float(fine_tightness_coverage(0.0, p)) == 0.0
    table = probs(fine_tightness_model(jnp.asarray([1.0, -1.0, 1.0]), eps, N))[:, 0, 0, 1]
    np.testing.assert_allclose(table, [1 / N, (1 + eps) / 2, (1 - eps) / 2, (1 + eps) / 2], rtol=1e-13)
    # G = 0 (no data) resolves to π_D
    model, _, gain = fine_tightness_mle(jnp.zeros((d + 1, 2)), eps, N)
    assert float(gain) == 0.0
    np.testing.assert_array_equal(np.asarray(model.logits), np.asarray(inst.truth.logits))
    assert fine_tightness(200, 8, 4.0).candidates is None
    with pytest.raises(ValueError, match="n >= 2d"):
        fine_tightness(5, 3, 4.0)


# ---------------------------------------------------------------------------
# §6 variance_lower_bound


def test_variance_lower_bound_instance():
    n, H, N, B = 200, 16, 16.0, 8.0
    keys = jax.random.split(jax.random.key(0), 4)
    batch = jax.vmap(lambda k: variance_lower_bound(n, H, N, B=B, key=k))(keys)
    assert batch.info["theta_star"].shape == (4, H)
    inst = variance_lower_bound(n, H, N, B=B, key=keys[0])
    assert isinstance(inst.constraint, Ball) and inst.constraint.radius == 1.0
    assert inst.features.shape == (2, H, 1, 2, H)
    assert sup_norm(inst.features) == pytest.approx(B)
    eps, p = inst.info["epsilon"], inst.info["p"]
    theta = np.asarray(inst.info["theta_star"])
    np.testing.assert_allclose(np.abs(theta), eps)
    assert np.linalg.norm(theta) <= 1 + 1e-12 and B * eps <= 1 + 1e-12
    assert p == pytest.approx(min(1.0, H / (4 * n * math.log(N))))
    s = 1 / (1 + math.exp(-B * eps))
    assert inst.info["sigma2"] == pytest.approx(p * H * B * B * s * (1 - s), rel=1e-14)
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-12)
    # token h on prompt + is Ber(σ(Bθ_h)); prompt − uniform
    table = probs(inst.truth)
    np.testing.assert_allclose(table[0, :, 0, 1], 1 / (1 + np.exp(-B * theta)), rtol=1e-12)
    np.testing.assert_allclose(table[1], 0.5)


def test_variance_lower_bound_side_condition():
    with pytest.raises(ValueError, match="side condition"):
        variance_lower_bound(100, 8, 16.0, key=jax.random.key(0))  # 4 log 16 = 11.1 > 8
    with pytest.raises(ValueError, match="side condition"):
        variance_lower_bound(100, 512, 1e8, B=8.0, key=jax.random.key(0))  # 4 log N > B^2 = 64
    with pytest.raises(ValueError, match="key"):
        variance_lower_bound(100, 64, 16.0, key=None)


# ---------------------------------------------------------------------------
# §9 pivotal_tokens


def test_pivotal_positions():
    assert pivotal_tokens_positions(512, 1) == (511,)
    assert pivotal_tokens_positions(10, 3) == (3, 6, 9)  # 1-based {4, 7, 10}
    assert pivotal_tokens_positions(8, 8) == tuple(range(8))


def test_pivotal_tokens_laws_and_sigma2():
    H, k, V = 8, 3, 4
    inst = pivotal_tokens(H, k, V)
    B, a = inst.info["B"], inst.info["a"]
    assert inst.features.shape == (1, H, V + 1, V, 1 + V)
    assert sup_norm(inst.features) == pytest.approx(B)
    assert float(jnp.linalg.norm(inst.info["theta_star"])) <= 1.0
    table = probs(inst.truth)[0]  # (H, V+1, V)
    piv = inst.info["pivotal_positions"]
    q = (V - 1) / (math.exp(B * a) + V - 1)
    assert inst.info["q"] == pytest.approx(q, rel=1e-14)
    for h in range(H):
        for u in range(V + 1):
            if h in piv:
                np.testing.assert_allclose(table[h, u], inst.info["pivotal_law"], rtol=1e-12)
            else:
                rule = ((0 if u == V else u) + 1) % V
                assert 1 - table[h, u, rule] == pytest.approx(q, rel=1e-8)
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-10)


def test_pivotal_tokens_zipf_v32():
    inst = pivotal_tokens(4, 1, 32)
    law = np.asarray(inst.info["pivotal_law"])
    table = probs(inst.truth)[0]
    np.testing.assert_allclose(table[3, 0], law, rtol=1e-12)
    assert law.max() == pytest.approx(0.32, abs=0.005) and law[0] == law.max()
    weights = np.arange(1, 33) ** -1.2
    np.testing.assert_allclose(law, weights / weights.sum(), rtol=1e-12)
    q_table = 1 - table[0, 32, 1]  # BOS behaves as token 0 -> rule token 1
    assert q_table == pytest.approx(31 / (math.exp(16 * 0.9) + 31), rel=1e-6)
    assert q_table <= 1.75e-5
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-10)


# ---------------------------------------------------------------------------
# §10 horizon_mixture


def test_horizon_mixture_structure():
    H, M = 12, 6
    inst = horizon_mixture(4 * M, H, M=M)
    P, V = M + 16, 8
    assert inst.features.shape == (P, H, 1, V, 1 + M)
    assert float(jnp.sum(inst.mu)) == pytest.approx(1.0, abs=1e-12)
    cls = np.asarray(inst.info["prompt_class"])
    mu = np.asarray(inst.mu)
    for c, mass in zip((1, 2, 3), (0.94, 0.05, 0.01)):
        assert mu[cls == c].sum() == pytest.approx(mass, rel=1e-12)
        assert np.ptp(mu[cls == c]) < 1e-15
    piv = np.asarray(inst.info["pivotal"])
    assert list(piv.sum(1)) == [0] * 8 + [H // 2] * M + [4] * 8
    allowed = np.asarray(inst.info["allowed"])
    np.testing.assert_array_equal(allowed.sum(-1), np.where(piv, 2, 1))
    even_odd = allowed[piv]
    assert np.all(even_odd[:, 0::2].sum(-1) == 1) and np.all(even_odd[:, 1::2].sum(-1) == 1)
    assert in_box(inst.info["theta_star"], inst.constraint)
    assert sup_norm(inst.features) == pytest.approx(inst.info["B"])
    np.testing.assert_allclose(covsim.inherent_variance(inst.truth, inst.mu), inst.info["sigma2"], rtol=1e-9)
    # deterministic given seed, different across seeds
    again = horizon_mixture(4 * M, H, M=M)
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(inst.features))
    other = horizon_mixture(4 * M, H, M=M, seed=1)
    assert not np.array_equal(np.asarray(other.info["allowed"]), allowed)
    # truth: class-2 pivotal steps take parity(h) xor b_j with margin 2 B_m
    table = probs(inst.truth)[:, :, 0]
    bits = np.asarray(inst.info["hidden_bits"])
    for j in range(M):
        x = inst.info["first_hard_prompt"] + j
        for h in np.flatnonzero(piv[x]):
            favoured = [v for v in range(V) if allowed[x, h, v] and (v % 2) == (((h + 1) % 2) ^ bits[j])]
            assert len(favoured) == 1
            assert table[x, h, favoured[0]] == pytest.approx(1 / (1 + math.exp(-16)), rel=1e-6)


def test_horizon_mixture_unseen_hard_prompt_kl():
    H, M = 16, 4
    inst = horizon_mixture(10, H, M=M)
    x = inst.info["first_hard_prompt"] + 2
    theta_hat = np.asarray(inst.info["theta_star"]).copy()
    theta_hat[1 + 2] = 0.0  # that id never seen: no gradient reaches it
    one_prompt = jnp.zeros(inst.mu.shape[0]).at[x].set(1.0)
    kl = float(covsim.kl(inst.truth, inst.model(jnp.asarray(theta_hat)), one_prompt))
    assert kl == pytest.approx((H // 2) * math.log(2), rel=1e-5)
    # KL of every other prompt is zero
    rest = jnp.asarray(inst.mu).at[x].set(0.0)
    rest = rest / rest.sum()
    assert float(covsim.kl(inst.truth, inst.model(jnp.asarray(theta_hat)), rest)) < 1e-12
    # predictions
    u = float(horizon_mixture_unseen_share(10, M))
    assert u == pytest.approx((1 - 0.05 / M) ** 10)
    assert float(horizon_mixture_expected_kl(10, H, M)) == pytest.approx(0.05 * u * (H // 2) * math.log(2))
    assert float(horizon_mixture_expected_coverage(10, H, 8.0, M)) == pytest.approx(0.05 * u)
    assert float(horizon_mixture_expected_coverage(10, 6, 16.0, M)) == 0.0


def test_horizon_mixture_strict_same_logits_inside_unit_ball():
    H, M = 8, 4
    loose = horizon_mixture(10, H, M=M)
    strict = horizon_mixture(10, H, M=M, strict=True)
    np.testing.assert_allclose(strict.truth.logits(), loose.truth.logits(), rtol=1e-12, atol=1e-12)
    box = strict.constraint
    assert float(jnp.linalg.norm(box.upper)) == pytest.approx(1.0)
    assert in_box(strict.info["theta_star"], box)
    assert strict.info["B_v"] == pytest.approx(16 / 0.6)
