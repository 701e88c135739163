r"""Finite-context autoregressive sequence models.

Every instance of arXiv 2510.15020 that covsim simulates is an autoregressive law
whose next-token distribution depends on the prompt index ``x``, the position ``h``
and (at most) the previous token ``u = y_{h-1}``:

.. math::

    \pi(y \mid x) = \prod_{h=1}^{H} \pi(y_h \mid x, h, y_{h-1}),

with ``u = V`` (the start context, "BOS") at the first position. Two concrete
models are provided:

- :class:`TabularModel` — arbitrary logits ``logits[x, h, u, v]``;
- :class:`LinearModel` — the paper's autoregressive linear model (v2 Eq. 3),
  ``logits = features @ theta``.

The prompt, position and previous-token axes may have size 1 and then broadcast.
Models act on one sequence (``log_prob(model, x, y)``); use ``jax.vmap`` for batches.
"""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from covsim._validate import (
    check_distribution,
    check_key,
    check_model,
    check_tokens,
    guard_distribution,
    is_concrete,
)

__all__ = [
    "TabularModel",
    "LinearModel",
    "SequenceModel",
    "next_token_log_probs",
    "step_log_probs",
    "log_prob",
    "sample",
    "pad_horizon",
]


def _resolve_horizon(position_axis: int, horizon: int | None, name: str) -> int:
    if horizon is None:
        if position_axis == 1:
            raise ValueError(
                f"{name}: the position axis has size 1, so `horizon` must be given "
                "(the sequence length H); got horizon=None"
            )
        return int(position_axis)
    horizon = int(horizon)
    if horizon < 1:
        raise ValueError(f"{name}: horizon must be a positive integer, got {horizon}")
    if position_axis not in (1, horizon):
        raise ValueError(
            f"{name}: the position axis has size {position_axis} but horizon={horizon}; "
            "it must be 1 (broadcast) or equal to horizon"
        )
    return horizon


def _check_context_axes(shape: tuple[int, ...], name: str, what: str) -> None:
    """Check ``shape = (P, H, U, V, ...)`` with ``U`` in {1, V + 1}."""
    if len(shape) < 4:
        raise ValueError(
            f"{name}: {what} must have shape (P, H, V+1, V{', d' if what == 'features' else ''}), "
            f"got shape {shape}"
        )
    vocab = shape[3]
    if vocab < 1:
        raise ValueError(f"{name}: vocabulary size must be >= 1, got {vocab}")
    if shape[2] not in (1, vocab + 1):
        raise ValueError(
            f"{name}: the previous-token axis of {what} has size {shape[2]}; it must be 1 "
            f"(broadcast) or V+1 = {vocab + 1} (index V is the start context)"
        )


class TabularModel(eqx.Module):
    r"""Tabular finite-context model: :math:`\pi(v\mid x,h,u) = \mathrm{softmax}(\text{logits}[x,h,u])_v`.

    **Arguments:**

    - `logits`: array of shape ``(P, H, V+1, V)``; ``logits[x, h, u, v]`` is the logit of
      token ``v`` at position ``h`` (0-based) of prompt ``x`` after previous token ``u``;
      ``u = V`` is the start context used at ``h = 0``. The P, H and V+1 axes may have
      size 1 (broadcast). Entries may be ``-inf`` (probability exactly 0), but every
      context needs at least one finite logit.
    - `horizon`: the sequence length H; required when the position axis has size 1.
    """

    logits: Array
    horizon: int = eqx.field(static=True)

    def __init__(self, logits, horizon: int | None = None):
        logits = jnp.asarray(logits)
        if not jnp.issubdtype(logits.dtype, jnp.floating):
            logits = logits.astype(jnp.result_type(float))
        _check_context_axes(logits.shape, "TabularModel", "logits")
        if logits.ndim != 4:
            raise ValueError(
                f"TabularModel: logits must have shape (P, H, V+1, V), got shape {logits.shape}"
            )
        self.horizon = _resolve_horizon(logits.shape[1], horizon, "TabularModel")
        self.logits = logits
        if is_concrete(logits):  # NaN, +inf or an all -inf context refused at construction
            check_model(self, "TabularModel", "")

    @property
    def vocab_size(self) -> int:
        return self.logits.shape[-1]

    @property
    def num_prompts(self) -> int:
        """Size of the prompt axis (1 means: the same law for every prompt)."""
        return self.logits.shape[-4]


class LinearModel(eqx.Module):
    r"""Autoregressive linear model (arXiv 2510.15020 v2, Eq. 3).

    .. math::

        \pi_\theta(v \mid x, h, u) = \frac{\exp\langle\theta, \phi(x,h,u,v)\rangle}
        {\sum_{v'} \exp\langle\theta, \phi(x,h,u,v')\rangle}.

    **Arguments:**

    - `features`: array ``(P, H, V+1, V, d)``; P, H and V+1 axes may have size 1.
    - `theta`: parameter vector ``(d,)``.
    - `horizon`: the sequence length H; required when the position axis has size 1.
    """

    features: Array
    theta: Array
    horizon: int = eqx.field(static=True)

    def __init__(self, features, theta, horizon: int | None = None):
        features = jnp.asarray(features)
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(features.dtype, jnp.floating):
            features = features.astype(jnp.result_type(float))
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            theta = theta.astype(features.dtype)
        if features.ndim != 5:
            raise ValueError(
                "LinearModel: features must have shape (P, H, V+1, V, d), "
                f"got shape {features.shape}"
            )
        _check_context_axes(features.shape, "LinearModel", "features")
        if theta.shape != features.shape[-1:]:
            raise ValueError(
                f"LinearModel: theta must have shape (d,) = ({features.shape[-1]},) to match "
                f"features {features.shape}, got shape {theta.shape}"
            )
        self.horizon = _resolve_horizon(features.shape[1], horizon, "LinearModel")
        self.features = features
        self.theta = theta
        if is_concrete(features, theta):  # non-finite features or theta refused at construction
            check_model(self, "LinearModel", "")

    @property
    def vocab_size(self) -> int:
        return self.features.shape[-2]

    @property
    def num_prompts(self) -> int:
        """Size of the prompt axis (1 means: the same law for every prompt)."""
        return self.features.shape[-5]

    @property
    def dim(self) -> int:
        return self.features.shape[-1]

    def logits(self) -> Array:
        """The logits ``features @ theta``, shape ``(P, H, V+1, V)`` (broadcast axes kept)."""
        return self.features @ self.theta


SequenceModel = TabularModel | LinearModel


def pad_horizon(model: SequenceModel, horizon: int) -> SequenceModel:
    r"""The same law extended to `horizon` positions by uniform next-token laws.

    Positions :math:`h \ge H` get logits 0 (a tabular model) or features 0 (a linear model,
    whatever θ), i.e. :math:`\pi(v\mid x,h,u) = 1/V` under every padded model. Two laws padded
    to the same horizon agree there exactly, so each padded position adds exactly 0 to every
    per-token log-ratio :math:`\log p - \log q`, per-step KL and Hellinger term; the padded
    pair has the same sequence KL, Hellinger distance and coverage profile as the original
    pair (arXiv 2510.15020 v2, Def. 1.1: the ratio :math:`p(y|x)/q(y|x)` is a product over
    positions), and :func:`sample` draws the same first H tokens from the same key (keys
    are split per position). The data tokens at padded positions carry no information:
    pass ``horizon=H`` to :func:`covsim.fit_mle` to mask them.

    Use: one compiled program for a sweep over H (every H padded to the largest; the true
    H a traced argument). The cost is the work of the padded positions.

    **Arguments:** `model` (:class:`TabularModel` or :class:`LinearModel`); `horizon` ≥
    ``model.horizon`` (a Python int).

    **Returns:** a model of the same type with ``horizon`` positions (a broadcast position
    axis is materialized).
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < model.horizon:
        raise ValueError(f"pad_horizon: horizon must be a Python int >= the model's horizon "
                         f"H={model.horizon}, got {horizon!r}")
    if horizon == model.horizon:
        return model
    extra = horizon - model.horizon

    def pad(a):  # (P, H|1, U, V, ...) -> (P, horizon, U, V, ...) with zeros appended
        full = jnp.broadcast_to(a, a.shape[:1] + (model.horizon,) + a.shape[2:])
        return jnp.concatenate([full, jnp.zeros(a.shape[:1] + (extra,) + a.shape[2:], a.dtype)],
                               axis=1)

    if isinstance(model, LinearModel):
        return LinearModel(pad(model.features), model.theta, horizon=horizon)
    if isinstance(model, TabularModel):
        return TabularModel(pad(model.logits), horizon=horizon)
    raise TypeError(f"pad_horizon: expected a TabularModel or LinearModel, got {type(model).__name__}")


def _logits(model: SequenceModel) -> Array:
    if isinstance(model, TabularModel):
        return model.logits
    if isinstance(model, LinearModel):
        return model.logits()
    raise TypeError(f"expected a TabularModel or LinearModel, got {type(model).__name__}")


def next_token_log_probs(model: SequenceModel) -> Array:
    r"""All next-token log-probabilities :math:`\log\pi(v\mid x,h,u)`.

    **Returns:** an array ``(P, H, U, V)`` normalized over the last axis, where the P,
    H and U axes keep the model's broadcast sizes (1 or full).
    """
    return jax.nn.log_softmax(_logits(model), axis=-1)


def step_log_probs(table: Array, h) -> Array:
    """Slice a ``(P, H, U, V)`` table at position ``h`` (handles a broadcast H axis).

    Returns ``(P, U, V)``. ``h`` may be traced.
    """
    if table.shape[1] == 1:
        return table[:, 0]
    return jax.lax.dynamic_index_in_dim(table, h, axis=1, keepdims=False)


def _context_indices(table: Array, x, y: Array):
    """Index arrays (x, h, u) selecting the context of each token of ``y``."""
    horizon = y.shape[-1]
    vocab = table.shape[-1]
    prev = jnp.concatenate([jnp.full((1,), vocab, dtype=y.dtype), y[:-1]])
    h_idx = jnp.arange(horizon) if table.shape[1] > 1 else jnp.zeros(horizon, dtype=int)
    u_idx = prev if table.shape[2] > 1 else jnp.zeros_like(prev)
    x_idx = jnp.broadcast_to(x, (horizon,)) if table.shape[0] > 1 else jnp.zeros(horizon, dtype=int)
    return x_idx, h_idx, u_idx


def token_log_probs(model: SequenceModel, x, y: Array) -> Array:
    r"""Per-token log-probabilities :math:`\log\pi(y_h\mid x, y_{<h})`, shape ``(H,)``."""
    table = next_token_log_probs(model)
    x_idx, h_idx, u_idx = _context_indices(table, x, y)
    return table[x_idx, h_idx, u_idx, y]


def log_prob(model: SequenceModel, x, y: Array) -> Array:
    r"""Sequence log-probability :math:`\log\pi(y\mid x) = \sum_h \log\pi(y_h\mid x,y_{<h})`.

    **Arguments:**

    - `model`: a :class:`TabularModel` or :class:`LinearModel`.
    - `x`: prompt index (integer scalar).
    - `y`: response, integer array of shape ``(H,)`` with tokens in ``[0, V)``.

    **Returns:** a scalar (``-inf`` when ``y`` has probability 0). vmap for batches.
    """
    y = jnp.asarray(y)
    if y.ndim != 1 or y.shape[0] != model.horizon:
        raise ValueError(
            f"log_prob: y must have shape (H,) = ({model.horizon},), got shape {y.shape}; "
            "use jax.vmap for a batch of sequences"
        )
    y = check_tokens(y, model.vocab_size, "log_prob")
    x = check_tokens(jnp.asarray(x), max(model.num_prompts, 1), "log_prob", name="x") \
        if model.num_prompts > 1 else x
    model = check_model(model, "log_prob")
    return _log_prob(model, x, y)


@jax.jit
def _log_prob(model, x, y):
    return jnp.sum(token_log_probs(model, x, y))


def _invert_cdf(cdf: Array, u: Array) -> Array:
    """Token index per row of the unnormalized CDF ``cdf`` (..., V) for uniforms ``u`` (...,).

    Returns min{v : u·total < cdf_v} = #{v : cdf_v ≤ u·total}. Zero-probability tokens have an
    empty interval and are never drawn (for u < 1, u·total < total in round-to-nearest).
    """
    tok = jnp.sum(cdf <= u[..., None] * cdf[..., -1:], axis=-1)
    return jnp.minimum(tok, cdf.shape[-1] - 1)


def _inverse_cdf(key: Array, log_probs: Array) -> Array:
    """One token per row of ``log_probs`` (n, V) from a single uniform each.

    (One uniform per token instead of V Gumbels: the sampler's cost is dominated by random bits.)
    """
    cdf = jnp.cumsum(jnp.exp(log_probs), axis=-1)
    return _invert_cdf(cdf, jax.random.uniform(key, cdf.shape[:-1], dtype=cdf.dtype))


def sample(model: SequenceModel, mu, n: int, *, key: Array) -> tuple[Array, Array]:
    r"""Draw ``n`` i.i.d. pairs :math:`x\sim\mu`, :math:`y\sim\pi(\cdot\mid x)`.

    Sampling is a ``lax.scan`` over positions with pre-split keys, drawing each token by
    inversion of its conditional CDF (one uniform per token; in float32 tokens whose
    probability is below the CDF's resolution, about 6e-8, are never drawn — use float64
    for rare-event Monte Carlo).

    **Arguments:**

    - `model`: the law to sample from.
    - `mu`: prompt distribution, shape ``(P,)``.
    - `n`: number of sequences (static Python int).
    - `key`: a JAX PRNG key (keyword-only, required).

    **Returns:** ``(x, y)`` with ``x`` of shape ``(n,)`` and ``y`` of shape ``(n, H)``
    (integer arrays).
    """
    check_key(key, "sample")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"sample: n must be a positive Python int, got {n!r}")
    if jnp.ndim(mu) != 1:
        raise ValueError(f"sample: mu must have shape (P,), got shape {jnp.shape(mu)}")
    if model.num_prompts not in (1, jnp.shape(mu)[0]):
        raise ValueError(
            f"sample: mu has P={jnp.shape(mu)[0]} prompts but the model has {model.num_prompts}"
        )
    mu = check_distribution(mu, model.num_prompts, "sample")
    model = check_model(model, "sample")
    # with one prompt the draws ignore mu: the check is attached to the result
    return guard_distribution(_sample(model, jnp.asarray(mu), key, n), mu, "sample")


@partial(jax.jit, static_argnames=("n",))
def _sample(model: SequenceModel, mu: Array, key: Array, n: int) -> tuple[Array, Array]:
    """:func:`sample` after validation; compiled once per (model structure, shapes, n)."""
    x, ys, _ = draw_paths(next_token_log_probs(model), mu, key, n, model.horizon)
    return x, ys.T


def draw_paths(table: Array, mu: Array, key: Array, n: int, horizon: int, path_value=None,
               total_dtype=None):
    r"""The sampler's scan (shared by :func:`sample` and Monte Carlo): ``n`` prompts
    :math:`x\sim\mu` and tokens :math:`y_h\sim\pi(\cdot|x,h,y_{h-1})` by inversion of the
    conditional CDF, one uniform per token, from pre-split keys.

    The CDFs ``cumsum(exp(table))`` are computed once for the whole ``(P, H, U, V)`` table
    (elementwise the same arithmetic as per gathered row, so the same draws), and each step
    gathers one CDF row per sequence.

    With ``path_value(h, x, prev, tok) -> (n,)`` the scan accumulates
    :math:`\sum_h \text{path\_value}` along each path instead of stacking the tokens (memory
    O(n), not O(n·H)), in `total_dtype` (default the table's). Returns ``(x, ys, total)``: ``ys`` ``(H, n)`` (``None`` with
    `path_value`), ``total`` ``(n,)`` (``None`` without).
    """
    vocab = table.shape[-1]
    cdf_table = jnp.cumsum(jnp.exp(table), axis=-1)
    key_x, key_y = jax.random.split(key)
    x = _inverse_cdf(key_x, jnp.broadcast_to(jnp.log(mu), (n, mu.shape[0])))
    step_keys = jax.random.split(key_y, horizon)
    x_idx = x if table.shape[0] > 1 else jnp.zeros_like(x)

    def draw(prev, h, k):
        cdf_h = step_log_probs(cdf_table, h)  # (P, U, V)
        u_idx = prev if table.shape[2] > 1 else jnp.zeros_like(prev)
        rows = cdf_h[x_idx, u_idx]
        return _invert_cdf(rows, jax.random.uniform(k, rows.shape[:-1], dtype=rows.dtype))

    prev0 = jnp.full((n,), vocab, dtype=x.dtype)
    if path_value is None:
        def step(prev, inputs):
            tok = draw(prev, *inputs)
            return tok, tok

        _, ys = jax.lax.scan(step, prev0, (jnp.arange(horizon), step_keys))
        return x, ys, None

    def step_sum(carry, inputs):
        prev, total = carry
        h, _ = inputs
        tok = draw(prev, *inputs)
        return (tok, total + path_value(h, x, prev, tok)), None

    zero = jnp.zeros((n,), dtype=table.dtype if total_dtype is None else total_dtype)
    (_, total), _ = jax.lax.scan(step_sum, (prev0, zero), (jnp.arange(horizon), step_keys))
    return x, None, total
