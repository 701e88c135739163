"""sgd_horizon_lower_bound and the multinomial coverage sum (CONSTRUCTIONS.md §7)."""

import itertools
import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import covsim  # noqa: E402
from covsim.fit import sgd  # noqa: E402
from covsim.instances.optimization import multinomial_coverage, sgd_horizon_lower_bound  # noqa: E402

T, H, N = 100, 16, 4.0


batch_log_prob = jax.jit(jax.vmap(covsim.log_prob, in_axes=(None, 0, 0)))


def iid_log_probs(inst, theta):
    """Per-prompt token law (P, V): features depend on (x, v) only."""
    return jax.nn.log_softmax(inst.features[:, 0, 0] @ jnp.asarray(theta), axis=-1)


def step_directions(alpha):
    s = math.sqrt(1 - alpha**2)
    return np.array([alpha, -s]), np.array([alpha, s])  # w(−1), w(+1)


def test_case_selection_and_parameters():
    inst = sgd_horizon_lower_bound(T, H, N, 0.01)
    b = 2 * math.log(4 * T * H) + 2
    info = inst.info
    assert info["case"] == "A" and info["b"] == pytest.approx(b) and info["B_bar"] == pytest.approx(b * b)
    assert 0.01 >= 8 / (H * info["B_bar"])
    eta_bar = 0.01 * H * b * b
    assert info["alpha"] == pytest.approx(eta_bar / (2 * (eta_bar - 1)))
    assert info["requirements_met"]
    B = float(jnp.max(jnp.linalg.norm(inst.features, axis=-1)))
    assert B == pytest.approx(info["B_bar"])
    small = 0.5 * 8 / (H * info["B_bar"])
    inst_b = sgd_horizon_lower_bound(T, H, N, small)
    assert inst_b.info["case"] == "B"
    mu_plus = min(1.0, H / (512 * math.e * T * math.log(N)))
    assert inst_b.info["mu_plus"] == pytest.approx(mu_plus)
    np.testing.assert_allclose(inst_b.mu, [0.0, mu_plus, 1 - mu_plus])
    r = math.log(H / (4 * math.log(N))) / b
    assert inst_b.info["r"] == pytest.approx(r)
    np.testing.assert_allclose(inst_b.info["theta_init"], [r - 1 / b, 0.25])
    for i in (inst, inst_b):
        assert float(jnp.linalg.norm(i.info["theta_star"])) <= 1 + 1e-12
        assert float(jnp.linalg.norm(i.info["theta_init"])) <= 1 + 1e-12
        sigma2 = float(covsim.inherent_variance(i.truth, i.mu))
        assert sigma2 == pytest.approx(i.info["sigma2_star"], rel=1e-6, abs=1e-12)
        assert sigma2 <= 1.0
    with pytest.raises(ValueError, match="H >= 4 log N"):
        sgd_horizon_lower_bound(T, 4, 16.0, small)
    with pytest.raises(ValueError, match="case"):
        sgd_horizon_lower_bound(T, H, N, 1e-6, case="A")


def test_case_a_one_step_flips_direction():
    inst = sgd_horizon_lower_bound(T, H, N, 0.01)
    w_minus, w_plus = step_directions(inst.info["alpha"])
    np.testing.assert_allclose(inst.info["theta_init"], w_plus)
    zeros = jnp.ones((1, H), dtype=int)  # token index 1 is the value 0
    model = inst.model(inst.info["theta_init"])
    result = sgd.train(model, inst.truth, inst.mu, sgd.SGDConfig("vanilla", 0.01), num_steps=2,
                       key=jax.random.key(0), constraint=inst.constraint, dataset=(jnp.zeros(1, int), zeros),
                       checkpoints=[1, 2, 3])
    np.testing.assert_allclose(result.checkpoint_thetas[1], w_minus, atol=1e-6)
    np.testing.assert_allclose(result.checkpoint_thetas[2], w_plus, atol=1e-6)
    # coverage ≈ 1 at both iterates (exact multinomial sum)
    lp = iid_log_probs(inst, inst.info["theta_star"])
    for theta in result.checkpoint_thetas:
        cov = multinomial_coverage(lp, iid_log_probs(inst, theta), inst.mu, H, N)
        assert float(cov) >= inst.info["lower_bound"] - 1e-12
        assert float(cov) > 0.99


def test_case_a_online_sgd_oscillates():
    inst = sgd_horizon_lower_bound(T, H, N, 0.01)
    w_minus, w_plus = step_directions(inst.info["alpha"])
    model = inst.model(inst.info["theta_init"])
    result = sgd.train(model, inst.truth, inst.mu, sgd.SGDConfig("vanilla", 0.01), num_steps=20,
                       key=jax.random.key(4), constraint=inst.constraint, checkpoints=list(range(1, 22)))
    thetas = np.asarray(result.checkpoint_thetas)
    assert np.all(np.isfinite(thetas))
    np.testing.assert_allclose(thetas[0::2], np.broadcast_to(w_plus, thetas[0::2].shape), atol=1e-6)
    np.testing.assert_allclose(thetas[1::2], np.broadcast_to(w_minus, thetas[1::2].shape), atol=1e-6)


def test_huge_features_stay_finite():
    for eta in (0.01, 1e-6):
        inst = sgd_horizon_lower_bound(1000, 64, 16.0, eta)
        model = inst.model(inst.info["theta_init"])
        x, y = covsim.sample(inst.truth, inst.mu, 64, key=jax.random.key(1))
        for m in (model, inst.truth):
            lp = batch_log_prob(m, x, y)
            assert np.all(np.isfinite(lp))
        # adversarial responses under the learner (all tokens −1) are finite too
        lp = batch_log_prob(model, jnp.arange(3), jnp.zeros((3, 64), int))
        assert np.all(np.isfinite(lp))
        kl = covsim.kl(inst.truth, model, inst.mu)
        assert np.isfinite(float(kl)) and float(kl) >= 0
        cov = multinomial_coverage(iid_log_probs(inst, inst.info["theta_star"]),
                                   iid_log_probs(inst, inst.info["theta_init"]), inst.mu, 64, [2.0, 16.0])
        assert np.all(np.isfinite(cov)) and np.all((cov >= 0) & (cov <= 1))
        assert float(cov[1]) >= inst.info["lower_bound"] * (1 - 1e-9)


def test_multinomial_coverage_matches_enumeration(rng):
    H_small = 5
    for eta in (0.2,):
        inst = sgd_horizon_lower_bound(T, H_small, 2.0, eta, b=3.0)
        theta = inst.info["theta_init"] if eta > 0.1 else jnp.array([0.1, 0.3])
        model = inst.model(theta)
        levels = jnp.array([1.0, 2.0, 7.5, 40.0])
        exact = covsim.coverage(inst.truth, model, inst.mu, levels)
        got = multinomial_coverage(iid_log_probs(inst, inst.info["theta_star"]), iid_log_probs(inst, theta),
                                   inst.mu, H_small, levels)
        np.testing.assert_allclose(got, exact, atol=1e-10)
    # random i.i.d. laws with V = 4 and zeros, mu mixed
    lp = jnp.log(jnp.asarray(rng.dirichlet(np.ones(4), size=2)))
    lq = jnp.asarray(np.log(rng.dirichlet(np.ones(4), size=2)))
    lq = lq.at[0, 1].set(-jnp.inf)
    mu = jnp.array([0.3, 0.7])
    levels = jnp.array([1.5, 4.0, 30.0])
    lq = jax.nn.log_softmax(lq, axis=-1)
    exact = np.zeros(3)
    for x in range(2):  # brute force over all 4^4 responses
        for y in itertools.product(range(4), repeat=4):
            log_ratio = sum(float(lp[x, v] - lq[x, v]) for v in y)
            weight = float(mu[x]) * math.exp(sum(float(lp[x, v]) for v in y))
            exact += weight * (log_ratio >= np.log(np.asarray(levels)) - 1e-9)
    got = multinomial_coverage(lp, lq, mu, 4, levels)
    np.testing.assert_allclose(got, exact, atol=1e-10)


def test_case_b_coverage_lower_bound_at_init():
    inst = sgd_horizon_lower_bound(T, H, N, 1e-6)
    lp = iid_log_probs(inst, inst.info["theta_star"])
    cov = multinomial_coverage(lp, iid_log_probs(inst, inst.info["theta_init"]), inst.mu, H, N)
    assert float(cov) >= inst.info["lower_bound"]
    # and at θ⋆ itself coverage is 0 (the bound is about the iterates, not the class)
    assert float(multinomial_coverage(lp, lp, inst.mu, H, N)) == 0.0
