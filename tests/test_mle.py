"""Maximum-likelihood estimators: linear (ball / box), tabular, finite classes."""

import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import optimize  # noqa: E402

import covsim  # noqa: E402
from covsim.fit import (  # noqa: E402
    MLEDiagnostics,
    fit_mle,
    fit_mle_finite,
    log_likelihoods,
    sufficient_statistics,
)
from covsim.fit import mle as mle_module  # noqa: E402
from covsim.fit.mle import gap_tolerance  # noqa: E402

# ---------------------------------------------------------------------------
# helpers


sample_jit = jax.jit(covsim.sample, static_argnames="n")


def random_linear_problem(seed, d, n=150, P=2, H=3, V=3, scale=0.8):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(P, H, V + 1, V, d)))
    truth = covsim.LinearModel(features, jnp.asarray(rng.normal(size=d)) * scale)
    mu = jnp.full((P,), 1.0 / P)
    x, y = sample_jit(truth, mu, n=n, key=jax.random.key(seed))
    return truth, x, y


@jax.jit
@jax.value_and_grad
def _negative_ll(theta, features, x, y):
    model = covsim.LinearModel(features, theta, y.shape[1])
    return -jnp.sum(jax.vmap(lambda xi, yi: covsim.log_prob(model, xi, yi))(x, y))


def brute_force_objective(model, x, y):
    """θ ↦ −Σ_i log π_θ(y_i|x_i), sequence by sequence with covsim.log_prob (and its gradient)."""

    def fun(theta):
        v, g = _negative_ll(jnp.asarray(theta), model.features, x, y)
        return float(v), np.asarray(g)

    return fun


def numpy_sequence_log_likelihood(model, x, y, w=None):
    """Σ_i w_i Σ_h log π(y_ih | x_i, h, y_i,h−1) by an explicit NumPy loop over sequences."""
    table = np.asarray(covsim.next_token_log_probs(model))
    P, Hs, U, V = table.shape
    total = 0.0
    for i, (xi, yi) in enumerate(zip(np.asarray(x), np.asarray(y))):
        prev, lp = V, 0.0
        for h, v in enumerate(yi):
            lp += table[min(xi, P - 1), min(h, Hs - 1), prev if U > 1 else 0, v]
            prev = v
        total += (1.0 if w is None else float(w[i])) * lp
    return total


def coarse_counts_data(counts):
    """(x, y) with H = 1, one prompt and the given label counts."""
    y = np.repeat(np.arange(len(counts)), counts)[:, None]
    return jnp.zeros(len(y), dtype=jnp.int32), jnp.asarray(y, dtype=jnp.int32)


# ---------------------------------------------------------------------------
# AR-linear MLE on a ball, against scipy


# one feature shape (d = 5) for most tests: the solver compiles once per shape and constraint kind
D = 5


@pytest.mark.parametrize("seed, radius", [(0, 50.0), (1, 50.0), (0, 0.4), (2, 0.25)])
def test_ball_mle_matches_scipy(seed, radius):
    d = D
    truth, x, y = random_linear_problem(seed=seed, d=d)
    fitted, diag = fit_mle(truth, x, y, radius=radius, return_diagnostics=True)
    fun = brute_force_objective(truth, x, y)
    ball = {"type": "ineq", "fun": lambda t: radius**2 - t @ t, "jac": lambda t: -2 * t}
    ref = optimize.minimize(
        fun, np.zeros(d), jac=True, method="SLSQP", constraints=[ball],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    theta = np.asarray(fitted.theta)
    boundary = radius < 1.0
    assert (np.linalg.norm(theta) == pytest.approx(radius, rel=1e-12)) == boundary
    assert np.linalg.norm(ref.x) <= radius * (1 + 1e-9)
    np.testing.assert_allclose(theta, ref.x, atol=1e-6)
    assert -fun(theta)[0] == pytest.approx(-ref.fun, abs=1e-6)
    assert -fun(theta)[0] >= -ref.fun - 1e-9
    assert float(diag.log_likelihood) == pytest.approx(-fun(theta)[0], abs=1e-9)
    assert bool(diag.converged)
    assert float(diag.kkt_residual) < 1e-10
    # Frank–Wolfe gap radius·‖∇L‖ − ⟨∇L, θ⟩: a certified bound on the suboptimality
    assert 0.0 <= float(diag.gap) < 1e-10 * radius * y.size
    assert isinstance(diag, MLEDiagnostics)


def test_ball_optimum_satisfies_kkt_with_positive_multiplier():
    truth, x, y = random_linear_problem(seed=11, d=D)
    theta = np.asarray(fit_mle(truth, x, y, radius=0.2).theta)
    _, grad_neg = brute_force_objective(truth, x, y)(theta)
    grad = -grad_neg
    # ∇L = λ θ with λ > 0 (gradient points straight out of the ball)
    lam = grad @ theta / (theta @ theta)
    assert lam > 0
    np.testing.assert_allclose(grad, lam * theta, atol=1e-7 * np.linalg.norm(grad))


# ---------------------------------------------------------------------------
# box


def test_box_mle_matches_lbfgsb():
    d = D
    truth, x, y = random_linear_problem(seed=3, d=d, n=200)
    lower = np.array([-0.3, -1.0, -0.2, 0.1, -2.0])
    upper = np.array([0.3, 1.0, 2.0, 0.5, -0.1])
    fitted, diag = fit_mle(truth, x, y, box=(lower, upper), return_diagnostics=True)
    fun = brute_force_objective(truth, x, y)
    ref = optimize.minimize(
        fun, np.clip(np.zeros(d), lower, upper), jac=True, method="L-BFGS-B",
        bounds=list(zip(lower, upper)), options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 2000},
    )
    theta = np.asarray(fitted.theta)
    assert np.all(theta >= lower) and np.all(theta <= upper)
    assert np.any((theta == lower) | (theta == upper))  # an active bound, hit exactly
    np.testing.assert_allclose(theta, ref.x, atol=1e-6)
    assert -fun(theta)[0] >= -ref.fun - 1e-9
    assert bool(diag.converged) and float(diag.kkt_residual) < 1e-10 and float(diag.gap) < 1e-8


@pytest.mark.parametrize(
    "counts", [[40, 5, 3, 1, 0, 0], [20, 9, 0, 2, 1, 0], [6, 0, 7, 1, 0, 2], [3, 0, 0, 0, 0, 0]]
)
def test_coarse_tightness_kkt_closed_form(counts):
    """CONSTRUCTIONS.md §4: θ̂_j = 1 (top), −1 (unseen), (1/B) log(n_v (e^B + ℓ e^{−B})/n_j)."""
    counts = np.array(counts)
    d = len(counts)
    n = counts.sum()
    B = math.log(5 * n) + 1.0
    features = B * jnp.eye(d)[None, None, None]  # (1, 1, 1, V=d, d)
    learner = covsim.LinearModel(features, jnp.zeros(d), horizon=1)
    x, y = coarse_counts_data(counts)
    fitted, diag = fit_mle(learner, x, y, box=(-1.0, 1.0), return_diagnostics=True)

    top = int(np.argmax(counts))
    unseen = counts == 0
    ell = unseen.sum()
    expected = np.empty(d)
    with np.errstate(divide="ignore"):
        expected[:] = np.log(counts * (np.exp(B) + ell * np.exp(-B)) / counts[top]) / B
    expected[unseen] = -1.0
    expected[top] = 1.0
    assert np.all(np.abs(expected) <= 1.0)  # the KKT closed form is feasible here
    theta = np.asarray(fitted.theta)
    np.testing.assert_allclose(theta, expected, atol=1e-9)
    assert np.all(theta[unseen] == -1.0) and theta[top] == 1.0  # boundary reached exactly
    # the solver stops on (and reports) its own certificate: the tolerance is derived from it
    eps = np.finfo(np.float64).eps
    tol_eff = max(1e-10, 100 * eps)
    assert bool(diag.converged) and float(diag.kkt_residual) <= tol_eff
    assert float(diag.gap) <= float(gap_tolerance(tol_eff, diag.log_likelihood, n, eps))


def test_projected_gradient_would_stall_but_newton_reaches_boundary():
    """The unseen labels sit at exactly −1, the bound where first-order methods crawl."""
    counts = np.array([500, 3, 1, 0, 0, 0])
    B = math.log(5 * counts.sum()) + 1
    learner = covsim.LinearModel(B * jnp.eye(6)[None, None, None], jnp.zeros(6), horizon=1)
    fitted, diag = fit_mle(learner, *coarse_counts_data(counts), box=(-1.0, 1.0), return_diagnostics=True)
    assert np.all(np.asarray(fitted.theta)[3:] == -1.0)
    assert int(diag.iterations) < 20 and bool(diag.converged)


# ---------------------------------------------------------------------------
# kl_horizon_lower_bound closed form and minimum-norm convention


def kl_horizon_learner(B, H):
    """d = 1; ψ(0, ·) = 0, ψ(1, h, u, v) = B·(2v − 1) (CONSTRUCTIONS.md §3)."""
    features = np.zeros((2, 1, 1, 2, 1))
    features[1, 0, 0, :, 0] = [-B, B]
    return covsim.LinearModel(jnp.asarray(features), jnp.zeros(1), horizon=H)


@pytest.mark.parametrize("B", [1.0, 3.0])
def test_kl_horizon_closed_form(B):
    H, n = 5, 40
    learner = kl_horizon_learner(B, H)
    rng = np.random.default_rng(int(B))
    for p_plus in [0.3, 0.6, 0.97, 1.0, 0.0]:
        x = (rng.random(n) < 0.3).astype(np.int32)
        y = (rng.random((n, H)) < p_plus).astype(np.int32)
        signed = 2 * y[x == 1] - 1
        ybar = signed.mean()
        with np.errstate(divide="ignore"):
            expected = np.clip(np.arctanh(ybar) / B, -1.0, 1.0)
        fitted, diag = fit_mle(learner, jnp.asarray(x), jnp.asarray(y), box=(-1.0, 1.0), return_diagnostics=True)
        assert float(fitted.theta[0]) == pytest.approx(expected, abs=1e-9), (p_plus, ybar)
        assert bool(diag.converged)


def test_kl_horizon_no_rare_prompt_gives_exactly_zero():
    learner = kl_horizon_learner(1.0, 4)
    x = jnp.zeros(30, dtype=jnp.int32)
    y = jnp.asarray(np.random.default_rng(0).integers(0, 2, size=(30, 4)), dtype=jnp.int32)
    fitted, diag = fit_mle(learner, x, y, box=(-1.0, 1.0), return_diagnostics=True)
    assert float(fitted.theta[0]) == 0.0
    assert bool(diag.converged) and int(diag.iterations) == 0


@pytest.mark.parametrize("radius", [100.0, 0.3])
def test_uninformed_coordinates_stay_exactly_zero(radius):
    """Coordinates whose features live only on an unseen prompt (or nowhere) stay exactly 0."""
    rng = np.random.default_rng(5)
    d, V, H = 5, 3, 3
    features = np.zeros((2, H, V + 1, V, d))
    features[0, ..., :3] = rng.normal(size=(H, V + 1, V, 3))
    features[1, ..., 3] = rng.normal(size=(H, V + 1, V))  # coordinate 3: prompt 1 only; 4: nowhere
    model = covsim.LinearModel(jnp.asarray(features), jnp.zeros(d))
    x, y = sample_jit(model, jnp.array([1.0, 0.0]), n=150, key=jax.random.key(1))
    assert np.all(np.asarray(x) == 0)
    fitted, diag = fit_mle(model, x, y, radius=radius, return_diagnostics=True)
    theta = np.asarray(fitted.theta)
    assert theta[3] == 0.0 and theta[4] == 0.0
    assert np.all(theta[:3] != 0.0)
    assert bool(diag.converged)
    box_fit = fit_mle(model, x, y, box=(-radius, radius))
    assert float(box_fit.theta[3]) == 0.0 and float(box_fit.theta[4]) == 0.0


@pytest.mark.parametrize("radius", [100.0, 0.3])
def test_rotated_flat_direction_gets_minimum_norm(radius):
    """Features with φ_3 ≡ φ_4 leave e_3 − e_4 uninformed: the MLE has θ_3 = θ_4 (minimum norm)
    and equals the MLE of the reduced 4-dimensional model with feature φ_3 and θ'_3 = 2θ_3."""
    rng = np.random.default_rng(6)
    base = rng.normal(size=(2, 3, 4, 3, 4))
    features = np.concatenate([base, base[..., 3:]], axis=-1)  # (2, 3, 4, 3, 5)
    model = covsim.LinearModel(jnp.asarray(features), jnp.zeros(D))
    x, y = sample_jit(model.__class__(model.features, jnp.array([0.5, -0.3, 0.2, 0.4, 0.4])),
                      jnp.array([0.5, 0.5]), n=150, key=jax.random.key(2))
    theta = np.asarray(fit_mle(model, x, y, radius=radius).theta)
    assert theta[3] == pytest.approx(theta[4], abs=1e-12)
    # reference: brute-force objective over the 4-dim reparametrization with scipy
    fun = brute_force_objective(model, x, y)
    embed = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0.5], [0, 0, 0, 0.5]])
    reduced = lambda t: tuple(o if k == 0 else embed.T @ o for k, o in enumerate(fun(embed @ t)))  # noqa: E731
    cons = {"type": "ineq", "fun": lambda t: radius**2 - (embed @ t) @ (embed @ t)}
    ref = optimize.minimize(reduced, np.zeros(4), jac=True, method="SLSQP", constraints=[cons],
                            options={"ftol": 1e-15, "maxiter": 1000})
    np.testing.assert_allclose(theta, embed @ ref.x, atol=1e-6)


# ---------------------------------------------------------------------------
# weights, vmap and recompilation


def test_mask_weights_equal_prefix_fit_and_do_not_retrace():
    truth, x, y = random_linear_problem(seed=7, d=D)
    fit_mle(truth, x, y, radius=0.7)  # warm the cache for these shapes
    before = mle_module._fit_linear_model._cache_size()
    for n in [30, 77, 150]:
        mask = (jnp.arange(150) < n).astype(jnp.float64)
        weighted = fit_mle(truth, x, y, radius=0.7, weights=mask)
        prefix = fit_mle(truth, x[:n], y[:n], radius=0.7)
        np.testing.assert_allclose(weighted.theta, prefix.theta, atol=1e-12)
    fit_mle(truth, x, y, radius=0.35, weights=jnp.linspace(0.0, 2.0, 150))
    assert mle_module._fit_linear_model._cache_size() == before  # new weights / radius: no retrace


def test_integer_weights_are_repetitions():
    truth, x, y = random_linear_problem(seed=8, d=D)
    w = np.random.default_rng(0).integers(0, 4, size=150)
    weighted = fit_mle(truth, x, y, radius=5.0, weights=jnp.asarray(w, dtype=jnp.float64))
    repeated = fit_mle(truth, jnp.repeat(x, w), jnp.repeat(y, w, axis=0), radius=5.0)
    np.testing.assert_allclose(weighted.theta, repeated.theta, atol=1e-10)


def test_vmap_over_seeds_equals_loop_and_traces_once():
    truth, _, _ = random_linear_problem(seed=9, d=D)
    mu = jnp.array([0.5, 0.5])
    data = [sample_jit(truth, mu, n=150, key=jax.random.key(s)) for s in range(3)]
    xs = jnp.stack([x for x, _ in data])
    ys = jnp.stack([y for _, y in data])
    traces = []

    @jax.jit
    def fit_all(xs, ys):
        traces.append(1)

        def one(x, y):
            m, diag = fit_mle(truth, x, y, radius=0.5, return_diagnostics=True)
            return m.theta, diag

        return jax.vmap(one)(xs, ys)

    thetas, diags = fit_all(xs, ys)
    fit_all(ys[:, :, 0].astype(xs.dtype) % 2, ys)  # other data, same shapes: no retrace
    assert len(traces) == 1
    assert diags.converged.shape == (3,) and bool(jnp.all(diags.converged))
    for k, (x, y) in enumerate(data):
        np.testing.assert_allclose(thetas[k], fit_mle(truth, x, y, radius=0.5).theta, atol=1e-10)


# ---------------------------------------------------------------------------
# tabular MLE


def test_tabular_frequencies_unseen_token_and_context():
    V, H = 3, 2
    model = covsim.TabularModel(jnp.zeros((2, H, V + 1, V)))
    x = jnp.array([0, 0, 0, 0, 1])
    y = jnp.array([[0, 1], [0, 1], [0, 0], [2, 1], [1, 1]])
    fitted = fit_mle(model, x, y)
    probs = np.exp(np.asarray(covsim.next_token_log_probs(fitted)))
    np.testing.assert_allclose(probs[0, 0, V], [3 / 4, 0, 1 / 4])  # prompt 0, h=0, BOS
    np.testing.assert_allclose(probs[0, 1, 0], [1 / 3, 2 / 3, 0])  # after token 0
    np.testing.assert_allclose(probs[0, 1, 2], [0, 1, 0])
    np.testing.assert_allclose(probs[1, 1, 0], [1 / 3] * 3)  # unseen context -> uniform
    assert float(fitted.logits[0, 0, V, 1]) == -np.inf  # unseen token: exactly probability 0
    # KL(truth‖fitted) = +inf when the truth has mass on the unseen token
    kl = covsim.kl(model, fitted, jnp.array([0.5, 0.5]))
    assert float(kl) == np.inf


def test_tabular_pooling_follows_broadcast_shape_and_smoothing():
    V = 2
    pooled = covsim.TabularModel(jnp.zeros((1, 1, 1, V)), horizon=3)  # Bernoulli, all contexts pooled
    x = jnp.zeros(4, dtype=jnp.int32)
    y = jnp.array([[0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    fitted = fit_mle(pooled, x, y)
    np.testing.assert_allclose(np.exp(fitted.logits[0, 0, 0]), [10 / 12, 2 / 12])
    smoothed = fit_mle(pooled, x, y, smoothing=0.5)
    np.testing.assert_allclose(np.exp(smoothed.logits[0, 0, 0]), [10.5 / 13, 2.5 / 13])
    ones = jnp.ones((4, 3), dtype=jnp.int32)
    missing = fit_mle(pooled, x, 0 * ones)
    assert float(missing.logits[0, 0, 0, 1]) == -np.inf  # Bernoulli missing mass: p̂ = 0
    truth = covsim.TabularModel(jnp.log(jnp.array([[[[0.9, 0.1]]]])), horizon=3)
    assert float(covsim.kl(truth, missing, jnp.ones(1))) == np.inf
    assert np.all(np.isfinite(np.asarray(fit_mle(pooled, x, 0 * ones, smoothing=1.0).logits)))


def test_tabular_diagnostics_and_log_likelihood():
    model = covsim.TabularModel(jnp.zeros((1, 1, 1, 3)), horizon=2)
    x = jnp.zeros(3, dtype=jnp.int32)
    y = jnp.array([[0, 1], [1, 1], [2, 1]])
    fitted, diag = fit_mle(model, x, y, return_diagnostics=True)
    expected = math.log(1 / 6) * 2 + math.log(4 / 6) * 4
    assert float(diag.log_likelihood) == pytest.approx(expected, abs=1e-12)
    assert bool(diag.converged) and int(diag.iterations) == 0


# ---------------------------------------------------------------------------
# finite classes


def test_fit_mle_finite_matches_brute_force():
    rng = np.random.default_rng(2)
    H, V = 3, 3
    models = [covsim.TabularModel(jnp.asarray(rng.normal(size=(2, H, V + 1, V)))) for _ in range(5)]
    x, y = sample_jit(models[3], jnp.array([0.4, 0.6]), n=50, key=jax.random.key(3))
    brute = np.array([numpy_sequence_log_likelihood(m, x, y) for m in models])
    # the NumPy loop agrees with covsim.log_prob on a few sequences
    np.testing.assert_allclose(log_likelihoods(models, x, y), brute, rtol=1e-12)
    chosen, index = fit_mle_finite(models, x, y, return_index=True)
    assert int(index) == int(np.argmax(brute))
    np.testing.assert_array_equal(chosen.logits, models[int(index)].logits)
    w = jnp.asarray(rng.random(50))
    brute_w = np.array([numpy_sequence_log_likelihood(m, x, y, w) for m in models])
    np.testing.assert_allclose(log_likelihoods(models, x, y, weights=w), brute_w, rtol=1e-12)


def test_fit_mle_finite_ties_and_infinite_log_likelihood():
    bern = lambda p: covsim.TabularModel(jnp.log(jnp.array([[[[1 - p, p]]]])), horizon=1)  # noqa: E731
    x = jnp.zeros(4, dtype=jnp.int32)
    y = jnp.array([[0], [0], [1], [0]])
    zero = covsim.TabularModel(jnp.array([[[[0.0, -jnp.inf]]]]), horizon=1)  # never emits 1
    models = [zero, bern(0.25), bern(0.25), bern(0.1)]
    _, index = fit_mle_finite(models, x, y, return_index=True)
    assert int(index) == 1  # tie between 1 and 2 -> lowest index; -inf never preferred
    lls = np.asarray(log_likelihoods(models, x, y))
    assert lls[0] == -np.inf and not np.any(np.isnan(lls))
    # a zero-weight sample with probability 0 is ignored (no NaN)
    w = jnp.array([1.0, 1.0, 0.0, 1.0])
    _, index = fit_mle_finite(models, x, y, weights=w, return_index=True)
    assert int(index) == 0
    # all -inf: index 0
    _, index = fit_mle_finite([zero, zero], x, y, return_index=True)
    assert int(index) == 0


def test_fit_mle_finite_under_vmap():
    bern = lambda p: covsim.TabularModel(jnp.log(jnp.array([[[[1 - p, p]]]])), horizon=2)  # noqa: E731
    models = [bern(0.1), bern(0.5), bern(0.9)]
    keys = jax.random.split(jax.random.key(0), 3)
    x, y = jax.vmap(lambda k, m: sample_jit(m, jnp.ones(1), n=40, key=k))(
        keys, jax.tree_util.tree_map(lambda *l: jnp.stack(l), *models)
    )

    def pick(xi, yi):
        return fit_mle_finite(models, xi, yi, return_index=True)

    chosen, index = jax.jit(jax.vmap(pick))(x, y)
    np.testing.assert_array_equal(index, [0, 1, 2])
    np.testing.assert_allclose(chosen.logits[:, 0, 0, 0], jnp.stack([m.logits[0, 0, 0] for m in models]))


# ---------------------------------------------------------------------------
# sufficient statistics


@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 3, 1, 3), (2, 1, 4, 3), (1, 1, 1, 3)])
def test_sufficient_statistics_equal_naive_loop(shape):
    P, Hs, U, V = shape
    H = 3
    model = covsim.TabularModel(jnp.zeros(shape), horizon=H)
    rng = np.random.default_rng(sum(shape))
    n = 25
    x = rng.integers(0, 2, size=n)
    y = rng.integers(0, V, size=(n, H))
    w = rng.random(n)
    naive = np.zeros(shape)
    for i in range(n):
        prev = V
        for h in range(H):
            naive[min(x[i], P - 1), min(h, Hs - 1), prev if U > 1 else 0, y[i, h]] += w[i]
            prev = y[i, h]
    counts = sufficient_statistics(model, jnp.asarray(x), jnp.asarray(y), weights=jnp.asarray(w))
    assert counts.shape == shape
    np.testing.assert_allclose(counts, naive, atol=1e-12)
    unweighted = sufficient_statistics(model, jnp.asarray(x), jnp.asarray(y))
    assert float(unweighted.sum()) == n * H
    feats = covsim.LinearModel(jnp.zeros(shape + (2,)), jnp.zeros(2), horizon=H)
    np.testing.assert_allclose(sufficient_statistics(feats, jnp.asarray(x), jnp.asarray(y), weights=jnp.asarray(w)), naive, atol=1e-12)


# ---------------------------------------------------------------------------
# validation


def test_bad_inputs_raise_value_error_naming_the_argument():
    truth, x, y = random_linear_problem(seed=1, d=D)
    x, y = x[:10], y[:10]
    tab = covsim.TabularModel(jnp.zeros((2, 3, 4, 3)))
    cases = [
        (lambda: fit_mle(truth, x.astype(jnp.float64), y), "x"),
        (lambda: fit_mle(truth, x, y[:, :2]), "y"),
        (lambda: fit_mle(truth, x, y.at[0, 0].set(3)), "y"),
        (lambda: fit_mle(truth, x, y.at[0, 0].set(-1)), "y"),
        (lambda: fit_mle(truth, x.at[0].set(2), y), "x"),
        (lambda: fit_mle(truth, x, y, weights=jnp.ones(9)), "weights"),
        (lambda: fit_mle(truth, x, y, weights=-jnp.ones(10)), "weights"),
        (lambda: fit_mle(truth, x, y, radius=0.0), "radius"),
        (lambda: fit_mle(truth, x, y, radius=-1.0), "radius"),
        (lambda: fit_mle(truth, x, y, box=(1.0, -1.0)), "box"),
        (lambda: fit_mle(truth, x, y, box=(jnp.zeros(2), 1.0)), "box"),
        (lambda: fit_mle(truth, x, y, box=1.0), "box"),
        (lambda: fit_mle(tab, x, y, smoothing=-0.1), "smoothing"),
        (lambda: fit_mle(truth, x, y, max_iter=0), "max_iter"),
        (lambda: fit_mle(truth, x, y, tol=-1.0), "tol"),
        (lambda: fit_mle_finite([], x, y), "models"),
        (lambda: fit_mle_finite([tab, covsim.TabularModel(jnp.zeros((1, 3, 3, 2)))], x, y), "models"),
        (lambda: log_likelihoods([tab], x, y, weights=jnp.full(10, jnp.nan)), "weights"),
        (lambda: sufficient_statistics(tab, x, y[:, :1]), "y"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


_VMAP_BALL_SCRIPT = """
import jax, numpy as np
from theory_checks import variance_lower_bound as v
from covsim.experiments.runner import cell_key
cell = v.grid("quick")[0]
out = v.run_cell(cell, cell_key(cell, 0), 32)
assert np.all(np.isfinite(out["cov"])), out["cov"]
print("ok")
"""


def test_vmapped_ball_fit_does_not_deadlock():
    """Regression: 32 vmapped ball fits in float64 hung in the XLA CPU thread pool when the
    interior (Cholesky) and boundary (eigh) solves ran as independent batched LAPACK calls.
    Run in a subprocess so a hang fails the test instead of stalling the suite."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _VMAP_BALL_SCRIPT], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_constraint_objects_equal_radius_and_box_keywords():
    """fit_mle(constraint=Ball(r)) is fit_mle(radius=r); Box likewise; both at once refused."""
    from covsim.constraints import Ball, Box

    rng = np.random.default_rng(3)
    features = jnp.asarray(rng.normal(size=(1, 4, 4, 3, 2)))
    truth = covsim.LinearModel(features, jnp.array([1.5, -2.0]))
    x, y = covsim.sample(truth, jnp.ones(1), 200, key=jax.random.PRNGKey(1))
    a = fit_mle(truth, x, y, radius=3.0)
    b = fit_mle(truth, x, y, constraint=Ball(3.0))
    np.testing.assert_array_equal(np.asarray(a.theta), np.asarray(b.theta))
    a = fit_mle(truth, x, y, box=(-1.0, 1.0))
    b = fit_mle(truth, x, y, constraint=Box(-1.0, 1.0))
    np.testing.assert_array_equal(np.asarray(a.theta), np.asarray(b.theta))
    with pytest.raises(ValueError, match="not both"):
        fit_mle(truth, x, y, radius=2.0, constraint=Ball(3.0))


def test_on_boundary_flags_a_radius_too_small_for_the_truth():
    """‖θ⋆‖ = 2.5 > radius 1: the fit sits on the sphere with an outward gradient."""
    rng = np.random.default_rng(4)
    features = jnp.asarray(rng.normal(size=(1, 4, 4, 3, 2)))
    truth = covsim.LinearModel(features, jnp.array([1.5, -2.0]))
    x, y = covsim.sample(truth, jnp.ones(1), 500, key=jax.random.PRNGKey(2))
    _, diag = fit_mle(truth, x, y, radius=1.0, return_diagnostics=True)
    assert bool(diag.on_boundary) and bool(diag.converged)
    _, diag = fit_mle(truth, x, y, radius=10.0, return_diagnostics=True)
    assert not bool(diag.on_boundary)
