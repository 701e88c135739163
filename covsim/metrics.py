r"""Coverage, stopped KL (dispatch over exact / Monte Carlo / bracket), Pass@N and pass@k.

"Coverage" always means the coverage profile Cov_N (arXiv 2510.15020 v2, Def. 1.1);
pass@k is called pass@k.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from covsim import exact
from covsim._validate import (
    check_key,
    check_pair,
    check_positive_int,
    check_thresholds,
    guard_distribution,
    is_concrete,
)
from covsim.models import (
    SequenceModel,
    draw_paths,
    next_token_log_probs,
    sample,
    step_log_probs,
    token_log_probs,
)

__all__ = ["LooseBracketWarning", "MCEstimate", "coverage", "stopped_kl", "pass_at_n", "pass_at_k", "pass_at_k_traced"]

DEFAULT_TOKEN_BUDGET = 2**24
"""Tokens (sequences × H) drawn per Monte-Carlo chunk: memory stays bounded at any H
(about 16.8M tokens, a few hundred MB in float64, whatever H and num_samples are)."""


class MCEstimate(NamedTuple):
    """A Monte Carlo mean and its standard error (arrays of equal shape)."""

    mean: Array
    stderr: Array


# ---------------------------------------------------------------------------
# Monte Carlo over sequences drawn from p, chunked


def _path_sum(table: Array, x, y: Array, vocab: int) -> Array:
    """Sum of a per-context table ``(P|1, H|1, U|1)`` along one path."""
    horizon = y.shape[-1]
    prev = jnp.concatenate([jnp.full((1,), vocab, dtype=y.dtype), y[:-1]])
    h_idx = jnp.arange(horizon) if table.shape[1] > 1 else jnp.zeros(horizon, dtype=int)
    u_idx = prev if table.shape[2] > 1 else jnp.zeros_like(prev)
    x_idx = jnp.broadcast_to(x, (horizon,)) if table.shape[0] > 1 else jnp.zeros(horizon, dtype=int)
    return jnp.sum(table[x_idx, h_idx, u_idx])


def _log_ratio(p, q, x, y) -> Array:
    lp = jnp.sum(token_log_probs(p, x, y))
    lq = jnp.sum(token_log_probs(q, x, y))
    return jnp.where(jnp.isneginf(lq), jnp.inf, lp - jnp.where(jnp.isneginf(lq), 0.0, lq))


def _log_ratio_table(p, q) -> Array:
    r"""Per-token log-ratio table :math:`\log p(v|x,h,u) - \log q(v|x,h,u)`, ``+inf`` where
    q = 0 (shape: the broadcast of the two tables)."""
    lp, lq = next_token_log_probs(p), next_token_log_probs(q)
    return jnp.where(jnp.isneginf(lq), jnp.inf, lp - jnp.where(jnp.isneginf(lq), 0.0, lq))


def _sampled_log_ratios(p, q, mu, key, n):
    r""":math:`\log p(y|x) - \log q(y|x) = \sum_h [\log p - \log q](y_h|x,h,y_{h-1})` for the
    ``n`` sequences that ``sample(p, mu, n, key=key)`` draws (the same draws), summed position
    by position while drawing. A position where the two laws agree adds exactly 0."""
    diff = _log_ratio_table(p, q)

    def path_value(h, x, prev, tok):
        d_h = step_log_probs(diff, h)  # (P|1, U|1, V)
        x_idx = x if diff.shape[0] > 1 else jnp.zeros_like(x)
        u_idx = prev if diff.shape[2] > 1 else jnp.zeros_like(prev)
        return d_h[x_idx, u_idx, tok]

    _, _, ratio = draw_paths(next_token_log_probs(p), mu, key, n, p.horizon, path_value,
                             total_dtype=diff.dtype)
    return ratio


def _coverage_stat(p, q, log_t, x, y):
    return (_log_ratio(p, q, x, y) >= log_t).astype(log_t.dtype)


def _stopped_stat(p, q, log_n, x, y):
    eps = exact.per_step_kl(p, q)
    return jnp.minimum(log_n, _path_sum(eps, x, y, p.vocab_size))


@partial(jax.jit, static_argnames=("statistic", "num_samples", "chunk"))
def _mc_mean(p, q, mu, levels, key, *, statistic, num_samples, chunk):
    stat = {"coverage": _coverage_stat, "stopped_kl": _stopped_stat}[statistic]
    num_chunks = -(-num_samples // chunk)
    keys = jax.random.split(key, num_chunks)

    def body(carry, inputs):
        total, total_sq = carry
        index, k = inputs
        if statistic == "coverage":  # log-ratios summed while drawing: no (chunk, H) tokens
            ratio = _sampled_log_ratios(p, q, mu, k, chunk)
            values = (ratio[:, None] >= levels[None, :]).astype(levels.dtype)  # (chunk, J)
        else:
            x, y = sample(p, mu, chunk, key=k)
            values = jax.vmap(lambda xi, yi: stat(p, q, levels, xi, yi))(x, y)  # (chunk, J)
        valid = (index * chunk + jnp.arange(chunk)) < num_samples
        values = jnp.where(valid[:, None], values, 0.0)
        return (total + values.sum(0), total_sq + (values**2).sum(0)), None

    zero = jnp.zeros(levels.shape, dtype=levels.dtype)
    (total, total_sq), _ = jax.lax.scan(body, (zero, zero), (jnp.arange(num_chunks), keys))
    mean = total / num_samples
    var = jnp.maximum(total_sq / num_samples - mean**2, 0.0) * num_samples / max(num_samples - 1, 1)
    stderr = jnp.sqrt(var / num_samples)
    if statistic == "coverage":  # no hit at all: report the one-sided 95% bound 3/M, not 0
        stderr = jnp.where(total == 0, 3.0 / num_samples, stderr)
    return mean, stderr


def mc_chunk(num_samples: int, horizon: int, token_budget: int = DEFAULT_TOKEN_BUDGET,
             chunk_size: int | None = None) -> int:
    """Sequences per Monte-Carlo chunk: `chunk_size` if given, else ⌊token_budget / H⌋ (≥ 1),
    never more than `num_samples`."""
    if chunk_size is None:
        chunk_size = max(1, int(token_budget) // int(horizon))
    return min(int(chunk_size), int(num_samples))


def _monte_carlo(p, q, mu, levels, statistic, num_samples, key, chunk_size, token_budget, where):
    check_key(key, where + " (method='mc')")
    if num_samples is None:
        raise ValueError(f"{where}: method='mc' needs num_samples (a positive int), got None")
    num_samples = check_positive_int(num_samples, "num_samples", where)
    token_budget = check_positive_int(token_budget, "token_budget", where)
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size", where)
    chunk = mc_chunk(num_samples, p.horizon, token_budget, chunk_size)
    flat = levels.reshape(-1)
    mean, stderr = _mc_mean(p, q, jnp.asarray(mu, dtype=flat.dtype), flat, key,
                            statistic=statistic, num_samples=num_samples, chunk=chunk)
    return MCEstimate(mean.reshape(levels.shape), stderr.reshape(levels.shape))


class LooseBracketWarning(UserWarning):
    """The coverage bracket is wider than ½: its answer says little (see its message)."""


_LOOSE_BRACKET_WARNED = [False]


def _warn_if_loose(bracket, bins: int) -> None:
    """Warn once per process when an eagerly computed bracket is wider than ½."""
    if _LOOSE_BRACKET_WARNED[0] or not is_concrete(bracket.lower, bracket.upper):
        return
    width = float(jnp.max(jnp.asarray(bracket.upper) - jnp.asarray(bracket.lower)))
    if width > 0.5:
        _LOOSE_BRACKET_WARNED[0] = True
        warnings.warn(
            f"coverage(method='bracket'): the bracket is {width:.3g} wide (> 1/2), so it says "
            f"little; refine it with bins > {bins} (cost grows linearly in bins) or use "
            "method='mc' (unbiased, with standard errors). Shown once per process.",
            LooseBracketWarning, stacklevel=3)


def _refuse_unused(where: str, method: str, options: dict) -> None:
    """ValueError for an option set by the caller that `method` does not use."""
    for name, (given, methods) in options.items():
        if given and method not in methods:
            raise ValueError(f"{where}: {name} is used only by method={' or '.join(map(repr, methods))}, "
                             f"not by method={method!r}; remove it")


def _common_dtype(p, q):
    return jnp.result_type(next_token_log_probs(p).dtype, next_token_log_probs(q).dtype)


# ---------------------------------------------------------------------------
# public metrics


def coverage(p: SequenceModel, q: SequenceModel, mu, N, *, method: str = "exact",
             num_samples: int | None = None, key: Array | None = None,
             return_stderr: bool = False, bins: int | None = None,
             token_budget: int = DEFAULT_TOKEN_BUDGET, chunk_size: int | None = None):
    r"""Coverage profile Cov_N(p‖q) (arXiv 2510.15020 v2, Def. 1.1).

    .. math::

        \mathrm{Cov}_N(p\|q) = P_{x\sim\mu,\,y\sim p(\cdot|x)}
        \big[\log p(y|x) - \log q(y|x) \ge \log N\big],

    with ties counted (tolerance 1e-9 nats, THEORY.md §0) and q = 0 counted as ratio +∞.

    **Arguments:**

    - `p`: reference law π_D; `q`: model π̂; `mu`: prompt law ``(P,)``.
    - `N`: threshold(s) ≥ 1, any shape; the result has the same shape.
    - `method`: ``"exact"`` (enumeration, P·V^H ≤ 4,194,304), ``"mc"`` (Monte Carlo from
      p with `num_samples` and `key`) or ``"bracket"`` (rigorous bounds at any H, refined
      by `bins`, default 1024; it warns once when its width exceeds ½).
    - `token_budget`, `chunk_size` (``"mc"``): samples are drawn in chunks of
      ⌊token_budget / H⌋ sequences (default budget 2^24 tokens), or `chunk_size`
      sequences if given, so memory stays bounded at any H and `num_samples`.
    - `return_stderr`: with ``"mc"``, return an :class:`MCEstimate` (mean, stderr; with no
      hit at all the stderr is the one-sided 95% bound 3/M instead of 0).

    Options that the chosen method does not use raise a ``ValueError``.

    **Returns:** an array with the shape of `N`; for ``"bracket"`` a
    :class:`~covsim.exact.Bracket` ``(lower, upper)``; for ``"mc"`` with
    `return_stderr`, an :class:`MCEstimate`.
    """
    N = check_thresholds(N, "coverage")
    if method not in ("exact", "mc", "bracket"):
        raise ValueError(f"coverage: method must be 'exact', 'mc' or 'bracket', got {method!r}")
    _refuse_unused("coverage", method, {
        "num_samples": (num_samples is not None, ("mc",)),
        "key": (key is not None, ("mc",)),
        "return_stderr": (bool(return_stderr), ("mc",)),
        "bins": (bins is not None, ("bracket",)),
        "token_budget": (token_budget != DEFAULT_TOKEN_BUDGET, ("mc",)),
        "chunk_size": (chunk_size is not None, ("mc",)),
    })
    if method == "exact":
        return exact.coverage_exact(p, q, mu, N)
    if method == "bracket":
        bracket = exact.coverage_bracket(p, q, mu, N, bins=1024 if bins is None else bins)
        _warn_if_loose(bracket, 1024 if bins is None else bins)
        return bracket
    if method == "mc":
        p, q, mu = check_pair(p, q, mu, "coverage")
        levels = jnp.log(jnp.asarray(N, dtype=_common_dtype(p, q))) - exact.TIE_TOLERANCE
        est = _monte_carlo(p, q, mu, levels, "coverage", num_samples, key, chunk_size,
                           token_budget, "coverage")
        est = guard_distribution(est, mu, "coverage")
        return est if return_stderr else est.mean
    raise ValueError(f"coverage: method must be 'exact', 'mc' or 'bracket', got {method!r}")


def stopped_kl(p: SequenceModel, q: SequenceModel, mu, N, *, method: str = "exact",
               num_samples: int | None = None, key: Array | None = None,
               return_stderr: bool = False, token_budget: int = DEFAULT_TOKEN_BUDGET,
               chunk_size: int | None = None):
    r"""Stopped sequence KL (arXiv 2510.15020 v2, Prop. D.10; THEORY.md §3.6).

    .. math::

        D_{seq,N}(p\|q) = \mathbb{E}_{x\sim\mu,\,y\sim p}\min\Big\{\log N,
        \sum_{h=1}^H \mathrm{KL}\big(p(\cdot|x,y_{<h})\|q(\cdot|x,y_{<h})\big)\Big\}
        \le \log N.

    Methods ``"exact"`` (enumeration) and ``"mc"`` as in :func:`coverage`.
    Returns an array with the shape of `N` (finite even when the KL is +∞).
    """
    N = check_thresholds(N, "stopped_kl")
    if method not in ("exact", "mc"):
        raise ValueError(f"stopped_kl: method must be 'exact' or 'mc', got {method!r}")
    _refuse_unused("stopped_kl", method, {
        "num_samples": (num_samples is not None, ("mc",)),
        "key": (key is not None, ("mc",)),
        "return_stderr": (bool(return_stderr), ("mc",)),
        "token_budget": (token_budget != DEFAULT_TOKEN_BUDGET, ("mc",)),
        "chunk_size": (chunk_size is not None, ("mc",)),
    })
    if method == "exact":
        return exact.stopped_kl_exact(p, q, mu, N)
    if method == "mc":
        p, q, mu = check_pair(p, q, mu, "stopped_kl")
        levels = jnp.log(jnp.asarray(N, dtype=_common_dtype(p, q)))
        est = _monte_carlo(p, q, mu, levels, "stopped_kl", num_samples, key, chunk_size,
                           token_budget, "stopped_kl")
        est = guard_distribution(est, mu, "stopped_kl")
        return est if return_stderr else est.mean
    raise ValueError(f"stopped_kl: method must be 'exact' or 'mc', got {method!r}")


def pass_at_n(p_success, N) -> Array:
    r"""Exact Pass@N for single-draw success probability p (THEORY.md §4.3).

    .. math:: \mathrm{Pass@}N = 1 - (1-p)^N = -\mathrm{expm1}(N\,\mathrm{log1p}(-p)),

    stable for tiny p and huge N. Broadcasts `p_success` against `N`.
    """
    if is_concrete(p_success, N):
        p_arr = np.asarray(p_success, dtype=float)
        if np.any(np.isnan(p_arr)) or np.any((p_arr < 0) | (p_arr > 1)):
            raise ValueError(f"pass_at_n: p_success must lie in [0, 1], got {p_success!r}")
        n_arr = np.asarray(N, dtype=float)
        if np.any(np.isnan(n_arr)) or np.any(n_arr < 0):
            raise ValueError(f"pass_at_n: N must be >= 0, got {N!r}")
    p = jnp.asarray(p_success)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(jnp.result_type(float))
    n = jnp.asarray(N, dtype=p.dtype)
    log_fail = jnp.log1p(-p)
    exponent = jnp.where((p == 0) | (n == 0), 0.0, n * log_fail)
    return -jnp.expm1(exponent)


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    # 1 − C(n−c, k)/C(n, k) = 1 − Π_{i=n−c+1}^{n} (1 − k/i)
    i = np.arange(n - c + 1, n + 1, dtype=float)
    return float(-np.expm1(np.sum(np.log1p(-k / i)))) + 0.0  # + 0.0: never -0.0 (c = 0)


def pass_at_k(n, c, k):
    r"""Unbiased pass@k estimator from n draws with c successes (THEORY.md §4.3).

    .. math:: \widehat{\mathrm{pass@}k} = 1 - \binom{n-c}{k}\Big/\binom{n}{k}
              = 1 - \prod_{i=n-c+1}^{n}\Big(1 - \frac{k}{i}\Big),

    equal to 1 when n − c < k and 0 when c = 0. Raises ``ValueError`` for k > n, c > n,
    k < 1 or negative arguments (k > n is never clipped to 1.0). Broadcasts over array
    arguments; returns a float64 NumPy array (a float for scalar input). For use inside
    ``jit`` (no validation), see the log-gamma form in :func:`pass_at_k_traced`.
    """
    if not is_concrete(n, c, k):
        return pass_at_k_traced(n, c, k)
    n_arr, c_arr, k_arr = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
    for name, arr in (("n", n_arr), ("c", c_arr), ("k", k_arr)):
        if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"pass_at_k: {name} must be an integer count, got {arr.ravel()[0]!r}")
        if np.any(arr < 0):
            raise ValueError(f"pass_at_k: {name} must be >= 0, got {arr[arr < 0].ravel()[0]!r}")
    if np.any(k_arr < 1):
        raise ValueError(f"pass_at_k: k must be >= 1, got {k_arr[k_arr < 1].ravel()[0]!r}")
    if np.any(k_arr > n_arr):
        bad = np.argmax(k_arr > n_arr)
        raise ValueError(
            f"pass_at_k: k={int(k_arr.ravel()[bad])} exceeds n={int(n_arr.ravel()[bad])} samples; "
            "pass@k is only defined for k <= n"
        )
    if np.any(c_arr > n_arr):
        bad = np.argmax(c_arr > n_arr)
        raise ValueError(
            f"pass_at_k: c={int(c_arr.ravel()[bad])} successes exceeds n={int(n_arr.ravel()[bad])}"
        )
    out = np.array([
        _pass_at_k_one(int(a), int(b), int(e))
        for a, b, e in zip(n_arr.ravel(), c_arr.ravel(), k_arr.ravel())
    ]).reshape(n_arr.shape)
    return float(out) if out.ndim == 0 else out


def pass_at_k_traced(n, c, k) -> Array:
    r"""jit-compatible pass@k via log-gamma (no validation; use float64 for accuracy)."""
    n, c, k = (jnp.asarray(a, dtype=jnp.result_type(float)) for a in (n, c, k))
    lg = jax.scipy.special.gammaln
    log_ratio = lg(n - c + 1) - lg(n - c - k + 1) - lg(n + 1) + lg(n - k + 1)
    safe = jnp.where(n - c < k, 0.0, log_ratio)
    return jnp.where(n - c < k, 1.0, -jnp.expm1(safe)) + 0.0  # + 0.0: never -0.0

