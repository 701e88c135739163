r"""Model selection by tournament, and the min-cross-entropy / min-KL baselines (THEORY.md §7).

Candidates :math:`\Pi = \{\pi_1, \dots, \pi_m\}` (e.g. checkpoints) are compared on a
held-out sample :math:`(x_i, y_i)_{i\le n} \sim \pi_D` through the matrix of held-out
log-likelihoods :math:`\ell_{j,i} = \log \pi_j(y_i|x_i)`, shape ``(m, n)`` — the only thing
the simple tournament needs (arXiv 2510.15020 v2, Eqs. 28–29, Thm 6.3).

Candidate sets are given either as a Python list/tuple of finite-context models
(:class:`~covsim.TabularModel` / :class:`~covsim.LinearModel`, possibly with different
broadcast axes), or as one *stacked* model whose array leaves carry a leading candidate
axis (built with ``jax.vmap`` / ``eqx.filter_vmap``): a ``TabularModel`` with logits
``(m, P, H, U, V)``, or a ``LinearModel`` with theta ``(m, d)`` and features either shared
``(P, H, U, V, d)`` or stacked ``(m, P, H, U, V, d)``. Internally every candidate is turned
into its normalized next-token table, so all rules run vectorized over candidates.

Comparisons use the coverage convention of THEORY.md §0: a rival k *covers* example i
against candidate j when :math:`\ell_{k,i} - \ell_{j,i} \ge \log N - \tau` with
τ = 1e-9 nats (:data:`covsim.exact.TIE_TOLERANCE`); a candidate with
:math:`\ell_{j,i} = -\infty` is covered by every rival that is finite there, and
:math:`-\infty - (-\infty)` never covers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from covsim._validate import check_distribution, check_key, check_positive_int, check_thresholds, is_concrete
from covsim.bon import sample_responses
from covsim.exact import TIE_TOLERANCE, kl
from covsim.models import LinearModel, SequenceModel, TabularModel, log_prob, next_token_log_probs

__all__ = [
    "candidate_tables",
    "heldout_logliks",
    "tournament",
    "offset_tournament",
    "onpolicy_logliks",
    "select_min_cross_entropy",
    "select_min_kl",
    "compare_selections",
]

_CHUNK_ELEMENTS = 1 << 22
"""Most (candidate, rival, example) comparisons in one block of the tournament."""

_EXAMPLE_BLOCK = 32
"""Held-out examples per block of the tournament (cache-sized; measured on CPU)."""


# ---------------------------------------------------------------------------
# candidate sets


def _stacked_tables(model) -> tuple[Array, int]:
    """Normalized tables ``(m, P|1, H|1, U|1, V)`` of a stacked model."""
    if isinstance(model, TabularModel):
        if model.logits.ndim != 5:
            raise ValueError(
                "candidates: a stacked TabularModel needs logits of shape (m, P, H, U, V), got "
                f"shape {model.logits.shape}; pass a list for a single model"
            )
        return jax.nn.log_softmax(model.logits, axis=-1), model.horizon
    if isinstance(model, LinearModel):
        theta, feats = model.theta, model.features
        if theta.ndim != 2 or feats.ndim not in (5, 6):
            raise ValueError(
                "candidates: a stacked LinearModel needs theta of shape (m, d) and features of "
                f"shape (P, H, U, V, d) or (m, P, H, U, V, d), got theta {theta.shape} and "
                f"features {feats.shape}; pass a list for a single model"
            )
        if feats.ndim == 5:
            logits = jnp.einsum("phuvd,md->mphuv", feats, theta)
        else:
            logits = jnp.einsum("mphuvd,md->mphuv", feats, theta)
        return jax.nn.log_softmax(logits, axis=-1), model.horizon
    raise ValueError(
        "candidates: expected a list of TabularModel/LinearModel or one stacked model, got "
        f"{type(model).__name__}"
    )


def candidate_tables(models) -> tuple[Array, int]:
    r"""Normalized next-token tables of all candidates, stacked on a leading axis.

    **Arguments:** `models`: a list/tuple of models, or one stacked model (module docstring).

    **Returns:** ``(tables, H)`` with ``tables`` of shape ``(m, P|1, H|1, U|1, V)``
    (:math:`\log\pi_j(v|x,h,u)`, broadcast axes kept where all candidates share them).
    """
    if not isinstance(models, (list, tuple)):
        return _stacked_tables(models)
    if len(models) == 0:
        raise ValueError("candidates: models must contain at least one candidate, got an empty list")
    horizons = {m.horizon for m in models}
    vocabs = {m.vocab_size for m in models}
    if len(horizons) > 1 or len(vocabs) > 1:
        raise ValueError(
            f"candidates: all candidates must share H and V, got horizons {sorted(horizons)} and "
            f"vocabulary sizes {sorted(vocabs)}"
        )
    tables = [next_token_log_probs(m) for m in models]
    try:
        shape = jnp.broadcast_shapes(*(t.shape for t in tables))
    except ValueError as err:
        raise ValueError(
            f"candidates: the candidates' tables do not broadcast together: "
            f"{[t.shape for t in tables]}"
        ) from err
    dtype = jnp.result_type(*(t.dtype for t in tables))
    stacked = jnp.stack([jnp.broadcast_to(t, shape).astype(dtype) for t in tables])
    return stacked, horizons.pop()


def _check_heldout(x, y, horizon: int, vocab: int, num_prompts: int, where: str):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 1 or y.ndim != 2 or y.shape != (x.shape[0], horizon):
        raise ValueError(
            f"{where}: x must have shape (n,) and y shape (n, H) with H={horizon}, got x "
            f"{x.shape} and y {y.shape}"
        )
    if not (jnp.issubdtype(x.dtype, jnp.integer) and jnp.issubdtype(y.dtype, jnp.integer)):
        raise ValueError(f"{where}: x and y must be integer arrays, got {x.dtype} and {y.dtype}")
    if is_concrete(x, y) and x.shape[0]:
        xs, ys = np.asarray(x), np.asarray(y)
        if num_prompts > 1 and (xs.min() < 0 or xs.max() >= num_prompts):
            raise ValueError(f"{where}: prompts x must lie in [0, {num_prompts}), got "
                             f"[{xs.min()}, {xs.max()}]")
        if ys.min() < 0 or ys.max() >= vocab:
            raise ValueError(f"{where}: tokens y must lie in [0, {vocab}), got "
                             f"[{ys.min()}, {ys.max()}]")
    return x, y


@partial(jax.jit, static_argnums=1)
def _table_logliks(tables: Array, horizon: int, x: Array, y: Array) -> Array:
    """``log π_j(y_i|x_i)`` for every candidate table, ``(m, n)``."""

    def one(table):
        model = TabularModel(table, horizon)
        return jax.vmap(lambda xi, yi: log_prob(model, xi, yi))(x, y)

    return jax.vmap(one)(tables)


def heldout_logliks(models, x, y) -> Array:
    r"""Held-out log-likelihood matrix :math:`\ell_{j,i} = \log\pi_j(y_i|x_i)` (v2 Eq. 28 input).

    **Arguments:**

    - `models`: a list of models or a stacked model (module docstring).
    - `x`: integer prompts ``(n,)``; `y`: integer responses ``(n, H)``.

    **Returns:** ``(m, n)``; ``-inf`` where a candidate gives the response probability 0.
    """
    tables, horizon = candidate_tables(models)
    x, y = _check_heldout(x, y, horizon, tables.shape[-1], tables.shape[1], "heldout_logliks")
    return _table_logliks(tables, horizon, x, y)


# ---------------------------------------------------------------------------
# tournaments


def _check_logliks(logliks, where: str) -> Array:
    logliks = jnp.asarray(logliks)
    if logliks.ndim != 2 or logliks.shape[0] < 1 or logliks.shape[1] < 1:
        raise ValueError(
            f"{where}: logliks must have shape (m, n) with m, n >= 1 (candidates × held-out "
            f"examples), got shape {logliks.shape}"
        )
    if not jnp.issubdtype(logliks.dtype, jnp.floating):
        logliks = logliks.astype(jnp.result_type(float))
    if is_concrete(logliks):
        values = np.asarray(logliks)
        if np.any(np.isnan(values)) or np.any(values == np.inf):
            raise ValueError(
                f"{where}: logliks must be log-probabilities in [-inf, 0] without NaN or +inf, "
                f"got {values[np.isnan(values) | (values == np.inf)].ravel()[0]!r}"
            )
    return logliks


def _log_level(N, dtype) -> Array:
    return jnp.log(jnp.asarray(N, dtype=dtype)) - TIE_TOLERANCE


def _covers(rival: Array, base: Array, log_level: Array) -> Array:
    """1{rival − base ≥ log N − τ}, with rival = −inf never covering (broadcasting)."""
    return (rival - base >= log_level) & ~jnp.isneginf(rival)


def _cover_counts(logliks: Array, log_level: Array) -> Array:
    r"""``counts[j, k] = #{i : ℓ_{k,i} − ℓ_{j,i} ≥ log N − τ}``, ``(m, m)`` int32.

    The comparison is written ``ℓ_{k,i} ≥ max(ℓ_{j,i} + log N − τ, lowest finite)``: one
    comparison per (j, k, i); a −inf rival never passes and a −inf base is passed by every
    finite rival. A ``lax.scan`` over blocks of examples keeps each block of ``(m, m, b)``
    comparisons cache-resident (b ≤ 32), so memory stays O(m² + m·n).
    """
    m, n = logliks.shape
    block = int(max(1, min(_EXAMPLE_BLOCK, n, _CHUNK_ELEMENTS // (m * m))))
    num_blocks = -(-n // block)
    lowest = jnp.finfo(logliks.dtype).min
    threshold = jnp.maximum(logliks + log_level, lowest)
    pad = num_blocks * block - n
    # Padded examples: rival −inf, threshold +inf, so they never count.
    rivals = jnp.pad(logliks, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    threshold = jnp.pad(threshold, ((0, 0), (0, pad)), constant_values=jnp.inf)
    rivals = rivals.reshape(m, num_blocks, block).transpose(1, 0, 2)
    threshold = threshold.reshape(m, num_blocks, block).transpose(1, 0, 2)

    def add_block(counts, blocks):
        rival, base = blocks  # (m, b) each
        hits = rival[None, :, :] >= base[:, None, :]  # [j, k, i]
        return counts + jnp.sum(hits, axis=2, dtype=jnp.int32), None

    counts, _ = jax.lax.scan(add_block, jnp.zeros((m, m), jnp.int32), (rivals, threshold))
    return counts


def _select(scores: Array, mean_loglik: Array) -> Array:
    """argmin of scores; ties: highest mean held-out log-likelihood, then lowest index."""
    tied = scores == jnp.min(scores)
    best_ll = jnp.max(jnp.where(tied, mean_loglik, -jnp.inf))
    return jnp.argmax(tied & (mean_loglik == best_ll))


@jax.jit
def _tournament(logliks: Array, log_level: Array):
    counts = _cover_counts(logliks, log_level)
    worst = jnp.max(counts, axis=1)
    index = _select(worst, jnp.mean(logliks, axis=1))
    return index, worst.astype(logliks.dtype) / logliks.shape[1]


def tournament(logliks, N) -> tuple[Array, Array]:
    r"""Simple tournament selection (arXiv 2510.15020 v2, Eqs. 28–29, Thm 6.3; THEORY.md §7.1).

    .. math::

        \mathrm{score}_j = \max_{k} \frac1n \#\{i : \ell_{k,i} - \ell_{j,i} \ge \log N\}
        = \max_k \widehat{\mathrm{Cov}}_N(\pi_k\|\pi_j),\qquad
        \hat\jmath = \operatorname{argmin}_j \mathrm{score}_j,

    with ties in the comparison counted within 1e-9 nats, k ranging over all candidates
    (k = j contributes 0 when N > 1), and ties in the score broken by the highest mean
    held-out log-likelihood, then the lowest index. O(m²n) work, vectorized and chunked
    over candidates so that memory stays O(m·n); jit-compatible.

    **Arguments:**

    - `logliks`: ``(m, n)`` held-out log-likelihoods :math:`\log\pi_j(y_i|x_i)`
      (``-inf`` allowed, e.g. from :func:`heldout_logliks`).
    - `N`: the coverage level, ≥ 1 (scalar).

    **Returns:** ``(index, scores)``: the selected candidate (int scalar) and ``(m,)`` scores in [0, 1].
    """
    logliks = _check_logliks(logliks, "tournament")
    _check_level(N, "tournament")
    return _tournament(logliks, _log_level(N, logliks.dtype))


def _check_level(N, where: str) -> None:
    if np.ndim(N) != 0:
        raise ValueError(f"{where}: N must be a scalar, got shape {np.shape(N)}")
    N = check_thresholds(N, where)


@jax.jit
def _offset_tournament(logliks, onpolicy, log_level, gamma):
    n = logliks.shape[1]
    counts = _cover_counts(logliks, log_level)  # counts[j, k]
    own = jnp.arange(onpolicy.shape[0])

    def onpolicy_coverage(generated, j):  # generated: (m, n, S) = log π_k(y^{(j)}_{i,s})
        hits = _covers(generated, generated[j][None], log_level).astype(logliks.dtype)
        return jnp.mean(hits, axis=(1, 2))

    on = jax.lax.map(lambda args: onpolicy_coverage(*args), (onpolicy, own))  # on[j, k]
    combined = counts.astype(logliks.dtype) / n - 2.0 * gamma * on
    scores = jnp.max(combined, axis=1)
    return _select(scores, jnp.mean(logliks, axis=1)), scores


def offset_tournament(logliks, N, a, onpolicy_logliks) -> tuple[Array, Array]:
    r"""Offset tournament (arXiv 2510.15020 v2, Eq. 32, Thm 6.4; THEORY.md §7.2).

    .. math::

        \mathrm{score}(\pi_j) = \max_{k}\Big[\widehat{\mathrm{Cov}}_N(\pi_k\|\pi_j)
        - 2\gamma\,\widehat{\mathrm{Cov}}^{\pi_j}_N(\pi_k\|\pi_j)\Big],\qquad \gamma = N^a,

    where :math:`\widehat{\mathrm{Cov}}_N(\pi_k\|\pi_j)` is the held-out count of
    :func:`tournament` and the on-policy term
    :math:`\widehat{\mathrm{Cov}}^{\pi_j}_N(\pi_k\|\pi_j) = \frac{1}{nS}\sum_{i,s}
    1\{\log\pi_k(y^{(j)}_{i,s}|x_i) - \log\pi_j(y^{(j)}_{i,s}|x_i) \ge \log N\}` uses S
    generations :math:`y^{(j)}_{i,s}\sim\pi_j(\cdot|x_i)` per held-out prompt. The
    theorem needs :math:`N^{1-2a} \ge 8` (THEORY.md §10.4); not enforced. Ties as in
    :func:`tournament`.

    **Arguments:**

    - `logliks`: ``(m, n)`` held-out log-likelihoods.
    - `N`: level ≥ 1 (scalar); `a`: exponent ≥ 0 of γ = N^a.
    - `onpolicy_logliks`: ``(m, m, n, S)``, ``[j, k, i, s] = log π_k(y^{(j)}_{i,s}|x_i)``
      (see :func:`onpolicy_logliks`).

    **Returns:** ``(index, scores)`` with ``scores`` of shape ``(m,)`` (may be negative).
    """
    logliks = _check_logliks(logliks, "offset_tournament")
    _check_level(N, "offset_tournament")
    if np.ndim(a) != 0 or (is_concrete(a) and not (np.isfinite(a) and float(a) >= 0)):
        raise ValueError(f"offset_tournament: a must be a finite scalar >= 0, got {a!r}")
    onpolicy = jnp.asarray(onpolicy_logliks, dtype=logliks.dtype)
    m, n = logliks.shape
    if onpolicy.ndim != 4 or onpolicy.shape[:3] != (m, m, n) or onpolicy.shape[3] < 1:
        raise ValueError(
            f"offset_tournament: onpolicy_logliks must have shape (m, m, n, S) = ({m}, {m}, {n}, S), "
            f"got shape {onpolicy.shape}"
        )
    log_level = _log_level(N, logliks.dtype)
    gamma = jnp.asarray(N, dtype=logliks.dtype) ** jnp.asarray(a, dtype=logliks.dtype)
    return _offset_tournament(logliks, onpolicy, log_level, gamma)


def onpolicy_logliks(models, x, S: int, *, key: Array) -> Array:
    r"""On-policy log-likelihoods for :func:`offset_tournament` (v2 Eq. 32).

    For each candidate j draws S responses :math:`y^{(j)}_{i,s}\sim\pi_j(\cdot|x_i)` per
    held-out prompt and scores them under every candidate k.

    **Arguments:** `models` (list or stacked), `x` integer prompts ``(n,)``, `S` generations
    per prompt (static int), `key` (keyword-only, required).

    **Returns:** ``(m, m, n, S)`` with ``[j, k, i, s] = log π_k(y^{(j)}_{i,s}|x_i)``.
    """
    check_key(key, "onpolicy_logliks")
    S = check_positive_int(S, "S", "onpolicy_logliks")
    tables, horizon = candidate_tables(models)
    x = jnp.asarray(x)
    if x.ndim != 1 or not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"onpolicy_logliks: x must be integer prompts of shape (n,), got "
                         f"{x.dtype} array of shape {x.shape}")
    keys = jax.random.split(key, tables.shape[0])

    def generations_of(args):
        table, k = args
        ys = sample_responses(TabularModel(table, horizon), x, S, key=k)  # (n, S, H)
        flat_x = jnp.repeat(x, S)
        ll = _table_logliks(tables, horizon, flat_x, ys.reshape(-1, horizon))  # (m, n·S)
        return ll.reshape(tables.shape[0], x.shape[0], S)

    return jax.lax.map(generations_of, (tables, keys))


# ---------------------------------------------------------------------------
# baselines


def select_min_cross_entropy(logliks) -> tuple[Array, Array]:
    r"""Min-cross-entropy selection: :math:`\hat\jmath = \operatorname{argmax}_j \frac1n\sum_i \ell_{j,i}`.

    (The likelihood/MLE rule over a finite class; THEORY.md §1, §7.) Ties: lowest index.

    **Returns:** ``(index, cross_entropy)`` with the held-out cross-entropies
    :math:`-\frac1n\sum_i\ell_{j,i}` of shape ``(m,)`` (``+inf`` allowed).
    """
    logliks = _check_logliks(logliks, "select_min_cross_entropy")
    cross_entropy = -jnp.mean(logliks, axis=1)
    return jnp.argmin(cross_entropy), cross_entropy


def select_min_kl(models, truth: SequenceModel, mu) -> tuple[Array, Array]:
    r"""Oracle min-KL selection: :math:`\operatorname{argmin}_j D_{KL}(\pi_D\|\pi_j)`, exact (covsim.kl).

    (THEORY.md §1, §9 row "5.9 / 7".) Ties: lowest index.

    **Returns:** ``(index, kls)`` with ``kls`` of shape ``(m,)`` (``+inf`` allowed).
    """
    tables, horizon = candidate_tables(models)
    mu = check_distribution(mu, None, "select_min_kl")
    values = jax.vmap(lambda t: kl(truth, TabularModel(t, horizon), mu))(tables)
    return jnp.argmin(values), values


def compare_selections(models, x, y, N, *, truth: SequenceModel | None = None, mu=None,
                       a=None, key: Array | None = None, num_generations: int = 8) -> dict[str, Any]:
    r"""Every selection rule side by side on one held-out sample (THEORY.md §7, §9).

    **Arguments:**

    - `models`: candidates (list or stacked); `x` ``(n,)``, `y` ``(n, H)``: held-out sample.
    - `N`: tournament level (scalar ≥ 1).
    - `truth`, `mu`: π_D and μ, for the oracle min-KL rule (both needed).
    - `a`: exponent of the offset tournament (γ = N^a); with it, `key` is required and
      `num_generations` responses are drawn per held-out prompt and candidate.

    **Returns:** a dict mapping rule name to the selected index (Python int):
    ``"tournament"``, ``"min_cross_entropy"``, and ``"offset_tournament"`` (if `a` is given),
    ``"min_kl"`` (if `truth` is given).
    """
    logliks = heldout_logliks(models, x, y)
    picks = {
        "tournament": int(tournament(logliks, N)[0]),
        "min_cross_entropy": int(select_min_cross_entropy(logliks)[0]),
    }
    if a is not None:
        check_key(key, "compare_selections (offset tournament, a given)")
        generated = onpolicy_logliks(models, x, num_generations, key=key)
        picks["offset_tournament"] = int(offset_tournament(logliks, N, a, generated)[0])
    if truth is not None:
        if mu is None:
            raise ValueError("compare_selections: min-KL selection needs mu (the prompt law) "
                             "together with truth, got mu=None")
        picks["min_kl"] = int(select_min_kl(models, truth, mu)[0])
    return picks
