"""Tests of covsim.bounds against brute-force enumeration on tiny laws (NumPy only)."""

import itertools
import math

import jax


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy import stats  # noqa: E402

from covsim import bounds  # noqa: E402

TOL = 1e-9
RNG_SEED = 20251015


# ----------------------------------------------------------------------------------------
# brute-force references (independent of covsim)
# ----------------------------------------------------------------------------------------


def cov(p, q, N, rho=None):
    """Cov^rho_N(p || q) = rho-mass of {p/q >= N}, ties counted, q = 0 -> ratio inf."""
    rho = p if rho is None else rho
    with np.errstate(divide="ignore"):
        lr = np.log(p) - np.log(q)
    mask = (rho > 0) & (lr >= np.log(N) - 1e-9)
    return float(rho[mask].sum())


def kl(p, q):
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def hellinger2(p, q):
    return float(max(0.0, 1.0 - np.sum(np.sqrt(p * q))))


def chi2(p, q):
    return float(np.sum(p**2 / q) - 1.0)


def hockey(p, q, N):
    return float(np.sum(np.maximum(p - N * q, 0.0)))


def random_pair(rng, k, conc=0.5):
    p = rng.dirichlet(np.full(k, conc))
    q = rng.dirichlet(np.full(k, conc))
    p = np.maximum(p, 1e-300)
    q = np.maximum(q, 1e-300)
    return p / p.sum(), q / q.sum()


def ber_kl(a, b):
    return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))


N_GRID = [1.5, 2.0, 2.7182818284590453, 3.0, 4.6, 5.7, 10.0, 100.0]


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


# ----------------------------------------------------------------------------------------
# exact inequalities on random categorical pairs
# ----------------------------------------------------------------------------------------


def test_divergence_bounds_on_random_pairs(rng):
    rows = []  # (N, cov_N, kl, h2, chi2, m_half, m_one, m_two, E_N, cov_2N)
    for _ in range(200):
        k = int(rng.integers(2, 7))
        p, q = random_pair(rng, k, conc=float(rng.choice([0.2, 0.5, 2.0])))
        d_kl, d_h, d_chi = kl(p, q), hellinger2(p, q), chi2(p, q)
        moments = [float(np.sum(p * (p / q) ** a)) for a in (0.5, 1.0, 2.0)]
        for N in N_GRID:
            rows.append(
                [N, cov(p, q, N), d_kl, d_h, d_chi, *moments, hockey(p, q, N), cov(p, q, 2 * N)]
            )
    N, c, d_kl, d_h, d_chi, m05, m1, m2, e_n, c2 = np.array(rows).T
    assert np.all(c <= np.asarray(bounds.kl_to_coverage(d_kl, N)) + TOL)
    assert np.all(c <= np.asarray(bounds.hellinger_to_coverage(d_h, N)) + TOL)
    assert np.all(c <= np.asarray(bounds.chi2_coverage(d_chi, N)) + TOL)
    for power, m in [(0.5, m05), (1.0, m1), (2.0, m2)]:
        assert np.all(c <= np.asarray(bounds.markov_coverage(m, N, power)) + TOL)
    big = N >= math.e
    assert np.all(c[big] <= np.asarray(bounds.kl_to_coverage_simplified(d_kl[big], N[big])) + TOL)
    # hockey-stick sandwich: E_N <= Cov_N and Cov_2N <= 2 E_N
    assert np.all(e_n <= c + TOL)
    assert np.all(c2 <= np.asarray(bounds.coverage_from_hockey_stick(e_n)) + TOL)
    assert np.mean(c > 0) > 0.3  # the comparisons are not all trivial


def test_kl_bound_is_not_trivially_loose():
    # a pair where KL bound is close to the truth: Ber(p) vs Ber(p/N), large N
    p, N = 0.01, 1e6
    d = ber_kl(p, p / N)
    bound = float(bounds.kl_to_coverage(d, N))
    assert p <= bound <= 1.2 * p


def test_kl_full_form_beats_simplified():
    for N in [3.0, 5.0, 50.0]:
        assert bounds.kl_to_coverage(1.0, N) < bounds.kl_to_coverage_simplified(1.0, N)


@given(
    st.lists(st.floats(1e-3, 1.0), min_size=2, max_size=6),
    st.lists(st.floats(1e-3, 1.0), min_size=2, max_size=6),
    st.floats(1.01, 1e4),
)
@settings(max_examples=60, deadline=None)
def test_kl_to_coverage_property(pw, qw, N):
    k = min(len(pw), len(qw))
    p = np.array(pw[:k]) / sum(pw[:k])
    q = np.array(qw[:k]) / sum(qw[:k])
    assert cov(p, q, N) <= float(bounds.kl_to_coverage(kl(p, q), N)) + TOL
    assert cov(p, q, N) <= float(bounds.hellinger_to_coverage(hellinger2(p, q), N)) + TOL


def test_tightness_bernoulli_pair():
    rows = []
    for p in np.linspace(0.01, 0.5, 25):
        for N in [2.0, 3.0, 4.6, 10.0, 1e3]:
            c = cov(np.array([p, 1 - p]), np.array([p / N, 1 - p / N]), N)
            assert c == pytest.approx(p)  # tie at ratio exactly N is counted
            rows.append([N, c, ber_kl(p, p / N)])
    N, c, d = np.array(rows).T
    assert np.all(np.asarray(bounds.kl_tightness_lower(d, N)) <= c + TOL)
    assert np.all(c <= np.asarray(bounds.kl_to_coverage(d, N)) + TOL)
    assert bounds.kl_tightness_lower(1.0, 4.0) < bounds.kl_to_coverage(1.0, 4.0)


def test_weak_converse_on_random_pairs(rng):
    rows = []
    for _ in range(200):
        k = int(rng.integers(2, 6))
        p, q = random_pair(rng, k, conc=0.5)
        ratios = p / q
        cands = ratios[ratios > 1]
        if cands.size:
            C = max(cov(p, q, r) * math.log(r) for r in cands)
            rows.append([kl(p, q), C, float(np.log(ratios.max()))])
    d_kl, C, log_w = np.array(rows).T
    assert len(rows) > 150
    assert np.all(d_kl <= np.asarray(bounds.weak_converse_kl(C, log_w)) + 1e-9)
    assert float(bounds.weak_converse_kl(0.0, 3.0)) == 0.0
    # equality case C = log W_max gives C exactly
    assert float(bounds.weak_converse_kl(2.0, 2.0)) == pytest.approx(2.0)


def test_chain_rule_and_triangle_rule(rng):
    chain, tri = [], []
    for _ in range(200):
        k = int(rng.integers(2, 6))
        pT, pD = random_pair(rng, k)
        pH, rho = random_pair(rng, k)
        for M1, M2 in [(2.0, 2.0), (10.0, 3.0), (4.0, 8.0), (50.0, 5.0), (3.0, 0.5)]:
            chain.append([cov(pT, pH, M1), cov(pD, pH, M1 / M2), cov(pT, pD, M2), M2])
        for N1, N2 in [(2.0, 2.0), (1.5, 7.0), (10.0, 1.0)]:
            tri.append(
                [
                    cov(pT, pH, N1 * N2, rho=rho),
                    cov(pT, pD, N1, rho=rho),
                    cov(pD, pH, N2, rho=rho),
                ]
            )
    lhs, a, b, M2 = np.array(chain).T
    assert np.all(lhs <= np.asarray(bounds.chain_rule(a, b, M2)) + TOL)
    lhs, a, b = np.array(tri).T
    assert np.all(lhs <= np.asarray(bounds.triangle_rule(a, b)) + TOL)
    assert np.mean(lhs > 0) > 0.3


def test_reverse_ratio_tail(rng):
    rows = []
    for _ in range(100):
        p, q = random_pair(rng, 5)
        for A in [0.5, 1.0, 2.0, 10.0]:
            rows.append([A, cov(q, p, A, rho=p)])
    A, tail = np.array(rows).T
    assert np.all(tail <= np.asarray(bounds.reverse_ratio_tail(A)) + TOL)


# ----------------------------------------------------------------------------------------
# sequence-level: stopped KL and partial converse (H = 3, V = 2, enumeration)
# ----------------------------------------------------------------------------------------


def random_seq_model(rng, H, V, conc):
    # next-token law depends on (h, prev); prev = V at h = 0
    return rng.dirichlet(np.full(V, conc), size=(H, V + 1))


def seq_stats(P, Q, H, V):
    """Per-sequence: prob under P, log-ratio, sum of per-step KL and per-step Hellinger²."""
    out = []
    for y in itertools.product(range(V), repeat=H):
        prob, lr, skl, sh = 1.0, 0.0, 0.0, 0.0
        prev = V
        for h, v in enumerate(y):
            p, q = P[h, prev], Q[h, prev]
            prob *= p[v]
            lr += math.log(p[v]) - math.log(q[v])
            skl += kl(p, q)
            sh += hellinger2(p, q)
            prev = v
        out.append((prob, lr, skl, sh))
    return np.array(out)


def test_stopped_kl_and_partial_converse(rng):
    H, V = 3, 2
    stopped, partial = [], []
    for trial in range(60):
        conc = 0.3 if trial % 2 else 1.0
        P = random_seq_model(rng, H, V, conc)
        Q = random_seq_model(rng, H, V, conc)
        P, Q = np.maximum(P, 1e-12), np.maximum(Q, 1e-12)
        P, Q = P / P.sum(-1, keepdims=True), Q / Q.sum(-1, keepdims=True)
        prob, lr, skl, sh = seq_stats(P, Q, H, V).T
        for N in [3.0, 5.0, 20.0, 1e3]:
            c = float(prob[lr >= math.log(N) - 1e-9].sum())
            d_seq = float(np.sum(prob * np.minimum(math.log(N), skl)))
            assert d_seq <= math.log(N) + 1e-12
            stopped.append([N, c, d_seq])
            for delta in [0.05, 0.3, 0.7]:
                thr = math.log(N / delta)
                partial.append([N, delta, c, float(prob[sh >= thr].sum())])
    N, c, d_seq = np.array(stopped).T
    assert np.all(c <= np.asarray(bounds.stopped_kl_to_coverage(d_seq, N)) + TOL)
    N, delta, c, P_exceed = np.array(partial).T
    thr = np.asarray(bounds.partial_converse_threshold(N, delta))
    np.testing.assert_allclose(thr, np.log(N / delta), rtol=1e-12)
    assert np.all(np.asarray(bounds.partial_converse(P_exceed, delta)) <= c + TOL)
    # a designed pair where the partial converse is non-vacuous
    P = np.tile(np.array([0.999, 0.001]), (H, V + 1, 1))
    Q = np.tile(np.array([1e-6, 1 - 1e-6]), (H, V + 1, 1))
    prob, lr, skl, sh = seq_stats(P, Q, H, V).T
    N, delta = 2.0, 0.2
    thr = float(bounds.partial_converse_threshold(N, delta))
    lower = float(bounds.partial_converse(float(prob[sh >= thr].sum()), delta))
    assert lower > 0.5
    assert lower <= float(prob[lr >= math.log(N)].sum()) + TOL


# ----------------------------------------------------------------------------------------
# Best-of-N
# ----------------------------------------------------------------------------------------


def bon_value(pi_hat, reward, N):
    """Exact E[max reward of N i.i.d. draws]."""
    levels = np.unique(reward)
    val, prev = 0.0, 0.0
    for lvl in levels:  # E[max] = sum_l (lvl - prev) * P[max >= lvl]
        q = float(pi_hat[reward >= lvl].sum())
        val += (lvl - prev) * (-math.expm1(N * math.log1p(-min(q, 1.0))) if q < 1 else 1.0)
        prev = lvl
    return val


def test_bon_sufficiency_binary_and_necessity(rng):
    suff, nec = [], []
    for _ in range(300):
        k = int(rng.integers(2, 7))
        pT, pH = random_pair(rng, k, conc=0.4)
        r = (rng.random(k) < 0.5).astype(float)
        for N in [1, 2, 5, 20]:
            regret = float(pT @ r) - bon_value(pH, r, N)
            for M in [0.5, 1.0, 2.0, 8.0, 30.0]:
                suff.append([regret, cov(pT, pH, M), N, M])
            # necessity: worst-case reward 1{pT/pH >= 2N}
            r2 = (pT / pH >= 2 * N).astype(float)
            nec.append([float(pT @ r2) - bon_value(pH, r2, N), cov(pT, pH, 2 * N)])
    regret, c, N, M = np.array(suff).T
    assert np.all(regret <= np.asarray(bounds.bon_sufficiency(np.minimum(c, 1), N, M)) + TOL)
    regret, c2 = np.array(nec).T
    assert np.all(np.asarray(bounds.bon_necessity(np.minimum(c2, 1))) <= regret + TOL)
    assert np.mean(c2 > 0) > 0.1


def test_bon_sufficiency_general(rng):
    rows = []
    for _ in range(300):
        k = int(rng.integers(2, 7))
        pT, pH = random_pair(rng, k, conc=1.0)
        r = rng.random(k)
        for M in [1.0, 2.0, 5.0]:
            for eps in [0.05, 0.2]:
                N = int(math.ceil(2 * M * math.log(1 / eps)))
                rows.append([float(pT @ r) - bon_value(pH, r, N), cov(pT, pH, M), N, M, eps])
    regret, c, N, M, eps = np.array(rows).T
    ok = np.asarray(bounds.bon_sufficiency_general_applies(N, M, eps, np.minimum(c, 1)))
    assert ok.sum() > 100
    bound = np.asarray(bounds.bon_sufficiency_general(c[ok], eps[ok]))
    assert np.all(regret[ok] <= bound + TOL)
    assert not bool(bounds.bon_sufficiency_general_applies(10, 5.0, 0.1, 0.2))
    assert not bool(bounds.bon_sufficiency_general_applies(100, 1.0, 0.1, 0.6))


def test_kl_scaling_law():
    assert float(bounds.kl_scaling_law_n(2.0, 0.5)) == pytest.approx(math.exp(4.0))
    assert float(bounds.kl_scaling_law_n(0.0, 0.5)) == 1.0
    assert float(bounds.kl_scaling_law_n(np.inf, 0.5)) == np.inf


# ----------------------------------------------------------------------------------------
# MLE facts
# ----------------------------------------------------------------------------------------


def test_bernoulli_missing_mass_quantile_exact_binomial():
    # P[Cov_N(p_hat) > 8 log(1/δ)/n] = 1{p⋆ > thr} P[Bin(n, p⋆) <= n p⋆ / N] <= δ
    for n in [10, 50, 200]:
        for delta in [0.01, 0.1, 0.3]:
            thr = float(bounds.bernoulli_missing_mass_quantile(n, delta))
            assert thr == pytest.approx(8 * math.log(1 / delta) / n)
            for N in [2.0, 4.0, 100.0]:
                for p_star in np.linspace(1e-3, 0.5, 60):
                    if p_star <= thr:
                        continue
                    fail = stats.binom.cdf(math.floor(n * p_star / N + 1e-12), n, p_star)
                    assert fail <= delta


def test_kappa_values_and_horizon_bound():
    assert float(bounds.kappa(1.0)) == pytest.approx(0.3278, abs=1e-3)
    assert float(bounds.kappa(3.0)) == pytest.approx(0.676, abs=1e-3)
    # κ(B) = KL(Ber(σ(2B)) || Ber(1/2)), computed independently
    for B in [0.1, 0.5, 1.0, 1.53, 2.0, 5.0]:
        s = 1 / (1 + math.exp(-2 * B))
        assert float(bounds.kappa(B)) == pytest.approx(ber_kl(s, 0.5), rel=1e-9)
    # κ(B) = 1/2 at B = 1.4916 (THEORY.md's B >= 1.53 is sufficient, not tight)
    k = [float(bounds.kappa(B)) for B in (1.53, 1.4917, 1.4915)]
    assert k[0] > k[1] > 0.5 > k[2]
    assert float(bounds.kappa(0.0)) == 0.0
    assert float(bounds.kappa(np.inf)) == pytest.approx(math.log(2))
    assert float(bounds.kappa(50.0)) == pytest.approx(math.log(2))
    assert not np.isnan(float(bounds.kappa(1e300)))
    val = float(bounds.kl_horizon_lower_bound(16, 100, B=1.0))
    assert val == pytest.approx(0.32781 * 16 / 200, rel=1e-4)
    assert val < 16 / (4 * 100)  # the corrected constant is smaller than the paper's
    assert float(bounds.kl_horizon_coverage_upper(100)) == 1 / 200


def test_mle_exact_forms():
    assert float(bounds.mle_insample_kl(4.0, 100)) == pytest.approx(2 * 2 / 10)
    assert float(bounds.mle_linear_crossover_n(2.0, 3.0, math.e)) == pytest.approx(81 / 2)
    assert float(bounds.mle_linear_crossover_n(0.0, 3.0, 5.0)) == np.inf
    assert float(bounds.misspecification_p(1.0, math.e**2)) == pytest.approx(1 / 64)
    assert float(bounds.misspecification_coverage(1.0, math.e**2)) == pytest.approx(1 / 128)
    assert float(bounds.coarse_tightness_lower(11, 100)) == pytest.approx(0.01)


def test_c_fine_and_coarse():
    eps = np.linspace(0.001, 1.0, 1000)
    d, n = 5.0, 1000
    val = float(bounds.c_fine(lambda e: d * jnp.log(1 / e), eps, n))
    # analytic minimizer of d log(1/e)/n + e at e = d/n
    e_star = d / n
    assert val == pytest.approx(d * math.log(1 / e_star) / n + e_star, rel=1e-3)
    arr = d * np.log(1 / eps)
    assert float(bounds.c_fine(arr, eps, n)) == pytest.approx(val)
    assert float(bounds.c_coarse(3.0, 100, 0.1)) == pytest.approx((3 + math.log(10)) / 100)
    gen = bounds.mle_general_rate(0.2, 0.01, math.e**2, c=2.0)
    assert float(gen) == pytest.approx(2 * (0.1 + 0.01))
    assert float(bounds.mle_general_rate(0.2, 0.0, math.e, eps_apx=0.1)) == pytest.approx(0.3)


# ----------------------------------------------------------------------------------------
# algorithms: step sizes against hand values, exact KL forms
# ----------------------------------------------------------------------------------------


def test_step_sizes_hand_values():
    # vanilla: min{1/(2HB²), sqrt(2/(σ²T))}
    assert float(bounds.vanilla_sgd_step_size(4, 2.0, 0.5, 100)) == pytest.approx(1 / 32)
    assert float(bounds.vanilla_sgd_step_size(1, 1.0, 2.0, 10_000)) == pytest.approx(0.01)
    assert float(bounds.vanilla_sgd_step_size(2, 1.0, 0.0, 100)) == pytest.approx(0.25)
    # ttt: min{1/(2B²), (σ²T)^{-1/2}}
    assert float(bounds.ttt_step_size(1.0, 1.0, 10_000)) == pytest.approx(0.01)
    assert float(bounds.ttt_step_size(2.0, 1.0, 4)) == pytest.approx(1 / 8)
    assert float(bounds.ttt_step_size(1.0, 0.0, 4)) == pytest.approx(0.5)
    # normalized: η = min{1/(128B), (log N/(σ²T))^{1/4}}, λ = log N/(16η)
    eta, lam = bounds.normalized_sgd_step_size(1.0, 1.0, 10_000, math.e)
    assert float(eta) == pytest.approx(1 / 128)
    assert float(lam) == pytest.approx(128 / 16)
    eta, lam = bounds.normalized_sgd_step_size(0.01, 16.0, 1, math.e)
    assert float(eta) == pytest.approx(0.5)
    assert float(lam) == pytest.approx(1 / 8)
    for B, s2, T, N in [(1.0, 1.0, 100, 3.0), (3.0, 0.1, 10**5, 50.0), (1.0, 0.0, 10, 10.0)]:
        eta, lam = bounds.normalized_sgd_step_size(B, s2, T, N)
        M = math.log(N)
        assert float(lam) >= 8 * B * M * (1 - 1e-12)
        assert float(eta * lam) <= M / 16 * (1 + 1e-12)
    # distillation [correction]: min{1/(256 log N B²), (T σ² log N)^{-1/2}}
    N = math.e
    assert float(bounds.distillation_step_size(1.0, 1.0, 100, N)) == pytest.approx(1 / 256)
    assert float(bounds.distillation_step_size(1.0, 1.0, 10**6, N)) == pytest.approx(1e-3)
    assert float(bounds.distillation_step_size_paper(1.0, 1.0, 100, N)) == pytest.approx(1 / 66)
    for B, N in [(1.0, 2.0), (2.0, 100.0)]:
        eta = float(bounds.distillation_step_size(B, 1.0, 10, N))
        assert 128 * eta * B**2 * math.log(N) <= 0.5 + 1e-12


@given(
    st.integers(1, 10**6),
    st.integers(1, 64),
    st.floats(1.0, 10.0),
    st.floats(0.0, 1.0),
)
@settings(max_examples=60, deadline=None)
def test_default_steps_satisfy_exact_forms(T, H, B, frac):
    sigma2 = frac * H * B**2  # 0 <= σ⋆² <= HB²
    eta = bounds.vanilla_sgd_step_size(H, B, sigma2, T)
    assert float(eta) <= 1 / (2 * H * B**2) * (1 + 1e-12)
    lhs = float(bounds.vanilla_sgd_kl(T, eta, sigma2))
    assert lhs <= float(bounds.vanilla_sgd_kl_at_default_step(T, H, B, sigma2)) * (1 + 1e-9)
    eta = bounds.ttt_step_size(B, sigma2, T)
    lhs = float(bounds.ttt_kl(T, eta, sigma2))
    assert lhs <= float(bounds.ttt_kl_at_default_step(T, B, sigma2)) * (1 + 1e-9)


def test_vanilla_step_is_minimizer_when_uncapped():
    T, s2 = 10_000, 2.0
    eta = float(bounds.vanilla_sgd_step_size(1, 0.01, s2, T))
    assert eta == pytest.approx(math.sqrt(2 / (s2 * T)))
    grid = eta * np.array([0.5, 0.9, 1.1, 2.0])
    best = float(bounds.vanilla_sgd_kl(T, eta, s2))
    assert all(best <= float(bounds.vanilla_sgd_kl(T, g, s2)) for g in grid)


def test_exact_coverage_forms_compose():
    T, H, B, s2, N = 1000, 8, 1.0, 2.0, 20.0
    kl_bound = 4 * math.sqrt(2) * math.sqrt(s2 / T) + 8 * H * B**2 / T
    expected = kl_bound / (math.log(N) - 1 + 1 / N)
    assert float(bounds.vanilla_sgd_coverage_exact(T, H, B, s2, N)) == pytest.approx(expected)
    kl_ttt = 6 * math.sqrt(s2 / T) + 8 * B**2 / T
    assert float(bounds.ttt_kl_at_default_step(T, B, s2)) == pytest.approx(kl_ttt)
    assert float(bounds.ttt_coverage_exact(T, B, s2, N)) == pytest.approx(
        kl_ttt / (math.log(N) - 1 + 1 / N)
    )
    assert float(bounds.vanilla_sgd_kl(100, 0.1, 1.0, dist2=1.0)) == pytest.approx(0.3)


# ----------------------------------------------------------------------------------------
# tournaments
# ----------------------------------------------------------------------------------------


def test_tournament_forms():
    val = bounds.simple_tournament_explicit(0.01, 100.0, 2.0, 10, 1000, 0.1)
    assert float(val) == pytest.approx(0.05 + 0.08 + 32 * math.log(400) / 1000)
    r = bounds.simple_tournament_rate(0.0, 100.0, 0.5, 10, 1000, 0.1)
    assert float(r) == pytest.approx(0.1 + math.log(100) / 1000)
    assert bool(bounds.offset_tournament_condition(64.0, 0.25))  # 64^{1/2} = 8
    assert not bool(bounds.offset_tournament_condition(63.0, 0.25))
    assert not bool(bounds.offset_tournament_condition(4.0 ** 2, 0.25))  # ICLR's 4 is not enough
    assert bool(bounds.offset_tournament_general_condition(32.0, 2.0))
    assert not bool(bounds.offset_tournament_general_condition(31.0, 2.0))
    assert float(bounds.offset_tournament_rate(10, 100, 0.1, c=2.0)) == pytest.approx(
        2 * math.log(100) / 100
    )


# ----------------------------------------------------------------------------------------
# rates: slopes, monotonicity, regimes
# ----------------------------------------------------------------------------------------


def slope(fn, xs):
    ys = np.array([float(fn(x)) for x in xs])
    return np.polyfit(np.log(xs), np.log(ys), 1)[0]


def test_rate_slopes():
    big_n = np.array([1e8, 1e9, 1e10])
    small_n = np.array([1.0, 2.0, 4.0])
    # Thm 4.2: slope -1/2 in the fine regime, -1 in the coarse regime
    assert slope(lambda n: bounds.mle_linear_rate(n, 10.0, 1.0, 1.0), big_n) == pytest.approx(
        -0.5, abs=0.02
    )
    assert slope(lambda n: bounds.mle_linear_rate(n, 10.0, 1e-8, 1.0), small_n) == pytest.approx(
        -1.0, abs=0.02
    )
    # ∝ σ⋆ (slope +1/2 in σ²) and ∝ (log N)^{-1/2} in the fine regime
    s2 = np.array([1.0, 10.0, 100.0])
    assert slope(lambda s: bounds.mle_linear_rate(1e10, 10.0, s, 1.0), s2) == pytest.approx(
        0.5, abs=0.02
    )
    Ns = np.array([1e2, 1e4, 1e8])
    logs = np.log(Ns)
    ys = [float(bounds.mle_linear_rate(1e10, N, 1.0, 1.0)) for N in Ns]
    assert np.polyfit(np.log(logs), np.log(ys), 1)[0] == pytest.approx(-0.5, abs=0.02)
    # crossover: both terms equal at n×
    nx = float(bounds.mle_linear_crossover_n(0.5, 2.0, 10.0))
    assert math.sqrt(0.5 / (nx * math.log(10.0))) == pytest.approx(4.0 / nx)
    # SGD family: slope -1/2 in T for large T
    bigT = np.array([1e10, 1e11, 1e12])
    for fn in [
        lambda T: bounds.vanilla_sgd_rate(T, 10.0, 1.0, 1.0, 8),
        lambda T: bounds.ttt_rate(T, 10.0, 1.0, 1.0),
        lambda T: bounds.distillation_rate(T, 10.0, 1.0, 1.0),
        lambda T: bounds.normalized_sgd_rate(T, 10**12, 10.0, 1.0, 1.0),
    ]:
        assert slope(fn, bigT) == pytest.approx(-0.5, abs=0.02)
    # vanilla SGD grows with H at fixed T; ttt/normalized/distillation do not see H at all
    Hs = [1, 4, 16, 64]
    v = [float(bounds.vanilla_sgd_rate(100, 10.0, 1.0, 1.0, H)) for H in Hs]
    assert all(a < b for a, b in zip(v, v[1:]))
    # classical KL route improves only with log M; Thm 4.1 fine term divided by log N
    assert float(bounds.classical_kl_coverage_rate(0.1, 50.0, math.e)) == pytest.approx(5.0)
    assert float(bounds.classical_hellinger_rate(0.1)) == pytest.approx(0.1)
    assert float(bounds.classical_kl_rate(0.1, 50.0)) == pytest.approx(5.0)
    g = [float(bounds.mle_general_rate(1.0, 0.0, N)) for N in [8.0, 64.0, 4096.0]]
    assert g[0] > g[1] > g[2]


def test_lower_bound_rates_and_corollaries():
    assert float(bounds.variance_lower_bound_rate(10, math.e, 1000)) == 1.0
    assert float(bounds.variance_lower_bound_rate(1000, math.e, 10)) == pytest.approx(0.01)
    assert float(bounds.sgd_lower_bound_rate(1000, math.e, 10, c=0.5)) == pytest.approx(0.005)
    assert float(bounds.fine_tightness_rate(4, 100, math.e)) == pytest.approx(0.04)
    # parametric: slope -1 in n (up to log), logarithmic in H for AR-linear
    n = np.array([1e6, 1e7, 1e8])
    s = slope(lambda m: bounds.mle_parametric_rate(m, 100.0, 5, 4.0, 0.1), n)
    assert -1.0 < s < -0.8
    Hs = [8, 64, 512, 4096]
    r = [float(bounds.mle_linear_low_dim_rate(1000, 100.0, 5, 2.0, H, 0.1)) for H in Hs]
    assert r[0] < r[1] < r[2] < r[3]
    assert np.polyfit(np.log(Hs), np.log(r), 1)[0] < 0.3  # only logarithmic in H
    # nonparametric: fine term slope -1/(p+1)
    p = 2.0
    s = slope(lambda m: bounds.mle_nonparametric_rate(m, 100.0, 3.0, p, 0.999999), n)
    assert s == pytest.approx(-1 / (p + 1), abs=0.02)
    assert float(bounds.mle_nonparametric_min_n(math.e**4, 8.0, 1.0)) == pytest.approx(8.0)
    # convex class bound and well-specified rate
    val = bounds.convex_class_bound(0.1, 8.0, 1.0, 0.0, 2.0, 0.4, 100, math.exp(-1))
    assert float(val) == pytest.approx(0.1 + 0.03 + 0.05)
    assert float(bounds.convex_class_wellspecified_rate(1.0, 0.0, 100.0, 0.25)) == pytest.approx(
        0.1
    )
    T, K = bounds.normalized_sgd_budget(0.1, math.e, 1.0, 1.0)
    assert float(T) == pytest.approx(110.0) and float(K) == pytest.approx(11.0)


# ----------------------------------------------------------------------------------------
# inf / NaN, dtype, jit, validation
# ----------------------------------------------------------------------------------------


def test_inf_in_inf_out_never_nan():
    inf = np.inf
    assert float(bounds.kl_to_coverage(inf, 4.0)) == inf
    assert float(bounds.kl_to_coverage(0.0, 4.0)) == 0.0
    assert not np.isnan(float(bounds.kl_to_coverage(inf, inf)))
    assert float(bounds.kl_to_coverage(1.0, inf)) == 0.0
    assert float(bounds.kl_to_coverage_simplified(inf, 10.0)) == inf
    assert float(bounds.kl_to_coverage_simplified(1.0, math.e)) == inf
    assert float(bounds.kl_to_coverage_simplified(0.0, math.e)) == 0.0
    assert float(bounds.hellinger_to_coverage(0.1, inf)) == pytest.approx(0.2)
    assert float(bounds.hellinger_to_coverage(0.0, inf)) == 0.0
    assert float(bounds.chain_rule(0.0, 0.1, inf)) == pytest.approx(0.1)
    assert float(bounds.weak_converse_kl(1.0, inf)) == inf
    assert float(bounds.weak_converse_kl(0.0, inf)) == 0.0
    assert float(bounds.markov_coverage(inf, inf, 1.0)) == inf
    assert float(bounds.classical_kl_rate(0.0, inf)) == 0.0
    assert float(bounds.kl_scaling_law_n(inf, 1.0)) == inf
    assert float(bounds.stopped_kl_to_coverage(0.0, 5.0)) == 0.0
    # near-singular N: a valid bound (possibly +inf), never NaN or negative
    for N in [1 + 1e-15, 1 + 1e-9, 1.0001]:
        v = float(bounds.kl_to_coverage(0.5, N))
        assert v > 0 and not math.isnan(v)
    arr = bounds.kl_to_coverage(jnp.array([0.0, 1.0, inf]), jnp.array([2.0, inf, inf]))
    assert not np.any(np.isnan(np.asarray(arr)))


def test_dtype_and_broadcasting():
    x32 = jnp.asarray([0.5, 1.0], dtype=jnp.float32)
    assert bounds.kl_to_coverage(x32, 4.0).dtype == jnp.float32
    assert bounds.hellinger_to_coverage(x32, 4.0).dtype == jnp.float32
    assert bounds.kappa(jnp.float32(1.0)).dtype == jnp.float32
    out = bounds.kl_to_coverage(jnp.ones((3, 1)), jnp.array([2.0, 4.0, 8.0]))
    assert out.shape == (3, 3)
    assert bounds.mle_insample_kl(1.0, 100).dtype == jnp.float64  # int n promoted


def test_jit_and_vmap():
    assert float(jax.jit(bounds.kl_to_coverage)(1.0, 4.0)) == pytest.approx(
        1 / (math.log(4) - 0.75)
    )
    f = jax.jit(bounds.mle_linear_rate)
    assert float(f(100.0, 10.0, 1.0, 1.0)) == pytest.approx(
        float(bounds.mle_linear_rate(100.0, 10.0, 1.0, 1.0))
    )
    v = jax.vmap(bounds.hellinger_to_coverage, in_axes=(None, 0))(0.1, jnp.array([2.0, 4.0]))
    assert v.shape == (2,)
    g = jax.jit(bounds.kappa)(1.0)
    assert float(g) == pytest.approx(0.3278, abs=1e-3)
    # traced values are not validated (no error inside jit even for bad N)
    jax.jit(bounds.kl_to_coverage)(1.0, 0.5)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: bounds.kl_to_coverage(1.0, 1.0), r"kl_to_coverage: N must be > 1, got 1\.0"),
        (lambda: bounds.kl_to_coverage(-0.1, 4.0), r"kl must be >= 0.*got -0\.1"),
        (lambda: bounds.kl_to_coverage(np.nan, 4.0), r"kl .*got nan"),
        (lambda: bounds.kl_to_coverage(1.0, np.array([2.0, 0.5])), r"N must be > 1.*got 0\.5"),
        (lambda: bounds.kl_to_coverage_simplified(1.0, 2.0), r"N must be >= e.*got 2\.0"),
        (lambda: bounds.hellinger_to_coverage(1.5, 4.0), r"hellinger2 must be in \[0, 1\]"),
        (lambda: bounds.stopped_kl_to_coverage(0.1, 2.0), r"N must be > e.*got 2\.0"),
        (lambda: bounds.mle_linear_rate(-5, 10.0, 1.0, 1.0), r"n must be >= 1.*got -5\.0"),
        (
            lambda: bounds.bernoulli_missing_mass_quantile(10, 1.0),
            r"delta must be in \(0, 1\).*1\.0",
        ),
        (lambda: bounds.bernoulli_missing_mass_quantile(10, 0.0), r"delta .*got 0\.0"),
        (lambda: bounds.partial_converse(0.5, -0.2), r"delta .*got -0\.2"),
        (lambda: bounds.chain_rule(0.1, 0.1, 0.0), r"M2 must be > 0.*got 0\.0"),
        (lambda: bounds.bon_sufficiency(0.1, 0.5, 2.0), r"N must be >= 1.*got 0\.5"),
        (lambda: bounds.bon_sufficiency_general(0.7, 0.1), r"cov_M must be in \[0, 1/2\].*0\.7"),
        (lambda: bounds.weak_converse_kl(3.0, 2.0), r"sup_cov_log_n must be <= log_w_max"),
        (lambda: bounds.misspecification_coverage(1.0, 2.0), r"M must be > exp\(alpha\)"),
        (
            lambda: bounds.convex_class_bound(0.1, 1.5, 1.0, 0.0, 1.0, 0.1, 10, 0.1),
            r"N must be >= 2",
        ),
        (lambda: bounds.coarse_tightness_lower(5, 3), r"n must be >= d"),
        (lambda: bounds.vanilla_sgd_kl(10, 0.0, 1.0), r"eta must be > 0.*got 0\.0"),
        (lambda: bounds.normalized_sgd_step_size(1.0, 1.0, 10, 1.0), r"N must be > 1.*1\.0"),
        (lambda: bounds.offset_tournament_condition(100.0, 0.0), r"a must be > 0"),
        (lambda: bounds.simple_tournament_rate(0.1, 10.0, 1.5, 5, 10, 0.1), r"a must be in"),
        (lambda: bounds.c_fine(np.ones(3), np.array([0.1, 0.0, 0.3]), 10), r"epsilons must be > 0"),
        (lambda: bounds.kappa(-1.0), r"B must be >= 0.*-1\.0"),
    ],
)
def test_validation_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
