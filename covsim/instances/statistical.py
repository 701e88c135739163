r"""Named constructions for the statistical (MLE) results of arXiv 2510.15020.

One public function per construction of ``docs/CONSTRUCTIONS.md`` §§1–6, 9, 10, each
returning an :class:`~covsim.instances._base.Instance`, plus the closed-form predictions
and closed-form learners of each construction as separate functions (an ``Instance`` is a
pytree, so callables are not stored in ``info``).

Conventions (shared by every function here):

- Positions are 0-based in covsim (``h = 0 .. H-1``); CONSTRUCTIONS.md numbers them
  1..H. Conversions are stated where they matter.
- Arrays are built with ``jnp`` in the default floating dtype (float64 once the caller
  enables x64), or in ``dtype=`` where the construction takes that keyword.
- ``info["B"]`` is always :math:`\sup\|\psi\|_2` of the learner's features (where the
  construction has features), ``info["theta_star"]`` the true parameter, ``info["sigma2"]``
  the exact σ⋆² (v2 Eq. 8) computed in closed form, ``info["d"]`` the dimension.
- Constructions with a random truth take ``key`` (keyword-only, required) and can be built
  inside ``jax.vmap`` over seed keys; every other argument is a static Python number.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import gammaln, xlog1py, xlogy

from covsim import bounds
from covsim._validate import check_key, check_positive_int, check_real, require
from covsim.exact import TIE_TOLERANCE
from covsim.instances._base import Ball, Box, Instance
from covsim.models import LinearModel, TabularModel

__all__ = [
    # §1
    "bernoulli_missing_mass",
    "bernoulli_mle",
    "bernoulli_linear_mle_theta",
    "bernoulli_missing_mass_prob_zero",
    "bernoulli_expected_coverage",
    "bernoulli_expected_kl",
    # §2
    "bernoulli_tightness_pair",
    "bernoulli_tightness_kl",
    "bernoulli_tightness_coverage",
    # §3
    "kl_horizon_lower_bound",
    "kl_horizon_mle",
    "kl_horizon_kl",
    "kl_horizon_coverage",
    "kl_horizon_kl_when_unseen",
    "kl_horizon_prob_unseen",
    "kl_horizon_expected_kl",
    "kl_horizon_expected_coverage",
    # §4
    "coarse_tightness",
    "coarse_tightness_expected_coverage",
    "coarse_tightness_mle_theta",
    # §5
    "fine_tightness",
    "fine_tightness_parameters",
    "fine_tightness_truth",
    "fine_tightness_model",
    "fine_tightness_counts",
    "fine_tightness_mle",
    "fine_tightness_fit",
    "fine_tightness_coverage",
    # §6
    "variance_lower_bound",
    "variance_lower_bound_parameters",
    "variance_lower_bound_rate",
    # §9
    "pivotal_tokens",
    "pivotal_tokens_positions",
    "pivotal_tokens_sigma2",
    # §10
    "horizon_mixture",
    "horizon_mixture_unseen_share",
    "horizon_mixture_expected_kl",
    "horizon_mixture_expected_coverage",
]

_LOG2 = math.log(2.0)


# ---------------------------------------------------------------------------
# helpers


def _float_dtype(dtype=None):
    """``dtype`` if given, else the default floating dtype (float64 under x64)."""
    return jnp.result_type(float) if dtype is None else jnp.dtype(dtype)


# argument checks: the package's one validation module (one message format)
_require = require
_check_int = check_positive_int
_check_real = check_real


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _kappa(B: float) -> float:
    """κ(B) of :func:`covsim.bounds.kappa` as a Python float, also while a caller is traced."""
    with jax.ensure_compile_time_eval():
        return float(bounds.kappa(B))


def _binary_entropy(s: float) -> float:
    return -sum(t * math.log(t) for t in (s, 1.0 - s) if t > 0)


def _log_binom_pmf(k, n, p):
    r"""log Bin(k; n, p) in log space (p may be 0 or 1; ``k``, ``n`` integer-valued arrays)."""
    k = jnp.asarray(k, dtype=jnp.result_type(float))
    n = jnp.asarray(n, dtype=k.dtype)
    log_choose = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return log_choose + xlogy(k, p) + xlog1py(n - k, -p)


def _bernoulli_logits(p) -> Array:
    """Logits ``[log(1-p), log p]`` (``-inf`` where a probability is 0)."""
    p = jnp.asarray(p, dtype=jnp.result_type(p, float))
    return jnp.stack([jnp.log1p(-p), jnp.log(p)], axis=-1)


# ---------------------------------------------------------------------------
# §1 bernoulli_missing_mass


def bernoulli_missing_mass(p_star, *, linear: bool = False, B: float = 10.0) -> Instance:
    r"""Bernoulli missing mass (CONSTRUCTIONS §1; arXiv 2510.15020 v2, §3 case study, Remark 3.1).

    One prompt, H = 1, V = {0, 1}, π_D = Ber(p⋆). Tabular class Π = {Ber(p) : p ∈ [0, ½]}
    (the closure of the paper's (0, ½)); its MLE is p̂ = min(k/n, ½) (:func:`bernoulli_mle`),
    which is 0 with probability (1 − p⋆)^n, so E KL = +∞ while Cov_N(π̂) = p⋆·1{p̂ ≤ p⋆/N}.

    With ``linear=True`` (variant ``bernoulli_missing_mass_linear``): ψ(⊥, 1, BOS, v) = B·1{v = 1},
    Θ = [−1, 0], p = σ(Bθ), θ⋆ = logit(p⋆)/B; then p̂ ≥ σ(−B) and KL stays finite (≈ p⋆(B + log p⋆)
    when k = 0) while coverage is unchanged for N ≤ p⋆e^B.

    **Arguments:**

    - `p_star`: the truth's success probability, 0 < p⋆ ≤ ½ (and p⋆ ≥ σ(−B) when ``linear``).
    - `linear`: build the AR-linear variant.
    - `B`: feature scale of the linear variant.

    **Returns:** an :class:`Instance`. ``info``: ``p_star``, ``p_max`` (= ½), ``n_prompts``;
    linear variant also ``B``, ``d`` (= 1), ``theta_star`` (1,), ``sigma2`` = B²p⋆(1−p⋆),
    ``p_min`` = σ(−B), ``log_N_max`` = log(p⋆) + B (coverage unchanged for N ≤ p⋆e^B).
    """
    where = "bernoulli_missing_mass"
    p_star = _check_real(p_star, "p_star", where)
    _require(0.0 < p_star <= 0.5, where, f"p_star must be in (0, 1/2], got {p_star!r}")
    dtype = _float_dtype()
    mu = jnp.ones((1,), dtype=dtype)
    info = {"p_star": p_star, "p_max": 0.5, "n_prompts": 1}
    if not linear:
        truth = TabularModel(_bernoulli_logits(jnp.asarray(p_star, dtype=dtype)).reshape(1, 1, 1, 2), horizon=1)
        return Instance("bernoulli_missing_mass", truth, mu, info=info)
    B = _check_real(B, "B", where)
    _require(B > 0, where, f"B must be > 0, got {B!r}")
    p_min = _sigmoid(-B)
    _require(
        p_star >= p_min, where,
        f"with linear=True p_star must be >= sigmoid(-B) = {p_min:.3g} so that theta* is in [-1, 0], got {p_star!r}",
    )
    features = jnp.asarray([0.0, B], dtype=dtype).reshape(1, 1, 1, 2, 1)
    theta_star = jnp.asarray([math.log(p_star) - math.log1p(-p_star)], dtype=dtype) / B
    truth = LinearModel(features, theta_star, horizon=1)
    constraint = Box(jnp.asarray([-1.0], dtype=dtype), jnp.asarray([0.0], dtype=dtype))
    info.update(
        B=B, d=1, theta_star=theta_star, sigma2=B * B * p_star * (1.0 - p_star),
        p_min=p_min, log_N_max=math.log(p_star) + B,
    )
    return Instance("bernoulli_missing_mass_linear", truth, mu, features, constraint, info=info)


def bernoulli_mle(k, n) -> TabularModel:
    r"""The tabular MLE of §1 as a model: p̂ = min(k/n, ½), logit −∞ for a zero probability.

    arXiv 2510.15020 v2, §3 (Bernoulli case study). Vmappable in ``k`` and ``n``.

    **Arguments:** `k` number of ones, `n` sample size (scalars, may be traced).

    **Returns:** a :class:`TabularModel` with logits ``(1, 1, 1, 2)``.
    """
    p_hat = jnp.minimum(jnp.asarray(k, dtype=jnp.result_type(float)) / n, 0.5)
    return TabularModel(_bernoulli_logits(p_hat).reshape(1, 1, 1, 2), horizon=1)


def bernoulli_linear_mle_theta(k, n, B: float = 10.0) -> Array:
    r"""MLE of the linear variant of §1: θ̂ = clip(logit(k/n)/B, −1, 0), shape ``(1,)``.

    Equivalently p̂ = clip(k/n, σ(−B), ½). Vmappable in ``k``, ``n``.
    """
    freq = jnp.asarray(k, dtype=jnp.result_type(float)) / n
    logit = jnp.log(freq) - jnp.log1p(-freq)  # -inf at k = 0
    return jnp.clip(logit / B, -1.0, 0.0).reshape(1)


def bernoulli_missing_mass_prob_zero(p_star, n) -> Array:
    r"""P(p̂ = 0) = (1 − p⋆)^n (CONSTRUCTIONS §1; v2 §3)."""
    return jnp.exp(n * jnp.log1p(-jnp.asarray(p_star, dtype=jnp.result_type(float))))


def _bernoulli_fit_probs(p_star, n: int, linear: bool, B: float):
    """All outcomes k = 0..n: log-pmf and the fitted log p̂, log(1 − p̂)."""
    ks = jnp.arange(n + 1, dtype=jnp.result_type(float))
    log_pmf = _log_binom_pmf(ks, n, p_star)
    p_hat = jnp.minimum(ks / n, 0.5)
    if linear:
        p_hat = jnp.maximum(p_hat, _sigmoid(-B))
    return log_pmf, jnp.log(p_hat), jnp.log1p(-p_hat)


def bernoulli_expected_coverage(p_star, n: int, N, *, linear: bool = False, B: float = 10.0) -> Array:
    r"""Exact E Cov_N(π̂) of the §1 MLE by a binomial sum (v2 §3; THEORY §5.1).

    .. math::

        \mathbb{E}\,\mathrm{Cov}_N = \sum_{k=0}^n \mathrm{Bin}(k; n, p_\star)\big[
        p_\star 1\{\log\tfrac{p_\star}{\hat p_k} \ge \log N\} +
        (1-p_\star) 1\{\log\tfrac{1-p_\star}{1-\hat p_k} \ge \log N\}\big],

    with p̂_k = min(k/n, ½) (clipped below at σ(−B) when ``linear``) and ties counted with
    covsim's tolerance. For N ≥ 2 the second term vanishes and this equals
    p⋆·P(Bin(n, p⋆) ≤ n p⋆/N).

    **Arguments:** `p_star` scalar; `n` static int; `N` thresholds ≥ 1 (any shape).

    **Returns:** an array of the shape of ``N``.
    """
    n = _check_int(n, "n", "bernoulli_expected_coverage")
    p_star = jnp.asarray(p_star, dtype=jnp.result_type(float))
    log_pmf, log_p, log_q = _bernoulli_fit_probs(p_star, n, linear, B)
    log_n = jnp.log(jnp.asarray(N, dtype=p_star.dtype))[..., None] - TIE_TOLERANCE
    pmf = jnp.exp(log_pmf)
    ones = p_star * ((jnp.log(p_star) - log_p) >= log_n)
    zeros = (1.0 - p_star) * ((jnp.log1p(-p_star) - log_q) >= log_n)
    return jnp.sum(pmf * (ones + zeros), axis=-1)


def bernoulli_expected_kl(p_star, n: int, *, linear: bool = False, B: float = 10.0) -> Array:
    r"""Exact E KL(π_D‖π̂) of the §1 MLE: +∞ for the tabular class, a binomial sum for ``linear``.

    arXiv 2510.15020 v2, §3 and Remark 3.1.
    """
    n = _check_int(n, "n", "bernoulli_expected_kl")
    p_star = jnp.asarray(p_star, dtype=jnp.result_type(float))
    log_pmf, log_p, log_q = _bernoulli_fit_probs(p_star, n, linear, B)
    kl = p_star * (jnp.log(p_star) - log_p) + (1.0 - p_star) * (jnp.log1p(-p_star) - log_q)
    return jnp.sum(jnp.exp(log_pmf) * kl)


# ---------------------------------------------------------------------------
# §2 bernoulli_tightness_pair


def bernoulli_tightness_pair(p, N) -> Instance:
    r"""Tightness pair of the KL→coverage bound (CONSTRUCTIONS §2; arXiv 2510.15020 v2, Prop. D.2).

    π_D = Ber(p), candidate π̂ = Ber(p/N), one prompt, H = 1. Cov_N(π̂) = p (the ratio at
    y = 1 is exactly N: a designed tie, counted) and
    KL = p log N + (1−p) log((1−p)/(1−p/N)).

    **Arguments:** `p` ∈ (0, ½]; `N` ≥ 2.

    **Returns:** an :class:`Instance` with ``candidates = (Ber(p/N),)``; ``info``: ``p``, ``N``,
    ``kl`` and ``coverage`` (the closed forms).
    """
    where = "bernoulli_tightness_pair"
    p = _check_real(p, "p", where)
    N = _check_real(N, "N", where)
    _require(0.0 < p <= 0.5, where, f"p must be in (0, 1/2], got {p!r}")
    _require(N >= 2.0, where, f"N must be >= 2, got {N!r}")
    dtype = _float_dtype()
    p_arr = jnp.asarray(p, dtype=dtype)
    truth = TabularModel(_bernoulli_logits(p_arr).reshape(1, 1, 1, 2), horizon=1)
    # log(p/N) written as log p − log N so that the designed tie is exact.
    cand_logits = jnp.stack([jnp.log1p(-p_arr / N), jnp.log(p_arr) - jnp.log(N)]).reshape(1, 1, 1, 2)
    candidate = TabularModel(cand_logits, horizon=1)
    kl = p * math.log(N) + (1.0 - p) * (math.log1p(-p) - math.log1p(-p / N))
    info = {"p": p, "N": N, "kl": kl, "coverage": p}
    return Instance("bernoulli_tightness_pair", truth, jnp.ones((1,), dtype=dtype),
                    candidates=(candidate,), info=info)


def bernoulli_tightness_kl(p, N) -> Array:
    r"""KL(Ber(p)‖Ber(p/N)) = p log N + (1−p) log((1−p)/(1−p/N)) (v2 Prop. D.2)."""
    p = jnp.asarray(p, dtype=jnp.result_type(p, float))
    N = jnp.asarray(N, dtype=p.dtype)
    return p * jnp.log(N) + (1.0 - p) * (jnp.log1p(-p) - jnp.log1p(-p / N))


def bernoulli_tightness_coverage(p, N) -> Array:
    r"""Cov_N(Ber(p/N)) under Ber(p) = p for N ≥ 2 (v2 Prop. D.2; tie counted)."""
    p = jnp.asarray(p, dtype=jnp.result_type(p, float))
    return jnp.broadcast_to(p, jnp.broadcast_shapes(p.shape, jnp.shape(N)))


# ---------------------------------------------------------------------------
# §3 kl_horizon_lower_bound


def kl_horizon_lower_bound(n: int, H: int, *, B: float = 1.0, key) -> Instance:
    r"""Sequence KL ∝ H/n for proper learners (CONSTRUCTIONS §3; arXiv 2510.15020 v2, Prop. 3.2, App. G).

    Prompts {0, 1} with μ(1) = 1/(2n); V = {0, 1} standing for {−1, +1}; d = 1,
    ψ(0, ·) = 0, ψ(1, h, u, v) = B(2v − 1); Θ = [−1, 1]; θ⋆ ∈ {−1, +1} uniform (drawn
    with ``key``). On prompt 1 tokens are i.i.d. with P(+1) = σ(2Bθ⋆).

    Features are stored ``(2, 1, 1, 2, 1)`` (ψ ignores h and u).

    **Arguments:** `n` sample size (sets μ); `H` horizon; `B` feature scale; `key` PRNG key.

    **Returns:** an :class:`Instance`. ``info``: ``B``, ``d`` (1), ``n``, ``H``, ``mu1`` = 1/(2n),
    ``theta_star`` (1,), ``kappa`` = κ(B), ``sigma2`` = μ(1)·H·4B²s(1−s) with s = σ(2B),
    ``prob_unseen`` = (1 − 1/(2n))^n, ``kl_when_unseen`` = κ(B)·H/(2n), ``coverage_max`` = 1/(2n).
    """
    where = "kl_horizon_lower_bound"
    check_key(key, where)
    n = _check_int(n, "n", where)
    H = _check_int(H, "H", where)
    B = _check_real(B, "B", where)
    _require(B > 0, where, f"B must be > 0, got {B!r}")
    dtype = _float_dtype()
    mu1 = 1.0 / (2 * n)
    mu = jnp.asarray([1.0 - mu1, mu1], dtype=dtype)
    features = jnp.asarray([[0.0, 0.0], [-B, B]], dtype=dtype).reshape(2, 1, 1, 2, 1)
    theta_star = jnp.where(jax.random.bernoulli(key, 0.5), 1.0, -1.0).astype(dtype).reshape(1)
    truth = LinearModel(features, theta_star, horizon=H)
    constraint = Box(jnp.asarray([-1.0], dtype=dtype), jnp.asarray([1.0], dtype=dtype))
    s = _sigmoid(2.0 * B)
    kappa = _kappa(B)
    info = {
        "B": B, "d": 1, "n": n, "H": H, "mu1": mu1, "theta_star": theta_star, "kappa": kappa,
        "sigma2": mu1 * H * 4.0 * B * B * s * (1.0 - s),
        "prob_unseen": math.exp(n * math.log1p(-mu1)),
        "kl_when_unseen": kl_horizon_kl_when_unseen(n, H, B=B),
        "coverage_max": mu1,
    }
    return Instance("kl_horizon_lower_bound", truth, mu, features, constraint, info=info)


def kl_horizon_mle(x, y, *, B: float = 1.0) -> Array:
    r"""The MLE of §3 from a dataset (v2 Prop. 3.2).

    m := #{i : x_i = 1}. If m = 0, θ̂ = 0 (minimum-norm convention); otherwise
    θ̂ = clip(atanh(ȳ)/B, −1, 1) with ȳ the mean of the m·H signed tokens (2y − 1).

    **Arguments:** `x` prompts ``(n,)``, `y` responses ``(n, H)`` (tokens in {0, 1}).

    **Returns:** θ̂ of shape ``(1,)``. Vmappable over datasets.
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    on_rare = (x == 1)[:, None]
    count = jnp.sum(on_rare) * y.shape[-1]
    signed = jnp.sum(jnp.where(on_rare, 2 * y - 1, 0)).astype(jnp.result_type(float))
    mean = signed / jnp.maximum(count, 1)
    theta = jnp.clip(jnp.arctanh(mean) / B, -1.0, 1.0)
    return jnp.where(count > 0, theta, 0.0).reshape(1)


def _kl_horizon_logs(theta, B):
    """(log q, log(1-q)) with q = σ(2Bθ)."""
    z = 2.0 * B * jnp.asarray(theta, dtype=jnp.result_type(theta, float))
    return jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)


def kl_horizon_kl(theta_star, theta_hat, n: int, H: int, *, B: float = 1.0) -> Array:
    r"""KL(π_D‖π_θ̂) = μ(1)·H·KL(Ber(σ(2Bθ⋆))‖Ber(σ(2Bθ̂))) (CONSTRUCTIONS §3; v2 Prop. 3.2)."""
    ls, l1s = _kl_horizon_logs(jnp.reshape(theta_star, ()), B)
    lq, l1q = _kl_horizon_logs(jnp.reshape(theta_hat, ()), B)
    per_token = jnp.exp(ls) * (ls - lq) + jnp.exp(l1s) * (l1s - l1q)
    return H / (2.0 * n) * per_token


def _kl_horizon_cov_given(ls, l1s, lq, l1q, H: int, log_t):
    """μ(1)-free coverage P(Λ ≥ log t) with Λ = k log(s/q) + (H−k) log((1−s)/(1−q)), k ~ Bin(H, s)."""
    ks = jnp.arange(H + 1, dtype=ls.dtype)
    log_pmf = _log_binom_pmf(ks, H, jnp.exp(ls))
    lam = ks * (ls - lq)[..., None] + (H - ks) * (l1s - l1q)[..., None]
    return jnp.sum(jnp.exp(log_pmf) * (lam >= log_t - TIE_TOLERANCE), axis=-1)


def kl_horizon_coverage(theta_star, theta_hat, n: int, H: int, N, *, B: float = 1.0) -> Array:
    r"""Exact Cov_N(π_θ̂) on §3: μ(1)·P_{k∼Bin(H,s)}(Λ_k ≥ log N) (v2 Prop. 3.2).

    Λ_k = k log(s/q̂) + (H−k) log((1−s)/(1−q̂)), s = σ(2Bθ⋆), q̂ = σ(2Bθ̂); prompt 0 never
    contributes (both laws uniform there). ``N`` may have any shape.
    """
    ls, l1s = _kl_horizon_logs(jnp.reshape(theta_star, ()), B)
    lq, l1q = _kl_horizon_logs(jnp.reshape(theta_hat, ()), B)
    log_t = jnp.log(jnp.asarray(N, dtype=ls.dtype))[..., None]
    return _kl_horizon_cov_given(ls, l1s, lq, l1q, H, log_t) / (2.0 * n)


def kl_horizon_kl_when_unseen(n: int, H: int, *, B: float = 1.0) -> float:
    r"""KL on the event m = 0 (θ̂ = 0): κ(B)·H/(2n) (THEORY §5.2 [correction])."""
    return _kappa(B) * H / (2.0 * n)


def kl_horizon_prob_unseen(n: int) -> Array:
    r"""P(m = 0) = (1 − 1/(2n))^n ≥ ½ (→ e^{−½} ≈ 0.61)."""
    return jnp.exp(n * jnp.log1p(-jnp.asarray(1.0 / (2 * n), dtype=jnp.result_type(float))))


@functools.partial(jax.jit, static_argnames=("n", "H", "m_max"))
def _kl_horizon_expectations(log_t: Array, B, *, n: int, H: int, m_max: int):
    """(E KL, E Cov at each log threshold) of the §3 MLE, truncated at m ≤ m_max.

    θ⋆ = +1 without loss of generality (flipping θ⋆ and every token maps the MLE to
    its mirror image and leaves KL and coverage unchanged). One fixed-shape computation:
    rows m = 1..m_max, columns k = 0..m_max·H (masked beyond mH).
    """
    dtype = log_t.dtype
    z = 2.0 * jnp.asarray(B, dtype=dtype)
    ls, l1s = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)  # log s, log(1 − s)
    mu1 = 1.0 / (2 * n)
    ms = jnp.arange(1, m_max + 1, dtype=dtype)
    counts = ms * H
    ks = jnp.arange(m_max * H + 1, dtype=dtype)
    valid = ks[None, :] <= counts[:, None]
    k_safe = jnp.minimum(ks[None, :], counts[:, None])
    weights = jnp.where(valid, jnp.exp(_log_binom_pmf(k_safe, counts[:, None], jnp.exp(ls))), 0.0)
    # q̂ = σ(2Bθ̂) with θ̂ = clip(atanh(ȳ)/B, −1, 1)  ⇔  q̂ = clip(k/(mH), σ(−2B), σ(2B))
    freq = k_safe / counts[:, None]
    lq = jnp.clip(jnp.log(freq), l1s, ls)
    l1q = jnp.clip(jnp.log1p(-freq), l1s, ls)
    row_mass = jnp.exp(_log_binom_pmf(ms, n, mu1))
    unseen_mass = jnp.exp(_log_binom_pmf(0, n, mu1))

    def kl_of(lq_, l1q_):
        return H / (2.0 * n) * (jnp.exp(ls) * (ls - lq_) + jnp.exp(l1s) * (l1s - l1q_))

    half = jnp.asarray(-_LOG2, dtype=dtype)
    expected_kl = unseen_mass * kl_of(half, half) + jnp.sum(row_mass * jnp.sum(weights * kl_of(lq, l1q), axis=1))

    def cov_row(args):
        lq_row, l1q_row, w_row = args
        per_threshold = [
            w_row @ _kl_horizon_cov_given(ls, l1s, lq_row, l1q_row, H, log_t[i]) for i in range(log_t.shape[0])
        ]
        return jnp.stack(per_threshold) if per_threshold else jnp.zeros((0,), dtype)

    rows = jax.lax.map(cov_row, (lq, l1q, weights))  # (m_max, T)
    unseen_cov = jax.vmap(lambda lt: _kl_horizon_cov_given(ls, l1s, half, half, H, lt))(log_t)
    expected_cov = (unseen_mass * unseen_cov + row_mass @ rows) / (2.0 * n)
    return expected_kl, expected_cov


def kl_horizon_expected_kl(n: int, H: int, *, B: float = 1.0, m_max: int = 12) -> Array:
    r"""E KL(π_D‖π̂) of the §3 MLE, exact up to truncating m = #{x_i = 1} at ``m_max``.

    .. math::

        \mathbb{E}\,\mathrm{KL} = \sum_{m=0}^{m_{\max}} \mathrm{Bin}(m; n, \tfrac1{2n})
        \sum_{k=0}^{mH}\mathrm{Bin}(k; mH, s)\,\tfrac{H}{2n}\mathrm{KL}(\mathrm{Ber}(s)\|\mathrm{Ber}(\hat q_k)),

    s = σ(2B), q̂_k = clip(k/(mH), σ(−2B), σ(2B)) (m = 0: q̂ = ½, giving κ(B)·H/(2n)).
    The truncation error is ≤ P(m > m_max)·(H/(2n))·KL(Ber(s)‖Ber(σ(−2B))) (m ≈ Poisson(½):
    P(m > 12) < 1e-13). ≈ 0.61·κ(B)·H/(2n). arXiv 2510.15020 v2, Prop. 3.2.
    """
    n = _check_int(n, "n", "kl_horizon_expected_kl")
    H = _check_int(H, "H", "kl_horizon_expected_kl")
    m_max = _check_int(m_max, "m_max", "kl_horizon_expected_kl")
    log_t = jnp.zeros((0,), dtype=jnp.result_type(float))
    return _kl_horizon_expectations(log_t, B, n=n, H=H, m_max=min(m_max, n))[0]


def kl_horizon_expected_coverage(n: int, H: int, N, *, B: float = 1.0, m_max: int = 12) -> Array:
    r"""E Cov_N(π̂) of the §3 MLE, exact up to truncating m at ``m_max`` (error ≤ μ(1)·P(m > m_max)).

    Same sum as :func:`kl_horizon_expected_kl` with the per-fit coverage
    μ(1)·P_{k′∼Bin(H,s)}(Λ ≥ log N). ≤ 1/(2n) always; ≈ 0.61/(2n) once H·κ(B) ≫ log N.
    ``N`` may have any shape. Work O(m_max²·H²) per threshold. arXiv 2510.15020 v2, Prop. 3.2.
    """
    n = _check_int(n, "n", "kl_horizon_expected_coverage")
    H = _check_int(H, "H", "kl_horizon_expected_coverage")
    m_max = _check_int(m_max, "m_max", "kl_horizon_expected_coverage")
    log_t = jnp.log(jnp.asarray(N, dtype=jnp.result_type(float)))
    cov = _kl_horizon_expectations(log_t.reshape(-1), B, n=n, H=H, m_max=min(m_max, n))[1]
    return cov.reshape(log_t.shape)


# ---------------------------------------------------------------------------
# §4 coarse_tightness


def coarse_tightness(n: int, d: int, *, B: float | None = None) -> Instance:
    r"""Tightness of the coarse term (CONSTRUCTIONS §4; arXiv 2510.15020 v2, Prop. 4.1(a), App. H.3).

    One prompt, H = 1, V = d; ψ(⊥, 1, BOS, v) = B·e_v; Θ = [−1, 1]^d (an ℓ∞ ball: Assumption 2.2
    deliberately fails); θ⋆ = (log(4n)/(2B))·(e_1 − Σ_{j≥2} e_j), so π_D(0) = 4n/(d−1+4n) and
    π_D(v) = 1/(d−1+4n) for v ≥ 1 (0-based token 0 is the paper's label 1).

    **Arguments:** `n` sample size, `d` dimension (n ≥ d ≥ 2); `B` ≥ log(5n) (default log(5n) + 1).

    **Returns:** an :class:`Instance`. ``info``: ``B``, ``d``, ``n``, ``theta_star`` (d,),
    ``sigma2`` = B²(1 − Σ_v π_D(v)²), ``pi_top``, ``pi_rest``, ``log_N_max`` = B (coverage flat
    for 2 ≤ N ≤ e^B), ``coverage_lower`` = (d−1)/(10n) (holds w.p. ≥ ½),
    ``expected_coverage`` (:func:`coarse_tightness_expected_coverage`).
    """
    where = "coarse_tightness"
    n = _check_int(n, "n", where)
    d = _check_int(d, "d", where, minimum=2)
    _require(n >= d, where, f"need n >= d, got n={n}, d={d}")
    B = math.log(5 * n) + 1.0 if B is None else _check_real(B, "B", where)
    _require(B >= math.log(5 * n), where, f"B must be >= log(5n) = {math.log(5 * n):.4g}, got {B!r}")
    dtype = _float_dtype()
    features = (B * jnp.eye(d, dtype=dtype)).reshape(1, 1, 1, d, d)
    scale = math.log(4 * n) / (2.0 * B)
    theta_star = scale * jnp.concatenate([jnp.ones((1,), dtype), -jnp.ones((d - 1,), dtype)])
    truth = LinearModel(features, theta_star, horizon=1)
    constraint = Box(-jnp.ones((d,), dtype), jnp.ones((d,), dtype))
    z = d - 1 + 4 * n
    pi_top, pi_rest = 4 * n / z, 1 / z
    info = {
        "B": B, "d": d, "n": n, "theta_star": theta_star,
        "sigma2": B * B * (1.0 - pi_top**2 - (d - 1) * pi_rest**2),
        "pi_top": pi_top, "pi_rest": pi_rest, "log_N_max": B,
        "coverage_lower": (d - 1) / (10.0 * n),
        "expected_coverage": (d - 1) / z * math.exp(n * math.log1p(-1.0 / z)),
    }
    return Instance("coarse_tightness", truth, jnp.ones((1,), dtype), features, constraint, info=info)


def coarse_tightness_expected_coverage(n, d) -> Array:
    r"""E π_D(unseen labels 2..d) = ((d−1)/(d−1+4n))·(1 − 1/(d−1+4n))^n ≈ 0.19(d−1)/n.

    This is E Cov_N(π̂) for 2 ≤ N ≤ e^B on the event that label 1 is the most frequent
    (w.h.p.): Cov_N(π̂) = π_D(unseen labels) (v2 Prop. 4.1(a); CONSTRUCTIONS §4).
    """
    z = jnp.asarray(d - 1 + 4 * n, dtype=jnp.result_type(float))
    return (d - 1) / z * jnp.exp(n * jnp.log1p(-1.0 / z))


def coarse_tightness_mle_theta(counts, B: float) -> tuple[Array, Array]:
    r"""Closed-form KKT solution of the §4 box-constrained MLE (v2 Prop. 4.1(a), App. H.3).

    With counts n_v, ℓ = #unseen labels and j = argmax n_v: θ̂_j = 1; θ̂_v = −1 for unseen v;
    θ̂_v = (1/B)·log(n_v(e^B + ℓe^{−B})/n_j) for the other seen labels.

    **Arguments:** `counts` ``(d,)`` label counts; `B` the feature scale.

    **Returns:** ``(theta, ok)``: θ̂ ``(d,)`` and a boolean that is True when every
    coordinate lies in [−1, 1] (then the KKT conditions hold and θ̂ is the MLE; otherwise
    use a bound-constrained solver). Vmappable.
    """
    counts = jnp.asarray(counts, dtype=jnp.result_type(float))
    j = jnp.argmax(counts)
    unseen = counts == 0
    ell = jnp.sum(unseen)
    log_z = B + jnp.log1p(ell * jnp.exp(-2.0 * B))  # log(e^B + ℓ e^{−B})
    interior = (jnp.log(jnp.where(unseen, 1.0, counts)) + log_z - jnp.log(counts[j])) / B
    theta = jnp.where(unseen, -1.0, interior)
    theta = theta.at[j].set(1.0)
    ok = jnp.all((theta >= -1.0 - 1e-12) & (theta <= 1.0 + 1e-12))
    return theta, ok


# ---------------------------------------------------------------------------
# §5 fine_tightness


def fine_tightness_parameters(n: int, d: int, N, *, c_eps: float = 0.5, c_p: float = 0.5) -> tuple[float, float]:
    r"""(ε, p) of §5: ε = c_ε√(d/n), p = c_p ε²/log N (v2 Prop. 4.1(b))."""
    eps = c_eps * math.sqrt(d / n)
    return eps, c_p * eps * eps / math.log(N)


def fine_tightness_truth(d: int, dtype=None) -> TabularModel:
    r"""π_D of §5: π_D(1|0) = 1, π_D(·|i) = Ber(½) for i ∈ [d]; logits ``(d+1, 1, 1, 2)``."""
    dtype = _float_dtype(dtype)
    row0 = jnp.asarray([[-jnp.inf, 0.0]], dtype=dtype)
    rows = jnp.full((d, 2), -_LOG2, dtype=dtype)
    return TabularModel(jnp.concatenate([row0, rows]).reshape(d + 1, 1, 1, 2), horizon=1)


def fine_tightness_model(theta_signs, epsilon, N) -> TabularModel:
    r"""π_θ of §5 (v2 Prop. 4.1(b)): π_θ(·|0) = Ber(1/N), π_θ(·|i) = Ber((1 + εθ_i)/2).

    **Arguments:** `theta_signs` ``(d,)`` entries ±1 (may be traced); `epsilon`; `N`.

    **Returns:** a :class:`TabularModel` with logits ``(d+1, 1, 1, 2)``.
    """
    signs = jnp.asarray(theta_signs)
    dtype = jnp.result_type(signs.dtype, float)
    signs = signs.astype(dtype)
    log_n = jnp.log(jnp.asarray(N, dtype=dtype))
    row0 = jnp.stack([jnp.log1p(-jnp.exp(-log_n)), -log_n])[None]
    eps_theta = epsilon * signs
    rows = jnp.stack([jnp.log1p(-eps_theta), jnp.log1p(eps_theta)], axis=-1) - _LOG2
    return TabularModel(jnp.concatenate([row0, rows]).reshape(-1, 1, 1, 2), horizon=1)


def fine_tightness_counts(x, y, d: int) -> Array:
    r"""Counts C(i, y) ``(d+1, 2)`` of a §5 dataset ``x (n,)``, ``y (n, 1)``."""
    y = jnp.asarray(y).reshape(-1)
    return jnp.zeros((d + 1, 2), dtype=jnp.result_type(float)).at[jnp.asarray(x), y].add(1.0)


def fine_tightness_mle(counts, epsilon, N) -> tuple[TabularModel, Array, Array]:
    r"""Closed-form MLE over the 2^d + 1 models of §5 (v2 Prop. 4.1(b); CONSTRUCTIONS §5).

    θ_i = sign(C(i,1) − C(i,0)) (ties +1), gain over π_D

    .. math::

        G = -C(0,1)\log N + \sum_{i=1}^d \big[\max(C(i,1),C(i,0))\log(1+\varepsilon)
            + \min(C(i,1),C(i,0))\log(1-\varepsilon)\big],

    π̂ = π_θ if G > 0, else π_D (ties → π_D). ``counts[0, 0]`` must be 0 (data from π_D).

    **Returns:** ``(model, theta_signs, gain)``. Vmappable over counts.
    """
    counts = jnp.asarray(counts)
    dtype = jnp.result_type(counts.dtype, float)
    counts = counts.astype(dtype)
    d = counts.shape[0] - 1
    c0, c1 = counts[1:, 0], counts[1:, 1]
    signs = jnp.where(c1 >= c0, 1.0, -1.0).astype(dtype)
    gain = (
        -counts[0, 1] * jnp.log(jnp.asarray(N, dtype=dtype))
        + jnp.sum(jnp.maximum(c0, c1)) * jnp.log1p(epsilon)
        + jnp.sum(jnp.minimum(c0, c1)) * jnp.log1p(-epsilon)
    )
    fitted = fine_tightness_model(signs, epsilon, N).logits
    truth = fine_tightness_truth(d, dtype).logits
    return TabularModel(jnp.where(gain > 0, fitted, truth), horizon=1), signs, gain


def fine_tightness_fit(instance: Instance, x, y) -> TabularModel:
    r"""MLE of §5 from a dataset ``x (n,)``, ``y (n, 1)`` drawn from ``instance.truth``.

    Uses ``instance.info["epsilon"]`` and ``instance.info["N"]``. Returns the fitted model.
    """
    d = instance.truth.num_prompts - 1
    counts = fine_tightness_counts(x, y, d)
    model, _, _ = fine_tightness_mle(counts, instance.info["epsilon"], instance.info["N"])
    return model


def fine_tightness_coverage(gain, p) -> Array:
    r"""Cov_N(π̂) of the §5 MLE: p if G > 0 (π̂ = π_θ, tie at ratio N counted) else 0."""
    return jnp.where(jnp.asarray(gain) > 0, p, 0.0)


def fine_tightness(n: int, d: int, N, *, c_eps: float = 0.5, c_p: float = 0.5,
                   max_candidates_d: int = 4) -> Instance:
    r"""Tightness of the fine term (CONSTRUCTIONS §5; arXiv 2510.15020 v2, Prop. 4.1(b), App. H.3).

    Prompts {0, 1, …, d} with μ(0) = p, μ(i) = (1−p)/d; H = 1, V = {0, 1}. Class: π_D
    (π_D(1|0) = 1, Ber(½) elsewhere) and π_θ for θ ∈ {±1}^d (:func:`fine_tightness_model`);
    ε = c_ε√(d/n), p = c_p ε²/log N. Cov_N(π_θ) = p (ratio exactly N at x = 0, counted),
    Cov_N(π_D) = 0. The MLE is :func:`fine_tightness_mle` / :func:`fine_tightness_fit`.

    ``candidates`` is the full class ``(π_D, π_θ for θ in itertools.product((1, −1), repeat=d))``
    only for d ≤ ``max_candidates_d`` (2^d models); otherwise None.

    **Arguments:** `n` ≥ 2d; `d` ≥ 1; `N` ≥ 2; `c_eps`, `c_p` > 0.

    **Returns:** an :class:`Instance`. ``info``: ``n``, ``d``, ``N``, ``log_N``, ``epsilon``, ``p``,
    ``c_eps``, ``c_p``, ``class_size`` = 2^d + 1, ``coverage_theta`` = p, ``coverage_truth`` = 0.
    """
    where = "fine_tightness"
    n = _check_int(n, "n", where)
    d = _check_int(d, "d", where)
    N = _check_real(N, "N", where)
    _require(n >= 2 * d, where, f"need n >= 2d, got n={n}, d={d}")
    _require(N >= 2.0, where, f"N must be >= 2, got {N!r}")
    _require(c_eps > 0 and c_p > 0, where, f"c_eps and c_p must be > 0, got {c_eps!r}, {c_p!r}")
    eps, p = fine_tightness_parameters(n, d, N, c_eps=c_eps, c_p=c_p)
    _require(eps < 1.0, where, f"epsilon = c_eps*sqrt(d/n) must be < 1, got {eps!r}")
    _require(p < 1.0, where, f"p = c_p*eps^2/log N must be < 1, got {p!r}")
    dtype = _float_dtype()
    truth = fine_tightness_truth(d, dtype)
    mu = jnp.concatenate([jnp.asarray([p], dtype), jnp.full((d,), (1.0 - p) / d, dtype)])
    candidates = None
    if d <= max_candidates_d:
        signs = itertools.product((1.0, -1.0), repeat=d)
        candidates = (truth,) + tuple(
            fine_tightness_model(jnp.asarray(s, dtype), eps, N) for s in signs
        )
    info = {
        "n": n, "d": d, "N": N, "log_N": math.log(N), "epsilon": eps, "p": p,
        "c_eps": c_eps, "c_p": c_p, "class_size": 2**d + 1,
        "coverage_theta": p, "coverage_truth": 0.0,
    }
    return Instance("fine_tightness", truth, mu, candidates=candidates, info=info)


# ---------------------------------------------------------------------------
# §6 variance_lower_bound


def variance_lower_bound_parameters(n: int, H: int, N, *, B: float = 8.0, c0: float = 1.0,
                                    c1: float = 1.0) -> tuple[float, float]:
    r"""(ε, p) of §6: ε = √(4 log N/(c₁HB²)), p = min{1, c₀/(nB²ε²)} (v2 Prop. I.1)."""
    eps = math.sqrt(4.0 * math.log(N) / (c1 * H * B * B))
    return eps, min(1.0, c0 / (n * B * B * eps * eps))


# One function, one argument order (n, N, H, c): the instance's rate is the bound's.
variance_lower_bound_rate = bounds.variance_lower_bound_rate


def variance_lower_bound(n: int, H: int, N, *, B: float = 8.0, c0: float = 1.0, c1: float = 1.0,
                         key) -> Instance:
    r"""σ⋆² is necessary (CONSTRUCTIONS §6; arXiv 2510.15020 v2, Prop. I.1).

    Prompts: index 0 is "+", index 1 is "−", μ(+) = p. V = {0, 1}; d = H;
    ψ(−, ·) = 0, ψ(+, h, u, v) = B·v·e_h (ignores u: features ``(2, H, 1, 2, H)``,
    memory 32H² bytes). Θ = unit ball; θ⋆ = ε·(uniform random signs drawn with ``key``).
    ε = √(4 log N/(c₁HB²)), p = min{1, c₀c₁H/(4n log N)}; requires 4 log N ≤ c₁·min{H, B²}
    (so ‖θ⋆‖ ≤ 1 and Bε ≤ 1).

    **Returns:** an :class:`Instance`. ``info``: ``B``, ``d`` (= H), ``n``, ``H``, ``N``, ``log_N``,
    ``c0``, ``c1``, ``epsilon``, ``p``, ``theta_star`` (H,), ``sigma2`` = p·H·B²·s(1−s) with
    s = σ(Bε), ``rate`` = min{1, H/(n log N)}.
    """
    where = "variance_lower_bound"
    check_key(key, where)
    n = _check_int(n, "n", where)
    H = _check_int(H, "H", where)
    N = _check_real(N, "N", where)
    B = _check_real(B, "B", where)
    _require(N > 1.0, where, f"N must be > 1, got {N!r}")
    _require(B > 0 and c0 > 0 and c1 > 0, where, f"B, c0, c1 must be > 0, got {B!r}, {c0!r}, {c1!r}")
    log_n = math.log(N)
    _require(
        4.0 * log_n <= c1 * min(H, B * B), where,
        f"side condition 4 log N <= c1*min(H, B^2) fails: 4 log N = {4 * log_n:.4g}, "
        f"c1*min(H, B^2) = {c1 * min(H, B * B):.4g} (N={N!r}, H={H}, B={B!r}, c1={c1!r})",
    )
    eps, p = variance_lower_bound_parameters(n, H, N, B=B, c0=c0, c1=c1)
    dtype = _float_dtype()
    plus = B * jnp.eye(H, dtype=dtype)  # (h, coordinate)
    feat_plus = jnp.stack([jnp.zeros_like(plus), plus], axis=1)  # (H, V, d)
    features = jnp.stack([feat_plus, jnp.zeros_like(feat_plus)])[:, :, None]  # (2, H, 1, 2, H)
    signs = jax.random.rademacher(key, (H,), dtype=dtype)
    theta_star = eps * signs
    truth = LinearModel(features, theta_star, horizon=H)
    s = _sigmoid(B * eps)
    info = {
        "B": B, "d": H, "n": n, "H": H, "N": N, "log_N": log_n, "c0": c0, "c1": c1,
        "epsilon": eps, "p": p, "theta_star": theta_star,
        "sigma2": p * H * B * B * s * (1.0 - s),
        "rate": min(1.0, H / (n * log_n)),
    }
    mu = jnp.asarray([p, 1.0 - p], dtype=dtype)
    return Instance("variance_lower_bound", truth, mu, features, Ball(1.0), info=info)


# ---------------------------------------------------------------------------
# §9 pivotal_tokens


def pivotal_tokens_positions(H: int, k: int) -> tuple[int, ...]:
    r"""Pivotal positions K = {⌈jH/k⌉ : j = 1..k} as covsim's 0-based indices ⌈jH/k⌉ − 1."""
    return tuple((j * H + k - 1) // k - 1 for j in range(1, k + 1))


def _zipf_law(V: int, B: float, s_z: float):
    """β⋆ (V,) and the pivotal law p⋆ = softmax(Bβ⋆) ∝ (v+1)^{−s_z} (numpy float64)."""
    logs = np.log(np.arange(1, V + 1, dtype=np.float64))
    beta = -(s_z / B) * (logs - logs.mean())
    weights = np.exp(-s_z * logs)
    return beta, weights / weights.sum()


def pivotal_tokens_sigma2(H: int, k: int, V: int, *, B: float = 16.0, a: float = 0.9,
                          s_z: float = 1.2) -> float:
    r"""Exact σ⋆² of §9: (H − k)·B²q(1−q) + k·B²(1 − Σ_v p⋆_v²), q = (V−1)/(e^{Ba} + V − 1)."""
    q = (V - 1) / (math.exp(B * a) + V - 1)
    _, law = _zipf_law(V, B, s_z)
    return (H - k) * B * B * q * (1.0 - q) + k * B * B * (1.0 - float(np.sum(law**2)))


def pivotal_tokens(H: int, k: int, V: int, *, B: float = 16.0, a: float = 0.9, s_z: float = 1.2,
                   dtype=None) -> Instance:
    r"""Pivotal tokens (CONSTRUCTIONS §9, a project design; used for v2 Thm 4.2, Eq. 9).

    One prompt; d = 1 + V; pivotal set K = {⌈jH/k⌉ : j = 1..k} (1-based; stored 0-based);
    ψ(x₀, h, u, v) = B·1{h ∉ K}·1{v = (u + 1) mod V}·e_0 + B·1{h ∈ K}·e_{1+v}, with u = BOS
    treated as token 0. Θ = unit ball; θ⋆ = (a, β⋆),
    β⋆_v = −(s_z/B)(log(v+1) − mean_{v′} log(v′+1)): the pivotal law is Zipf(s_z) and each
    deterministic step leaves the increment rule with probability q = (V−1)/(e^{Ba} + V − 1).

    Memory: the features are stored dense, ``(1, H, V+1, V, 1+V)``, i.e.
    8·H·(V+1)·V·(V+1) bytes in float64 — 140 MB at H = 512, V = 32 (4.4 MB at H = 16);
    pass ``dtype=jnp.float32`` to halve it.

    **Returns:** an :class:`Instance`. ``info``: ``B``, ``d``, ``H``, ``k``, ``V``, ``a``, ``s_z``,
    ``theta_star`` (1+V,), ``sigma2`` (closed form), ``q``, ``pivotal_positions`` (0-based tuple),
    ``pivotal_law`` (V,), ``theta_norm``.
    """
    where = "pivotal_tokens"
    H = _check_int(H, "H", where)
    k = _check_int(k, "k", where)
    V = _check_int(V, "V", where, minimum=2)
    _require(k <= H, where, f"k must be in [1, H] = [1, {H}], got {k}")
    B = _check_real(B, "B", where)
    _require(B > 0, where, f"B must be > 0, got {B!r}")
    beta, law = _zipf_law(V, B, s_z)
    theta_np = np.concatenate([[a], beta])
    norm = float(np.linalg.norm(theta_np))
    _require(norm <= 1.0 + 1e-12, where,
             f"||theta*|| = ||(a, beta*)|| must be <= 1, got {norm:.4g} (a={a!r}, s_z={s_z!r}, B={B!r}, V={V})")
    dtype = _float_dtype(dtype)
    positions = pivotal_tokens_positions(H, k)
    pivotal = np.zeros(H, dtype=bool)
    pivotal[list(positions)] = True
    pivotal = jnp.asarray(pivotal)
    prev = jnp.arange(V + 1)
    rule_token = (jnp.where(prev == V, 0, prev) + 1) % V  # (V+1,)
    on_rule = (jnp.arange(V)[None, :] == rule_token[:, None]).astype(dtype)  # (V+1, V)
    coord0 = B * jnp.where(pivotal[:, None, None], 0.0, on_rule[None])  # (H, V+1, V)
    one_hot = B * jnp.where(pivotal[:, None, None, None], jnp.eye(V, dtype=dtype)[None, None], 0.0)
    one_hot = jnp.broadcast_to(one_hot, (H, V + 1, V, V))
    features = jnp.concatenate([coord0[..., None], one_hot], axis=-1)[None].astype(dtype)
    theta_star = jnp.asarray(theta_np, dtype=dtype)
    truth = LinearModel(features, theta_star, horizon=H)
    q = (V - 1) / (math.exp(B * a) + V - 1)
    info = {
        "B": B, "d": 1 + V, "H": H, "k": k, "V": V, "a": a, "s_z": s_z,
        "theta_star": theta_star, "theta_norm": norm,
        "sigma2": pivotal_tokens_sigma2(H, k, V, B=B, a=a, s_z=s_z),
        "q": q, "pivotal_positions": positions, "pivotal_law": jnp.asarray(law, dtype=dtype),
    }
    return Instance("pivotal_tokens", truth, jnp.ones((1,), dtype), features, Ball(1.0), info=info)


# ---------------------------------------------------------------------------
# §10 horizon_mixture

_MIX_PROBS = (0.94, 0.05, 0.01)
_MIX_VARIANTS_EASY = 8
_MIX_VARIANTS_STOCH = 8
_MIX_VOCAB = 8
_MIX_STOCH_PIVOTS = 4


def horizon_mixture_unseen_share(n, M: int = 32) -> Array:
    r"""u = (1 − 0.05/M)^n: expected share of class-2 mass whose id is unseen in n samples."""
    return jnp.exp(n * jnp.log1p(-jnp.asarray(0.05 / M, dtype=jnp.result_type(float))))


def horizon_mixture_expected_kl(n, H: int, M: int = 32) -> Array:
    r"""KL ≈ 0.05·u·⌊H/2⌋·log 2 (CONSTRUCTIONS §10 prediction; u = (1 − 0.05/M)^n).

    Each unseen hard prompt is 50/50 at its ⌊H/2⌋ pivotal positions under θ̂_j = 0.
    """
    return 0.05 * horizon_mixture_unseen_share(n, M) * (H // 2) * _LOG2


def horizon_mixture_expected_coverage(n, H: int, N, M: int = 32) -> Array:
    r"""Cov_N ≈ 0.05·u when ⌊H/2⌋·log 2 > log N, else ≈ 0 (CONSTRUCTIONS §10 prediction).

    At ⌊H/2⌋·log 2 = log N the log-ratio sits on the threshold: avoid it.
    """
    log_n = jnp.log(jnp.asarray(N, dtype=jnp.result_type(float)))
    return jnp.where((H // 2) * _LOG2 > log_n, 0.05 * horizon_mixture_unseen_share(n, M), 0.0)


def _mixture_structure(H: int, M: int, seed: int):
    """Prompt classes, pivotal masks (P, H), allowed sets (P, H, V), class-2 ids and bits."""
    V = _MIX_VOCAB
    classes = [(1, j) for j in range(_MIX_VARIANTS_EASY)] + [(2, j) for j in range(M)] + [
        (3, j) for j in range(_MIX_VARIANTS_STOCH)
    ]
    P = len(classes)
    pivotal = np.zeros((P, H), dtype=bool)
    allowed = np.zeros((P, H, V), dtype=bool)
    for x, (c, j) in enumerate(classes):
        rng = np.random.default_rng([seed, c, j, H])
        size = {1: 0, 2: H // 2, 3: _MIX_STOCH_PIVOTS}[c]
        pivotal[x, rng.choice(H, size=size, replace=False)] = True
        single = rng.integers(V, size=H)
        even = 2 * rng.integers(V // 2, size=H)
        odd = 2 * rng.integers(V // 2, size=H) + 1
        rows = np.arange(H)
        allowed[x, rows, np.where(pivotal[x], even, single)] = True
        allowed[x, rows[pivotal[x]], odd[pivotal[x]]] = True
    bits = np.array([np.random.default_rng([seed, 2, j]).integers(2) for j in range(M)])
    prompt_class = np.array([c for c, _ in classes])
    return prompt_class, pivotal, allowed, bits


def horizon_mixture(n: int, H: int, *, M: int = 32, B_v: float = 16.0, B_m: float = 8.0,
                    seed: int = 0, strict: bool = False, dtype=None) -> Instance:
    r"""Rare unlearnable class: KL ∝ H, coverage flat (CONSTRUCTIONS §10, a project design;
    AR-linear analogue of arXiv 2510.15020 v2, Figure 2, App. C.3).

    Prompts (flattened, P = M + 16): indices 0..7 are class 1 (easy, μ = 0.94/8 each),
    8..8+M−1 are class 2 (hard deterministic, id j = index − 8, μ = 0.05/M each), the last 8
    class 3 (hard stochastic, μ = 0.01/8). V = 8. Per prompt, a pivotal set I(x) (empty,
    ⌊H/2⌋ or 4 random positions) and allowed sets A_h(x) (one random token off I(x); one even
    and one odd token on I(x)) are drawn with ``np.random.default_rng([seed, c, j, H])``;
    the hidden bit b_j of class-2 id j with ``np.random.default_rng([seed, 2, j])``.

    Features (d = 1 + M, independent of u, stored ``(P, H, 1, V, 1+M)``, 8·P·H·V·(1+M) bytes:
    52 MB at M = 32, H = 512): ψ_0 = B_v·1{v ∈ A_h(x)};
    ψ_{1+j} = B_m·1{x = (2, j), h ∈ I(x), v ∈ A_h(x)}·s(h, v), with s(h, v) = +1 if
    v ≡ h (mod 2) for the 1-based position h, else −1. Θ = [−1, 1]^{1+M} (departure from
    Assumption 2.2). θ⋆_0 = 1, θ⋆_{1+j} = +1 if b_j = 0 else −1.

    ``strict=True``: radii r_v = 0.6, r_m = 0.8/√M; features scaled to B_v/r_v and B_m/r_m,
    θ⋆ scaled by the radii (same logits), Θ = the box [−r_v, r_v] × [−r_m, r_m]^M, which lies
    in the unit ball (r_v² + M r_m² = 1), so Assumption 2.2 holds.

    **Arguments:** `n` sample size (only for the predictions in ``info``); `H` ≥ 4; `M` ≥ 1
    hard ids; `B_v`, `B_m` the logit margins; `seed` ≥ 0; `strict`; `dtype`.

    **Returns:** an :class:`Instance`. ``info``: ``B`` (= sup‖ψ‖ = √(B_v′² + B_m′²) with the
    effective scales), ``B_v``, ``B_m`` (effective), ``d``, ``M``, ``H``, ``n``, ``P``, ``V``,
    ``seed``, ``theta_star``, ``sigma2`` (exact), ``prompt_class`` (P,), ``class_probs``,
    ``pivotal`` (P, H) bool, ``allowed`` (P, H, V) bool, ``hidden_bits`` (M,),
    ``first_hard_prompt`` (= 8), ``unseen_share`` u, ``predicted_kl``.
    """
    where = "horizon_mixture"
    n = _check_int(n, "n", where)
    H = _check_int(H, "H", where, minimum=_MIX_STOCH_PIVOTS)
    M = _check_int(M, "M", where)
    seed = _check_int(seed, "seed", where, minimum=0)
    B_v = _check_real(B_v, "B_v", where)
    B_m = _check_real(B_m, "B_m", where)
    _require(B_v > 0 and B_m > 0, where, f"B_v and B_m must be > 0, got {B_v!r}, {B_m!r}")
    V = _MIX_VOCAB
    prompt_class, pivotal, allowed, bits = _mixture_structure(H, M, seed)
    P = prompt_class.shape[0]
    r_v, r_m = (0.6, 0.8 / math.sqrt(M)) if strict else (1.0, 1.0)
    scale_v, scale_m = B_v / r_v, B_m / r_m

    parity_match = (np.arange(V)[None, :] % 2) == ((np.arange(H)[:, None] + 1) % 2)  # (H, V), 1-based h
    sign = np.where(parity_match, 1.0, -1.0)
    feats = np.zeros((P, H, V, 1 + M))
    feats[..., 0] = scale_v * allowed
    hard = np.flatnonzero(prompt_class == 2)
    for j, x in enumerate(hard):
        feats[x, :, :, 1 + j] = scale_m * (pivotal[x][:, None] & allowed[x]) * sign
    theta_np = np.concatenate([[r_v], r_m * np.where(bits == 0, 1.0, -1.0)])

    # exact σ⋆²: positions are independent given x (ψ ignores u), so σ⋆² = Σ_x μ(x) Σ_h Var_π(ψ).
    class_mass = np.array([_MIX_PROBS[c - 1] for c in prompt_class])
    class_size = np.array([{1: _MIX_VARIANTS_EASY, 2: M, 3: _MIX_VARIANTS_STOCH}[c] for c in prompt_class])
    mu_np = class_mass / class_size
    logits = feats @ theta_np
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    mean = np.einsum("xhv,xhvd->xhd", probs, feats)
    second = np.einsum("xhv,xhv->xh", probs, np.sum(feats**2, -1))
    sigma2 = float(np.sum(mu_np * np.sum(second - np.sum(mean**2, -1), axis=-1)))

    dtype = _float_dtype(dtype)
    features = jnp.asarray(feats[:, :, None], dtype=dtype)
    theta_star = jnp.asarray(theta_np, dtype=dtype)
    truth = LinearModel(features, theta_star, horizon=H)
    radii = jnp.asarray(np.concatenate([[r_v], np.full(M, r_m)]), dtype=dtype)
    unseen = math.exp(n * math.log1p(-0.05 / M))
    constraint = Box(-radii, radii)
    info = {
        "B": math.sqrt(scale_v**2 + scale_m**2), "B_v": scale_v, "B_m": scale_m,
        "d": 1 + M, "M": M, "H": H, "n": n, "P": P, "V": V, "seed": seed,
        "theta_star": theta_star, "sigma2": sigma2,
        "prompt_class": jnp.asarray(prompt_class), "class_probs": _MIX_PROBS,
        "pivotal": jnp.asarray(pivotal), "allowed": jnp.asarray(allowed),
        "hidden_bits": jnp.asarray(bits), "first_hard_prompt": _MIX_VARIANTS_EASY,
        "unseen_share": unseen,
        "predicted_kl": 0.05 * unseen * (H // 2) * _LOG2,
    }
    name = "horizon_mixture_strict" if strict else "horizon_mixture"
    return Instance(name, truth, jnp.asarray(mu_np, dtype=dtype), features, constraint, info=info)
