r"""Shared helpers of the SGD separation checks (``sgd_horizon``, ``sgd_lower_bound``,
``normalized_sgd_rates``): a two-prompt instance with the mechanism of the vanilla-SGD
lower bound (arXiv 2510.15020 v2, Prop. 5.1; THEORY.md §6.2) — heterogeneous gradient
scales across prompts — its exact coverage and KL in closed form, and seed × step-size
vectorised training with ``covsim.fit.sgd.train``. Private to ``theory_checks``.

**The instance** ``two_prompts(H, k)`` [project variant of ``sgd_horizon_lower_bound``,
same mechanism at a moderate B]: d = 2, V = 2 (tokens 0/1), Θ = unit ball, B = 1, two
prompts of mass ½ each, tokens i.i.d. given the prompt and independent of the prefix.

- *dense* prompt: at every position h, φ(dense, h, 1) = e_1, φ(dense, h, 0) = −e_1; its
  sequence score is Σ_h 2(y_h − q)e_1, of size ∝ H, so vanilla SGD is stable only for
  η ≲ 1/(H·B²) (the B²H/T term of Prop. 5.1);
- *sparse* prompt: informative only at the k fixed positions h < k (φ = ±e_2 there, 0
  elsewhere: those tokens are uniform under every θ and carry no likelihood ratio); its
  score is of size ∝ k, so with η ≲ 1/H it needs Ω(H/k) visits to learn θ[2].

θ⋆ = (a, b) = (0.5, √(1 − 0.25)) on the unit sphere: π_D(1 | dense) = σ(2a) = 0.73,
π_D(1 | sparse, h < k) = σ(2b) = 0.85. θ_1 = 0.

σ⋆² = E_x Var‖∇log π_θ⋆(y|x)‖² = ½·H·4p_d(1 − p_d) + ½·k·4p_s(1 − p_s) grows with H
(the dense prompt carries H informative tokens); see the check docstrings for which term
of Thm 5.1 a flatness statement in H covers.

**Exact metrics.** Given the prompt the log-likelihood ratio of a sequence depends only on
the number m of ones among the n informative positions (n = H dense, n = k sparse), and
m ~ Binomial(n, p). Hence, exactly (τ = 1e-9, as ``covsim.coverage``),

  Cov_N(θ) = Σ_x μ(x) Σ_{m=0..n_x} C(n_x, m) p_x^m (1 − p_x)^{n_x − m}
             · 1{m·log(p_x/q_x) + (n_x − m)·log((1 − p_x)/(1 − q_x)) ≥ log N − τ},
  KL(θ)    = Σ_x μ(x)·n_x·kl(p_x ‖ q_x),

with q_x = σ(2θ[x]); both are O(H) per iterate, cheap enough to evaluate at every
iterate inside the training scan (``train(metrics=...)``), so iterate averages are exact.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from covsim.fit import sgd
from covsim.instances._base import Ball, Instance
from covsim.models import LinearModel
from covsim.experiments.sharding import shard_seeds

THETA_STAR = (0.5, math.sqrt(0.75))
"""θ⋆ = (a, b), ‖θ⋆‖ = 1."""

MU = (0.5, 0.5)
"""Prompt masses (dense, sparse)."""

SPARSE_K = 8
"""Informative positions of the sparse prompt (0-based h < k)."""

B_FEATURE = 1.0
"""Feature bound B (‖φ‖ ≤ 1)."""

TAU = 1e-9


VANILLA_ETAS = tuple(2.0 ** -j for j in range(4, 12))
"""The constant step sizes vanilla SGD is run at (the lower bound quantifies over η)."""
TINY_ETAS = tuple(2.0 ** -j for j in (5, 7, 9))


def separation_sizes(size: str):
    """(horizons, T, vanilla η grid) of a size, shared by sgd_horizon and sgd_lower_bound."""
    if size == "tiny":
        return [8, 128], 1000, TINY_ETAS
    if size == "quick":
        return [8, 32, 128], 10_000, VANILLA_ETAS
    return [8, 32, 128, 512], 100_000, VANILLA_ETAS


def two_prompts(H: int, k: int = SPARSE_K) -> Instance:
    """The two-prompt instance (module docstring) as an :class:`Instance`."""
    if not 1 <= k <= H:
        raise ValueError(f"two_prompts: need 1 <= k <= H, got k={k}, H={H}")
    feat = np.zeros((2, H, 1, 2, 2))
    feat[0, :, 0, 1, 0], feat[0, :, 0, 0, 0] = 1.0, -1.0
    feat[1, :k, 0, 1, 1], feat[1, :k, 0, 0, 1] = 1.0, -1.0
    features = jnp.asarray(feat)
    theta_star = jnp.asarray(THETA_STAR)
    truth = LinearModel(features, theta_star, horizon=H)
    p = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(THETA_STAR)))
    n = np.array([H, k], dtype=float)
    sigma2 = float(np.sum(np.asarray(MU) * n * 4.0 * p * (1 - p)))
    info = {"B": B_FEATURE, "d": 2, "H": H, "k": k, "theta_star": theta_star, "sigma2": sigma2,
            "p": p, "n_informative": n, "theta_init": jnp.zeros(2)}
    return Instance("two_prompts", truth, jnp.asarray(MU), features, Ball(1.0), info=info)


def sigma2_star(H: int, k: int = SPARSE_K) -> float:
    p = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(THETA_STAR)))
    return float(np.sum(np.asarray(MU) * np.array([H, k]) * 4.0 * p * (1 - p)))


def _binomial_coverage(log_coef, lp1, lq1, log_n):
    """P_{m ~ Bin(n, p)}[m·log(p/q) + (n − m)·log((1−p)/(1−q)) ≥ log N − τ]; log_coef (n+1,)."""
    n = log_coef.shape[0] - 1
    lp0, lq0 = jnp.log1p(-jnp.exp(lp1)), jnp.log1p(-jnp.exp(lq1))
    m = jnp.arange(n + 1.0)
    log_pmf = log_coef + m * lp1 + (n - m) * lp0
    ratio = m * (lp1 - lq1) + (n - m) * (lp0 - lq0)
    return jnp.sum(jnp.where(ratio >= log_n - TAU, jnp.exp(log_pmf), 0.0))


def _log_binom(n: int):
    m = np.arange(n + 1.0)
    return jnp.asarray(gammaln(n + 1.0) - gammaln(m + 1.0) - gammaln(n - m + 1.0))


def exact_coverage(theta, N: float, H: int, k: int = SPARSE_K):
    """Cov_N(π_D‖π_θ) on ``two_prompts(H, k)``, exact (module docstring)."""
    log_n = math.log(N)
    star = jnp.asarray(THETA_STAR)
    lp = jax.nn.log_sigmoid(2.0 * star)
    lq = jax.nn.log_sigmoid(2.0 * theta)
    return (MU[0] * _binomial_coverage(_log_binom(H), lp[0], lq[0], log_n)
            + MU[1] * _binomial_coverage(_log_binom(k), lp[1], lq[1], log_n))


def exact_kl(theta, H: int, k: int = SPARSE_K):
    """D_KL(π_D‖π_θ) on ``two_prompts(H, k)``, exact."""
    star = jnp.asarray(THETA_STAR)
    lp1, lq1 = jax.nn.log_sigmoid(2.0 * star), jax.nn.log_sigmoid(2.0 * theta)
    lp0, lq0 = jax.nn.log_sigmoid(-2.0 * star), jax.nn.log_sigmoid(-2.0 * theta)
    per_token = jnp.exp(lp1) * (lp1 - lq1) + jnp.exp(lp0) * (lp0 - lq0)
    return MU[0] * H * per_token[0] + MU[1] * k * per_token[1]


@functools.cache
def metric_fns(H: int, k: int, N: float):
    """Cached (same objects across calls, so ``train`` does not retrace) exact metrics:
    ``{"cov": Cov_N, "kl": KL}`` as functions of θ."""

    def cov(theta):
        return exact_coverage(theta, N, H, k)

    def kl(theta):
        return exact_kl(theta, H, k)

    return {"cov": cov, "kl": kl}


@functools.cache
def _instance(H: int, k: int):
    return two_prompts(H, k)


def theorem_normalized(N: float, *, B: float = B_FEATURE, sigma2: float, T: int):
    """Thm 5.1's constants (THEORY §6.3): η = min{1/(128B), (log N/(σ⋆²T))^{1/4}},
    λ = log N/(16η); returns (η, λ) and asserts λ ≥ 8B·log N and ηλ ≤ log N/16."""
    log_n = math.log(N)
    eta = min(1.0 / (128.0 * B), (log_n / (sigma2 * T)) ** 0.25 if sigma2 > 0 else math.inf)
    lam = log_n / (16.0 * eta)
    assert lam >= 8.0 * B * log_n * (1 - 1e-12) and eta * lam <= log_n / 16.0 * (1 + 1e-12)
    return eta, lam


def train_grid(*, H: int, k: int, N: float, T: int, method: str, etas, lams=None, K: int = 1,
               key, num_seeds: int, checkpoints=None, theta_init=None):
    """``sgd.train`` vmapped over step sizes (outer) and seeds (inner); every step size uses
    the *same* seed keys, so every arm sees the same data streams (the sampled sequences
    depend on the key, K and H only, not on θ). Exact Cov_N and KL are averaged over every
    iterate inside the scan. `theta_init`: θ_1 (default 0). Returns the TrainResult with
    leading axes (E, S)."""
    inst = _instance(H, k)
    learner = inst.model(inst.info["theta_init"] if theta_init is None else jnp.asarray(theta_init))
    metrics = metric_fns(H, k, float(N))
    etas = jnp.asarray(etas, dtype=jnp.float64)
    lams = jnp.zeros_like(etas) if lams is None else jnp.asarray(lams, dtype=jnp.float64)
    keys = shard_seeds(jax.random.split(key, num_seeds))
    ckpts = (T,) if checkpoints is None else tuple(checkpoints)

    def one(eta, lam, kk):
        config = sgd.SGDConfig(method, eta, lam=lam if method == "normalized" else None, batch_size=K)
        return sgd.train(learner, inst.truth, inst.mu, config, num_steps=T, key=kk,
                         constraint=inst.constraint, checkpoints=ckpts, metrics=metrics)

    return jax.vmap(lambda e, lam: jax.vmap(lambda kk: one(e, lam, kk))(keys))(etas, lams)


def per_seed_matrix(table, x_name: str, y_name: str, **filters):
    """(x values (C,), per-seed values (C, S)) of `y_name` grouped by `x_name`."""
    x, _, _, ys = table.group_mean(x_name, y_name, **filters)
    return np.asarray(x, dtype=float), np.asarray(ys, dtype=float)
