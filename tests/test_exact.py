"""Exact metrics against brute-force enumeration on tiny laws."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import brute_force, random_tabular
from hypothesis import given, settings
from hypothesis import strategies as st

import covsim

LAWS = [
    dict(P=2, H=3, V=3, zero_frac=0.0),
    dict(P=1, H=4, V=2, zero_frac=0.2),
    dict(P=3, H=2, V=4, zero_frac=0.3, prev=False),
    dict(P=2, H=3, V=3, zero_frac=0.0, broadcast_h=True),
]


def _pair(rng, spec):
    spec = dict(spec)
    zero_frac = spec.pop("zero_frac")
    p = random_tabular(rng, **spec, zero_frac=zero_frac)
    q = random_tabular(rng, **spec, zero_frac=zero_frac)
    mu = rng.dirichlet(np.ones(spec["P"]))
    return p, q, mu


def _brute_kl(rows):
    w, a, b = rows[:, 0], rows[:, 1], rows[:, 2]
    live = w > 0
    if np.any(np.isneginf(b[live])):
        return np.inf
    return np.sum(w[live] * (a[live] - b[live]))


@pytest.mark.parametrize("spec", LAWS)
def test_kl_hellinger_coverage_match_enumeration(rng, spec):
    p, q, mu = _pair(rng, spec)
    rows = brute_force(p, q, mu)
    w, a, b, eps = rows.T
    np.testing.assert_allclose(covsim.kl(p, q, mu), _brute_kl(rows), rtol=1e-10)
    np.testing.assert_allclose(covsim.kl(p, p, mu), 0.0, atol=1e-12)
    mu_rows = np.repeat(mu, p.vocab_size**p.horizon)
    bc = np.sum(mu_rows * np.exp(0.5 * (a + b)))
    np.testing.assert_allclose(covsim.hellinger2(p, q, mu), 1 - bc, atol=1e-12)
    N = np.array([1.0, 1.5, 3.0, 20.0])
    with np.errstate(invalid="ignore"):
        ratio = np.where(np.isneginf(b), np.inf, a - b)
    want = [np.sum(w[(w > 0) & (ratio >= np.log(n) - 1e-9)]) for n in N]
    np.testing.assert_allclose(covsim.coverage(p, q, mu, N), want, atol=1e-12)
    stopped = [np.sum(w * np.minimum(np.log(n), eps)) for n in N]
    np.testing.assert_allclose(covsim.stopped_kl(p, q, mu, N), stopped, atol=1e-12)


def test_kl_is_inf_when_q_has_a_zero_where_p_has_mass():
    p = covsim.TabularModel(jnp.zeros((1, 1, 1, 2)), horizon=5)
    q = covsim.TabularModel(jnp.array([[[[0.0, -jnp.inf]]]]), horizon=5)
    assert covsim.kl(p, q, jnp.ones(1)) == jnp.inf
    assert covsim.kl(q, p, jnp.ones(1)) == pytest.approx(5 * np.log(2))
    # coverage counts the zero-probability responses of q at every N
    assert covsim.coverage(p, q, jnp.ones(1), 1e6) == pytest.approx(1 - 0.5**5)


def test_inherent_variance_matches_enumeration(rng):
    P, H, V, d = 2, 3, 3, 4
    feats = jnp.asarray(rng.normal(size=(P, H, V + 1, V, d)))
    model = covsim.LinearModel(feats, jnp.asarray(rng.normal(size=d)) * 0.5)
    mu = np.array([0.4, 0.6])
    # sigma^2 = E || grad log pi(y|x) ||^2 at the true parameter (martingale identity)
    grad = jax.grad(lambda th, x, y: covsim.log_prob(covsim.LinearModel(feats, th), x, y))
    import itertools

    total = 0.0
    for x in range(P):
        for y in itertools.product(range(V), repeat=H):
            y = jnp.array(y)
            w = mu[x] * np.exp(covsim.log_prob(model, x, y))
            g = grad(model.theta, x, y)
            total += w * float(g @ g)
    np.testing.assert_allclose(covsim.inherent_variance(model, mu), total, rtol=1e-9)


def test_bracket_contains_exact_and_narrows(rng):
    p, q, mu = _pair(rng, dict(P=2, H=4, V=3, zero_frac=0.1))
    N = jnp.array([1.0, 2.0, 4.0, 10.0])
    exact = covsim.coverage(p, q, mu, N)
    widths = []
    for bins in (64, 256, 1024, 4096):
        lo, hi = covsim.coverage(p, q, mu, N, method="bracket", bins=bins)
        assert np.all(lo <= exact + 1e-12) and np.all(exact <= hi + 1e-12)
        widths.append(float(jnp.max(hi - lo)))
    assert widths[-1] < widths[0]
    assert widths[-1] < 0.05


def test_bracket_is_tight_on_near_deterministic_long_sequences():
    """The per-step offset removes rounding drift on near-deterministic steps."""
    H, V = 512, 4
    base = jnp.full((1, 1, V + 1, V), -12.0)
    rule = (jnp.arange(V + 1) + 1) % V
    p_logits = base.at[0, 0, jnp.arange(V + 1), rule].set(0.0)
    q_logits = base.at[0, 0, jnp.arange(V + 1), rule].set(0.0) - 0.0
    q_logits = q_logits.at[0, 0, :, :].add(jnp.where(jnp.arange(V) == 0, -3.0, 0.0))
    p = covsim.TabularModel(p_logits, horizon=H)
    q = covsim.TabularModel(q_logits, horizon=H)
    lo, hi = covsim.coverage(p, q, jnp.ones(1), jnp.array([2.0, 16.0]), method="bracket", bins=2048)
    mc = covsim.coverage(p, q, jnp.ones(1), jnp.array([2.0, 16.0]), method="mc", num_samples=20000,
                         key=jax.random.PRNGKey(0), return_stderr=True)
    assert np.all(hi - lo < 0.02)
    assert np.all(mc.mean >= lo - 5 * mc.stderr - 1e-12) and np.all(mc.mean <= hi + 5 * mc.stderr + 1e-12)


def test_monte_carlo_within_five_standard_errors(rng):
    p, q, mu = _pair(rng, dict(P=2, H=5, V=3, zero_frac=0.1))
    N = jnp.array([1.5, 3.0, 30.0])
    exact = covsim.coverage(p, q, mu, N)
    est = covsim.coverage(p, q, mu, N, method="mc", num_samples=50_000, key=jax.random.PRNGKey(1),
                          return_stderr=True, chunk_size=8192)
    assert np.all(np.abs(est.mean - exact) <= 5 * est.stderr + 1e-12)
    assert est.mean.shape == N.shape
    s_exact = covsim.stopped_kl(p, q, mu, N)
    s_mc = covsim.stopped_kl(p, q, mu, N, method="mc", num_samples=50_000, key=jax.random.PRNGKey(2),
                             return_stderr=True)
    assert np.all(np.abs(s_mc.mean - s_exact) <= 5 * s_mc.stderr + 1e-9)


def test_monte_carlo_memory_is_chunked():
    """10^7 samples run in bounded memory: the chunk size, not num_samples, sets the arrays."""
    p = covsim.TabularModel(jnp.array([[[[0.0, -1.0]]]]), horizon=2)
    q = covsim.TabularModel(jnp.array([[[[0.0, 1.0]]]]), horizon=2)
    lowered = jax.jit(
        lambda k: covsim.coverage(p, q, jnp.ones(1), 2.0, method="mc", num_samples=10_000_000,
                                  key=k, chunk_size=4096)
    ).lower(jax.random.PRNGKey(0))
    text = lowered.as_text()
    import re

    assert not re.search(r"tensor<[0-9x]*10000000", text)  # no array with a 1e7 axis is built


def test_no_nan_long_horizon_large_logits():
    rng = np.random.default_rng(0)
    H, V = 4096, 3
    logits = rng.normal(size=(2, 1, V + 1, V)) * 50
    logits[0, 0, 1, 2] = -np.inf
    q_logits = rng.normal(size=(2, 1, V + 1, V)) * 50
    q_logits[1, 0, :, 0] = -np.inf
    p = covsim.TabularModel(jnp.asarray(logits), horizon=H)
    q = covsim.TabularModel(jnp.asarray(q_logits), horizon=H)
    mu = jnp.array([0.5, 0.5])
    values = [covsim.kl(p, q, mu), covsim.kl(q, p, mu), covsim.hellinger2(p, q, mu),
              *covsim.coverage(p, q, mu, jnp.array([2.0, 1e6]), method="bracket", bins=256),
              covsim.coverage(p, q, mu, 16.0, method="mc", num_samples=2000, key=jax.random.PRNGKey(0))]
    for v in values:
        assert not np.any(np.isnan(np.asarray(v)))
        assert np.asarray(v).dtype == np.float64
    assert 0.0 <= covsim.hellinger2(p, q, mu) <= 1.0


def test_float32_stays_float32():
    p = covsim.TabularModel(jnp.zeros((1, 2, 3, 2), dtype=jnp.float32))
    q = covsim.TabularModel(jnp.ones((1, 2, 3, 2), dtype=jnp.float32).at[..., 0].set(0.0))
    mu = jnp.ones(1, dtype=jnp.float32)
    assert covsim.kl(p, q, mu).dtype == jnp.float32
    assert covsim.hellinger2(p, q, mu).dtype == jnp.float32


def test_functions_jit_and_vmap(rng):
    p, q, mu = _pair(rng, dict(P=2, H=3, V=3, zero_frac=0.0))
    mu = jnp.asarray(mu)
    np.testing.assert_allclose(jax.jit(covsim.kl)(p, q, mu), covsim.kl(p, q, mu))
    np.testing.assert_allclose(
        jax.jit(lambda a, b, m: covsim.coverage(a, b, m, jnp.array([2.0])))(p, q, mu),
        covsim.coverage(p, q, mu, jnp.array([2.0])),
    )
    # a batch of models (leading axis on the leaves) through vmap
    scales = jnp.array([0.0, 0.5, 1.0])
    kls = jax.vmap(lambda s: covsim.kl(p, covsim.TabularModel(q.logits * s, horizon=3), mu))(scales)
    for s, v in zip(scales, kls):
        np.testing.assert_allclose(v, covsim.kl(p, covsim.TabularModel(q.logits * s, horizon=3), mu))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), N=st.lists(st.floats(1.0, 50.0), min_size=2, max_size=5))
def test_coverage_non_increasing_in_N_and_zero_against_itself(seed, N):
    rng = np.random.default_rng(seed)
    p, q, mu = _pair(rng, dict(P=2, H=3, V=2, zero_frac=0.2))
    N = np.sort(np.asarray(N))
    cov = np.asarray(covsim.coverage(p, q, mu, N))
    assert np.all(np.diff(cov) <= 1e-12)
    assert np.all((cov >= 0) & (cov <= 1 + 1e-12))
    self_cov = np.asarray(covsim.coverage(p, p, mu, N[N > 1.0 + 1e-6]))
    assert np.all(self_cov == 0.0)


def test_tie_at_ratio_exactly_N_is_counted():
    p_star, N = 0.3, 4.0
    p = covsim.TabularModel(jnp.log(jnp.array([[[[1 - p_star, p_star]]]])), horizon=1)
    q = covsim.TabularModel(jnp.log(jnp.array([[[[1 - p_star / N, p_star / N]]]])), horizon=1)
    assert covsim.coverage(p, q, jnp.ones(1), N) == pytest.approx(p_star)
    lo, hi = covsim.coverage(p, q, jnp.ones(1), N, method="bracket")
    assert lo <= p_star <= hi


def test_enumeration_limit_names_alternatives():
    p = covsim.TabularModel(jnp.zeros((1, 1, 1, 32)), horizon=8)
    with pytest.raises(ValueError, match="bracket.*mc"):
        covsim.coverage(p, p, jnp.ones(1), 2.0)


# ---------------------------------------------------------------------------
# coverage_independent: meet in the middle for prev-independent laws


def _independent_pair(rng, P, H, V, zero_frac):
    lp = rng.normal(size=(P, H, 1, V)) * 2.0
    lq = rng.normal(size=(P, H, 1, V)) * 2.0
    lp[rng.random(lp.shape) < zero_frac] = -np.inf
    lq[rng.random(lq.shape) < zero_frac] = -np.inf
    lp[..., 0] = np.where(np.all(np.isneginf(lp), -1), 0.0, lp[..., 0])  # keep a support
    lq[..., 0] = np.where(np.all(np.isneginf(lq), -1), 0.0, lq[..., 0])
    return covsim.TabularModel(jnp.asarray(lp), H), covsim.TabularModel(jnp.asarray(lq), H)


@pytest.mark.parametrize("P,H,V,zero_frac", [(1, 1, 4, 0.0), (2, 3, 3, 0.2), (2, 4, 3, 0.3), (3, 5, 2, 0.25)])
def test_coverage_independent_equals_enumeration(P, H, V, zero_frac):
    """Meet in the middle (odd and even H, zeros on both sides, q = 0 < p) against the
    enumeration behind coverage(method="exact") and a NumPy brute force."""
    rng = np.random.default_rng(P * 100 + H * 10 + V)
    p, q = _independent_pair(rng, P, H, V, zero_frac)
    mu = jnp.asarray(rng.dirichlet(np.ones(P)))
    N = jnp.asarray([1.0, 1.5, 3.0, 20.0, 1e6])
    mine = np.asarray(covsim.coverage_independent(p, q, mu, N))
    np.testing.assert_allclose(mine, np.asarray(covsim.coverage(p, q, mu, N)), atol=1e-12)
    lp, lq = np.asarray(p.logits)[:, :, 0], np.asarray(q.logits)[:, :, 0]
    lp = lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)
    lq = lq - np.logaddexp.reduce(lq, axis=-1, keepdims=True)
    brute = np.zeros(N.shape)
    for x in range(P):
        for y in itertools.product(range(V), repeat=H):
            a = sum(lp[x, h, y[h]] for h in range(H))
            b = sum(lq[x, h, y[h]] for h in range(H))
            if np.isneginf(a):
                continue
            ratio = np.inf if np.isneginf(b) else a - b
            brute += float(mu[x]) * np.exp(a) * (ratio >= np.log(np.asarray(N)) - 1e-9)
    np.testing.assert_allclose(mine, brute, atol=1e-12)
    assert not np.any(np.isnan(mine))


def test_coverage_independent_beyond_enumeration_matches_bracket():
    """H = 16, V = 4 (4.3e9 responses): exact value inside the rigorous bracket."""
    rng = np.random.default_rng(3)
    p, q = _independent_pair(rng, 1, 16, 4, 0.0)
    mu = jnp.asarray([1.0])
    N = jnp.asarray([2.0, 50.0])
    exact = np.asarray(covsim.coverage_independent(p, q, mu, N))
    with pytest.raises(ValueError, match="bracket"):
        covsim.coverage(p, q, mu, N)
    lo, hi = covsim.coverage(p, q, mu, N, method="bracket", bins=8192)
    assert np.all(np.asarray(lo) - 1e-12 <= exact) and np.all(exact <= np.asarray(hi) + 1e-12)
    assert np.all(np.asarray(hi) - np.asarray(lo) < 0.05)


def test_coverage_independent_rejects_prev_dependent_and_huge_laws():
    rng = np.random.default_rng(0)
    dep = covsim.TabularModel(jnp.asarray(rng.normal(size=(1, 3, 4, 3))))
    with pytest.raises(ValueError, match=r"previous-token axis of size 1\), got one of size 4"):
        covsim.coverage_independent(dep, dep, jnp.asarray([1.0]), jnp.asarray([2.0]))
    big = covsim.TabularModel(jnp.zeros((1, 1, 1, 64)), horizon=8)
    with pytest.raises(ValueError, match="V\\^ceil\\(H/2\\) = 16777216"):
        covsim.coverage_independent(big, big, jnp.asarray([1.0]), jnp.asarray([2.0]))
    with pytest.raises(ValueError, match="N must be >= 1"):
        covsim.coverage_independent(big, big, jnp.asarray([1.0]), jnp.asarray([0.5]))
