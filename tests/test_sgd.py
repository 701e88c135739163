"""SGD update rules and the compiled training loop (covsim.fit.sgd; THEORY.md §6)."""

import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import covsim  # noqa: E402
from covsim.fit import sgd  # noqa: E402
from covsim.instances._base import Ball, Box  # noqa: E402

P, H, V, D = 2, 3, 3, 2


def tiny_class(seed=0, P=P, H=H, V=V, d=D, scale=1.0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(P, H, V + 1, V, d)) * scale)
    theta_star = jnp.asarray(rng.normal(size=d))
    theta_star = 0.6 * theta_star / jnp.linalg.norm(theta_star)
    return features, theta_star


@jax.jit
def autodiff_score(features, theta, x, y):
    return jax.grad(lambda th: covsim.log_prob(covsim.LinearModel(features, th), x, y))(theta)


@jax.jit
def token_jacobian(features, theta, x, y):
    """(H, d): ∇_θ log π_θ(y_h | x, y_<h) by autodiff."""
    return jax.jacobian(lambda th: covsim.token_log_probs(covsim.LinearModel(features, th), x, y))(theta)


def run_one_step(features, truth, config, theta0, x, y, constraint):
    """One step on a fixed batch (dataset mode, T = 1); returns θ_2."""
    model = covsim.LinearModel(features, theta0)
    result = sgd.train(model, truth, jnp.full(P, 1.0 / P), config, num_steps=1, key=jax.random.key(0),
                       constraint=constraint, dataset=(x, y), checkpoints=[1, 2])
    np.testing.assert_allclose(result.checkpoint_thetas[0], theta0, atol=0)
    np.testing.assert_allclose(result.checkpoint_thetas[1], result.theta, atol=0)
    return result.theta


@pytest.fixture
def setup():
    features, theta_star = tiny_class()
    truth = covsim.LinearModel(features, theta_star)
    x = jnp.array([0, 1])
    y = jnp.array([[0, 2, 1], [1, 1, 0]])
    return features, truth, x, y


def test_sequence_score_matches_autodiff(setup):
    features, truth, x, y = setup
    theta = jnp.array([0.3, -0.7])
    for i in range(2):
        np.testing.assert_allclose(sgd.sequence_score(features, theta, x[i], y[i]),
                                   autodiff_score(features, theta, x[i], y[i]), rtol=1e-12, atol=1e-12)


def test_vanilla_update_is_projected_ascent(setup):
    features, truth, x, y = setup
    theta0 = jnp.array([0.5, 0.8])
    eta = 0.7
    got = run_one_step(features, truth, sgd.SGDConfig("vanilla", eta), theta0, x[:1], y[:1], Ball(1.0))
    raw = theta0 + eta * autodiff_score(features, theta0, x[0], y[0])
    assert jnp.linalg.norm(raw) > 1.0  # the projection is active
    np.testing.assert_allclose(got, raw / jnp.linalg.norm(raw), rtol=1e-12)
    # box: clipping
    box = Box(jnp.array([-0.1, -0.1]), jnp.array([0.6, 0.6]))
    got_box = run_one_step(features, truth, sgd.SGDConfig("vanilla", eta), theta0 * 0.5, x[:1], y[:1], box)
    raw = theta0 * 0.5 + eta * autodiff_score(features, theta0 * 0.5, x[0], y[0])
    np.testing.assert_allclose(got_box, jnp.clip(raw, -0.1, 0.6), rtol=1e-12)


def test_normalized_update_formula(setup):
    features, truth, x, y = setup
    theta0 = jnp.array([0.1, -0.2])
    eta, lam = 0.3, 0.5
    config = sgd.SGDConfig("normalized", eta, lam=lam, batch_size=2)
    got = run_one_step(features, truth, config, theta0, x, y, None)
    g = 0.5 * (autodiff_score(features, theta0, x[0], y[0]) + autodiff_score(features, theta0, x[1], y[1]))
    np.testing.assert_allclose(got, theta0 + eta * g / (lam + jnp.linalg.norm(g)), rtol=1e-12)


def test_normalize_by_norm_pytree():
    tree = {"a": jnp.array([3.0]), "b": jnp.array([4.0, 0.0])}
    out, _ = sgd.normalize_by_norm(1.0).update(tree, optax.EmptyState())
    np.testing.assert_allclose(out["a"], [0.5])
    np.testing.assert_allclose(out["b"], [4.0 / 6.0, 0.0])


def test_sign_and_adam_steps(setup):
    features, truth, x, y = setup
    theta0 = jnp.array([0.1, -0.2])
    g = autodiff_score(features, theta0, x[0], y[0])
    got = run_one_step(features, truth, sgd.SGDConfig("sign", 0.05), theta0, x[:1], y[:1], None)
    np.testing.assert_allclose(got, theta0 + 0.05 * jnp.sign(g), rtol=1e-12)
    got = run_one_step(features, truth, sgd.SGDConfig("adam", 0.05), theta0, x[:1], y[:1], None)
    # Adam's first step: m̂ = g, v̂ = g², update = η g/(|g| + eps) (ascent)
    np.testing.assert_allclose(got, theta0 + 0.05 * g / (jnp.abs(g) + 1e-8), rtol=1e-10)


_weights = jax.jit(sgd.truncation_weights)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=12), st.floats(0.0, 10.0))
def test_truncation_weights_identity(eps, log_n):
    eps = jnp.asarray(eps + [0.0] * (12 - len(eps)))  # zero padding leaves the identity unchanged
    alpha = _weights(eps, log_n)
    assert jnp.all((alpha >= 0) & (alpha <= 1))
    np.testing.assert_allclose(jnp.sum(alpha * eps), min(log_n, float(jnp.sum(eps))), atol=1e-9)


def test_truncation_weights_cases():
    alpha = sgd.truncation_weights(jnp.array([0.5, 0.5, 1.0, 2.0, 0.0]), 1.5)
    np.testing.assert_allclose(alpha, [1.0, 1.0, 0.5, 0.0, 0.0])
    alpha = sgd.truncation_weights(jnp.array([0.2, jnp.inf, 0.3]), 1.0)
    np.testing.assert_allclose(alpha, [1.0, 0.0, 0.0])
    assert not jnp.any(jnp.isnan(alpha))


def test_truncated_score_matches_reference(setup):
    features, truth, x, y = setup
    theta = jnp.array([-0.4, 0.2])
    model = covsim.LinearModel(features, theta)
    eps_table = covsim.per_step_kl(truth, model)  # (P, H, V+1)
    log_n = 0.05
    for i in range(2):
        prev = [V] + list(np.asarray(y[i, :-1]))
        eps = jnp.array([eps_table[x[i], h, prev[h]] for h in range(H)])
        alpha = sgd.truncation_weights(eps, log_n)
        assert 0 < float(jnp.sum(alpha)) < H  # truncation is active
        token_grads = token_jacobian(features, theta, x[i], y[i])
        table = covsim.next_token_log_probs(truth)
        got = sgd.truncated_score(features, table, theta, x[i], y[i], log_n)
        np.testing.assert_allclose(got, alpha @ token_grads, rtol=1e-10, atol=1e-12)


def test_token_level_equals_python_loop(setup):
    features, truth, x, y = setup
    theta0 = jnp.array([0.5, 0.7])
    eta = 0.4
    got = run_one_step(features, truth, sgd.SGDConfig("token", eta), theta0, x[1:], y[1:], Ball(1.0))
    current = theta0
    for h in range(H):
        grad = token_jacobian(features, current, x[1], y[1])[h]
        current = current + eta * grad
        current = current / max(1.0, float(jnp.linalg.norm(current)))
    np.testing.assert_allclose(got, current, rtol=1e-12)
    # differs from one sequence-level step (the test can tell the rules apart)
    seq = run_one_step(features, truth, sgd.SGDConfig("vanilla", eta), theta0, x[1:], y[1:], Ball(1.0))
    assert not np.allclose(seq, got)


def trajectory_reference(features, theta0, eta, xs, ys, steps, radius=1.0):
    thetas = [theta0]
    for t in range(steps):
        i = t % xs.shape[0]
        nxt = thetas[-1] + eta * autodiff_score(features, thetas[-1], xs[i], ys[i])
        thetas.append(nxt / max(1.0, float(jnp.linalg.norm(nxt)) / radius))
    return jnp.stack(thetas)


def test_dataset_mode_trajectory_checkpoints_and_averages(setup):
    features, truth, x, y = setup
    T, eta = 5, 0.3
    theta0 = jnp.array([0.2, 0.1])
    model = covsim.LinearModel(features, theta0)
    metric = lambda th: th[0] ** 2 + jnp.sin(th[1])  # noqa: E731
    result = sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", eta), num_steps=T,
                       key=jax.random.key(0), constraint=Ball(1.0), dataset=(x, y),
                       checkpoints=list(range(1, T + 2)), metrics={"f": metric})
    ref = trajectory_reference(features, theta0, eta, x, y, T)  # θ_1..θ_{T+1}, cycling the dataset
    np.testing.assert_allclose(result.checkpoint_thetas, ref, rtol=1e-12)
    np.testing.assert_allclose(result.theta, ref[-1], rtol=1e-12)
    np.testing.assert_array_equal(result.checkpoint_steps, np.arange(1, T + 2))
    expected = np.mean([float(metric(t)) for t in ref[:T]])  # θ_{T+1} excluded
    np.testing.assert_allclose(result.metrics["f"], expected, rtol=1e-12)
    np.testing.assert_allclose(result.theta_average, ref[:T].mean(0), rtol=1e-12)
    # a subset of checkpoints selects the same rows
    sub = sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", eta), num_steps=T,
                    key=jax.random.key(0), constraint=Ball(1.0), dataset=(x, y), checkpoints=[4, 2])
    np.testing.assert_array_equal(sub.checkpoint_steps, [2, 4])
    np.testing.assert_allclose(sub.checkpoint_thetas, ref[np.array([1, 3])], rtol=1e-12)


def online_run(features, truth, key, config=None, metrics=None, T=30):
    model = covsim.LinearModel(features, jnp.zeros(D))
    return sgd.train(model, truth, jnp.array([0.3, 0.7]), config or sgd.SGDConfig("vanilla", 0.05),
                     num_steps=T, key=key, constraint=Ball(1.0), metrics=metrics)


def test_online_deterministic_and_vmappable(setup):
    features, truth, _, _ = setup
    a = online_run(features, truth, jax.random.key(3))
    b = online_run(features, truth, jax.random.key(3))
    c = online_run(features, truth, jax.random.key(4))
    np.testing.assert_array_equal(a.checkpoint_thetas, b.checkpoint_thetas)
    assert not np.allclose(a.theta, c.theta)
    keys = jax.random.split(jax.random.key(9), 4)
    batched = jax.vmap(lambda k: online_run(features, truth, k))(keys)
    for s in range(4):
        single = online_run(features, truth, keys[s])
        np.testing.assert_allclose(batched.checkpoint_thetas[s], single.checkpoint_thetas, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(batched.theta[s], single.theta, rtol=1e-12, atol=1e-15)
    assert a.checkpoint_thetas.shape == (len(sgd.default_checkpoints(30)), D)


def test_online_samples_come_from_truth():
    """Training on a truth with one deterministic prompt moves θ toward its token's feature."""
    features = jnp.zeros((1, 1, 1, 2, 2)).at[0, 0, 0, 0].set(jnp.array([1.0, 0.0])).at[0, 0, 0, 1].set(
        jnp.array([0.0, 1.0]))
    truth = covsim.TabularModel(jnp.array([[[[0.0, -jnp.inf]]]]), horizon=2)  # always token 0
    model = covsim.LinearModel(features, jnp.zeros(2), horizon=2)
    result = sgd.train(model, truth, jnp.array([1.0]), sgd.SGDConfig("vanilla", 0.1), num_steps=1,
                       key=jax.random.key(0), constraint=None)
    # score of y = (0, 0) at θ = 0: 2·(e_0 − (e_0 + e_1)/2) = (1, −1)
    np.testing.assert_allclose(result.theta, [0.1, -0.1], rtol=1e-12)


def test_no_retrace_on_new_key_or_step_size(setup):
    features, truth, _, _ = setup
    online_run(features, truth, jax.random.key(0))
    size = sgd._train_core._cache_size()
    online_run(features, truth, jax.random.key(1))
    online_run(features, truth, jax.random.key(2), sgd.SGDConfig("vanilla", 0.02))
    assert sgd._train_core._cache_size() == size
    online_run(features, truth, jax.random.key(2), T=31)
    assert sgd._train_core._cache_size() == size + 1


def test_vanilla_sgd_below_exact_kl_bound():
    """THEORY §6.2 (v2 Prop. 5.1), EXACT in expectation for η ≤ 1/(2HB²)."""
    P_, H_, V_, d_ = 1, 4, 3, 2
    features, theta_star = tiny_class(seed=5, P=P_, H=H_, V=V_, d=d_, scale=1.0)
    truth = covsim.LinearModel(features, theta_star)
    mu = jnp.ones(1)
    B = float(jnp.max(jnp.linalg.norm(features, axis=-1)))
    sigma2 = float(covsim.inherent_variance(truth, mu))
    T = 200
    eta = 1.0 / (2 * H_ * B**2)
    theta1 = jnp.array([-0.8, 0.0])
    model = covsim.LinearModel(features, theta1)
    kl = lambda th: covsim.kl(truth, covsim.LinearModel(features, th), mu)  # noqa: E731
    keys = jax.random.split(jax.random.key(0), 64)
    result = jax.vmap(lambda k: sgd.train(model, truth, mu, sgd.SGDConfig("vanilla", eta), num_steps=T, key=k,
                                          constraint=Ball(1.0), metrics={"kl": kl}))(keys)
    avg = np.asarray(result.metrics["kl"])
    bound = float(jnp.sum((theta_star - theta1) ** 2)) / (eta * T) + 2 * eta * sigma2
    mean, se = avg.mean(), avg.std(ddof=1) / math.sqrt(len(avg))
    assert mean <= bound + 3 * se, (mean, se, bound)
    # and learning happened: the averaged KL is well below the KL at θ_1
    assert mean < 0.8 * float(kl(theta1))


def test_default_config_step_sizes():
    s2, B, H_, T, N = 4.0, 2.0, 8, 1000, 16.0
    c = sgd.default_config("vanilla", sigma2=s2, B=B, H=H_, T=T, N=N)
    assert c.learning_rate == pytest.approx(min(1 / (2 * H_ * B**2), math.sqrt(2 / (s2 * T))))
    c = sgd.default_config("normalized", sigma2=s2, B=B, H=H_, T=T, N=N, K=4)
    eta = min(1 / (128 * B), (math.log(N) / (s2 * T)) ** 0.25)
    assert c.learning_rate == pytest.approx(eta) and c.lam == pytest.approx(math.log(N) / (16 * eta))
    assert c.batch_size == 4
    c = sgd.default_config("token", sigma2=s2, B=B, H=H_, T=T, N=N)
    assert c.learning_rate == pytest.approx(min(1 / (2 * B**2), (s2 * T) ** -0.5))
    c = sgd.default_config("truncated", sigma2=s2, B=B, H=H_, T=T, N=N)
    assert c.learning_rate == pytest.approx(min(1 / (256 * math.log(N) * B**2), (T * s2 * math.log(N)) ** -0.5))
    assert c.log_n == pytest.approx(math.log(N))
    # σ⋆² = 0: the cap
    assert sgd.default_config("vanilla", sigma2=0, B=B, H=H_, T=T, N=N).learning_rate == 1 / (2 * H_ * B**2)
    assert sgd.default_config("token", sigma2=0, B=B, H=H_, T=T, N=N).learning_rate == 1 / (2 * B**2)
    # overrides
    assert sgd.default_config("vanilla", sigma2=s2, B=B, H=H_, T=T, N=N, learning_rate=0.5).learning_rate == 0.5
    assert isinstance(sgd.make_optimizer(c), optax.GradientTransformation)


def test_default_checkpoints_grid():
    grid = sgd.default_checkpoints(1000)
    assert grid[0] == 1 and grid[-1] == 1000 and 15 <= len(grid) <= 20
    assert list(grid) == sorted(set(grid))
    assert sgd.default_checkpoints(3) == (1, 2, 3)


def test_bad_inputs(setup):
    features, truth, x, y = setup
    with pytest.raises(ValueError, match="method"):
        sgd.SGDConfig("momentum", 0.1)
    with pytest.raises(ValueError, match="lam"):
        sgd.SGDConfig("normalized", 0.1)
    with pytest.raises(ValueError, match="log_n"):
        sgd.SGDConfig("truncated", 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        sgd.SGDConfig("vanilla", -1.0)
    model = covsim.LinearModel(features, jnp.zeros(D))
    with pytest.raises(ValueError, match="checkpoints"):
        sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", 0.1), num_steps=5,
                  key=jax.random.key(0), constraint=None, checkpoints=[0, 3])
    with pytest.raises(ValueError, match="key"):
        sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", 0.1), num_steps=5,
                  key=None, constraint=None)
    with pytest.raises(ValueError, match="dataset"):
        sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", 0.1), num_steps=5,
                  key=jax.random.key(0), constraint=None, dataset=(x, y[:, :2]))


@pytest.mark.parametrize("chunk_steps", [1, 2, 4, 256])
def test_chunked_loop_matches_reference_for_any_chunk_size(setup, monkeypatch, chunk_steps):
    """T = 5 with chunks of 1, 2 (last chunk padded), 4 (padded) and 256 (one chunk): the
    padded steps leave the state untouched, so every trajectory equals the reference."""
    features, truth, x, y = setup
    T, eta = 5, 0.3
    theta0 = jnp.array([0.2, 0.1])
    monkeypatch.setattr(sgd, "_CHUNK_STEPS", chunk_steps)
    assert sgd._chunk_steps(T, 1, H, V) == min(T, chunk_steps)
    model = covsim.LinearModel(features, theta0)
    result = sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", eta), num_steps=T,
                       key=jax.random.key(0), constraint=Ball(1.0), dataset=(x, y),
                       checkpoints=list(range(1, T + 2)))
    ref = trajectory_reference(features, theta0, eta, x, y, T)
    np.testing.assert_allclose(result.checkpoint_thetas, ref, rtol=1e-12)
    np.testing.assert_allclose(result.theta_average, ref[:T].mean(0), rtol=1e-12)


def test_new_checkpoint_steps_of_same_count_do_not_retrace(setup):
    features, truth, x, y = setup
    model = covsim.LinearModel(features, jnp.zeros(D))

    def run(checkpoints):
        return sgd.train(model, truth, jnp.array([0.5, 0.5]), sgd.SGDConfig("vanilla", 0.1), num_steps=9,
                         key=jax.random.key(0), constraint=Ball(1.0), checkpoints=checkpoints)

    a = run([1, 5, 10])
    size = sgd._train_core._cache_size()
    b = run([2, 3, 7])
    assert sgd._train_core._cache_size() == size
    np.testing.assert_array_equal(b.checkpoint_steps, [2, 3, 7])
    np.testing.assert_allclose(a.theta, b.theta, rtol=0)  # same key: same trajectory
    full = run(list(range(1, 11)))
    np.testing.assert_allclose(b.checkpoint_thetas, full.checkpoint_thetas[np.array([1, 2, 6])], rtol=0)


@pytest.mark.parametrize("prev_dependent", [True, False])
def test_online_sequence_sampler_matches_exact_law(prev_dependent):
    """Empirical frequencies of all P·V^H sequences from the chunk sampler agree with the
    exact law within 5 standard errors (both the scan and the all-positions-at-once path)."""
    rng = np.random.default_rng(7)
    p_, h_, v_ = 2, 3, 3
    logits = rng.normal(size=(p_, h_, v_ + 1 if prev_dependent else 1, v_)) * 1.5
    logits[0, 1, ..., 2] = -np.inf  # a zero-probability token
    truth = covsim.TabularModel(jnp.asarray(logits), horizon=h_)
    mu = jnp.array([0.35, 0.65])
    table = covsim.next_token_log_probs(truth)
    cdf = jnp.cumsum(jnp.exp(table), axis=-1)
    n = 200_000
    x, y = jax.jit(sgd._sample_sequences, static_argnums=(2, 3))(cdf, jnp.log(mu), n, h_, jax.random.key(1))
    x, y = np.asarray(x), np.asarray(y)
    assert not np.any((x == 0) & (y[:, 1] == 2))
    codes = x * v_**h_ + (y * v_ ** np.arange(h_ - 1, -1, -1)).sum(1)
    freq = np.bincount(codes, minlength=p_ * v_**h_) / n
    exact = np.zeros(p_ * v_**h_)
    for xi in range(p_):
        for idx, seq in enumerate(np.ndindex(*(v_,) * h_)):
            exact[xi * v_**h_ + idx] = float(mu[xi]) * math.exp(float(covsim.log_prob(truth, xi, jnp.array(seq))))
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(freq - exact) <= 5 * se + 1e-12), np.max(np.abs(freq - exact) / np.maximum(se, 1e-12))


@pytest.mark.parametrize("sigma2", [0.0, 0.7])
def test_default_config_step_sizes_are_the_stated_formulas(sigma2):
    """THEORY §6.6, written out here once more by hand: default_config must agree."""
    B, H, T, N = 1.5, 16, 1000, 8.0
    M = math.log(N)
    inf = math.inf
    expect = {
        "vanilla": min(1 / (2 * H * B**2), math.sqrt(2 / (sigma2 * T)) if sigma2 else inf),
        "token": min(1 / (2 * B**2), (sigma2 * T) ** -0.5 if sigma2 else inf),
        "truncated": min(1 / (256 * M * B**2), (T * sigma2 * M) ** -0.5 if sigma2 else inf),
        "normalized": min(1 / (128 * B), (M / (sigma2 * T)) ** 0.25 if sigma2 else inf),
    }
    for method, eta in expect.items():
        cfg = sgd.default_config(method, sigma2=sigma2, B=B, H=H, T=T, N=N)
        assert cfg.learning_rate == pytest.approx(eta, rel=1e-12), method
    cfg = sgd.default_config("normalized", sigma2=sigma2, B=B, H=H, T=T, N=N)
    assert cfg.lam == pytest.approx(M / (16 * expect["normalized"]), rel=1e-12)
    assert cfg.lam >= 8 * B * M * (1 - 1e-12) and cfg.learning_rate * cfg.lam <= M / 16 * (1 + 1e-12)
