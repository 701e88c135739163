r"""Test-time-training decoding π^TTT_θ (arXiv 2510.15020 v2, Eqs. 22–23; THEORY.md §6.4).

π^TTT_θ is an improper model built from an AR-linear class: start from
:math:`\vartheta_0 = \theta`; the law of token h is :math:`\pi_{\vartheta_{h-1}}(\cdot|x,y_{<h})`;
once :math:`y_h` is fixed (sampled, or teacher-forced when scoring),
:math:`\vartheta_h = \mathrm{Proj}_\Theta(\vartheta_{h-1} + \eta\nabla\log\pi_{\vartheta_{h-1}}(y_h|x,y_{<h}))`;
reset to θ for the next sequence. Hence

.. math::

    \log\pi^{TTT}_\theta(y|x) = \sum_{h=1}^H \log\pi_{\vartheta_{h-1}}(y_h|x,y_{<h}).

Decoding must use the training η. With ``learning_rate = 0`` and θ ∈ Θ, π^TTT_θ = π_θ.
All functions act on one sequence or are chunked Monte Carlo under one ``jit``; vmap
for batches.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import Array

from covsim._validate import (
    check_distribution,
    check_key,
    check_positive_int,
    check_thresholds,
    guard_distribution,
)
from covsim.exact import TIE_TOLERANCE, _kl_context
from covsim.fit.sgd import _gather_contexts, _token_score, projection
from covsim.constraints import Ball, Box
from covsim.metrics import DEFAULT_TOKEN_BUDGET, MCEstimate
from covsim.models import LinearModel, SequenceModel, next_token_log_probs, sample

__all__ = ["ttt_log_prob", "ttt_token_log_probs", "ttt_sample", "ttt_kl", "ttt_coverage"]

DEFAULT_CHUNK = 4096


def _check_learner(features_model, theta, constraint, where: str) -> None:
    if not isinstance(features_model, LinearModel):
        raise ValueError(f"{where}: features_model must be a LinearModel, got {type(features_model).__name__}")
    if jnp.shape(theta) != (features_model.dim,):
        raise ValueError(f"{where}: theta must have shape ({features_model.dim},), got {jnp.shape(theta)}")
    if constraint is not None and not isinstance(constraint, (Ball, Box)):
        raise ValueError(f"{where}: constraint must be a Ball, a Box or None, got {type(constraint).__name__}")


def _teacher_forced(features, theta, x, y, learning_rate, constraint, truth_table=None):
    """Scan over positions: per-token log π_{ϑ_{h-1}}(y_h|·) and (optionally) the per-step KL."""
    project = projection(constraint)
    contexts = _gather_contexts(features, x, y)  # (H, V, d)
    teacher = (_gather_contexts(truth_table, x, y) if truth_table is not None
               else jnp.zeros(contexts.shape[:2], dtype=contexts.dtype))

    def step(current, inputs):
        context, token, teacher_h = inputs
        score, log_q = _token_score(context, current, token)
        kl_h = _kl_context(teacher_h, log_q) if truth_table is not None else jnp.zeros((), log_q.dtype)
        return project(current + learning_rate * score), (log_q[token], kl_h)

    _, (token_lp, step_kl) = jax.lax.scan(step, theta.astype(features.dtype), (contexts, y, teacher))
    return token_lp, step_kl


def ttt_token_log_probs(features_model: LinearModel, theta, x, y, *, learning_rate, constraint) -> Array:
    r"""Per-token :math:`\log\pi_{\vartheta_{h-1}}(y_h|x,y_{<h})` of π^TTT_θ (teacher-forced), shape ``(H,)``.

    (arXiv 2510.15020 v2, Eqs. 22–23.) Arguments as :func:`ttt_log_prob`.
    """
    token_lp, _ = _teacher_forced(features_model.features, jnp.asarray(theta), x, jnp.asarray(y),
                                  learning_rate, constraint)
    return token_lp


def ttt_log_prob(features_model: LinearModel, theta, x, y, *, learning_rate, constraint) -> Array:
    r"""Exact sequence log-probability of test-time-training decoding.

    .. math::

        \log\pi^{TTT}_\theta(y|x) = \sum_h \log\pi_{\vartheta_{h-1}}(y_h|x,y_{<h}),\quad
        \vartheta_0=\theta,\ \vartheta_h = \mathrm{Proj}_\Theta\big(\vartheta_{h-1}
        + \eta\nabla\log\pi_{\vartheta_{h-1}}(y_h|x,y_{<h})\big)

    (arXiv 2510.15020 v2, Eqs. 22–23; THEORY.md §6.4).

    **Arguments:**

    - `features_model`: a LinearModel (its features define the class; its theta is ignored).
    - `theta`: θ ``(d,)``; `x`: prompt index; `y`: response ``(H,)``.
    - `learning_rate`: η (the training step size; 0 gives π_θ when θ ∈ Θ).
    - `constraint`: ``Ball``, ``Box`` or ``None``.

    **Returns:** a scalar. vmap for batches.
    """
    _check_learner(features_model, theta, constraint, "ttt_log_prob")
    y = jnp.asarray(y)
    if y.shape != (features_model.horizon,):
        raise ValueError(f"ttt_log_prob: y must have shape (H,) = ({features_model.horizon},), got {y.shape}")
    return jnp.sum(ttt_token_log_probs(features_model, theta, x, y,
                                       learning_rate=learning_rate, constraint=constraint))


def _sample_one(features, theta, x, key, learning_rate, constraint, horizon):
    project = projection(constraint)
    vocab = features.shape[3]
    x_idx = x if features.shape[0] > 1 else 0

    def step(carry, inputs):
        current, prev = carry
        h, k = inputs
        h_idx = h if features.shape[1] > 1 else 0
        u_idx = prev if features.shape[2] > 1 else 0
        context = features[x_idx, h_idx, u_idx]  # (V, d)
        token = jax.random.categorical(k, jax.nn.log_softmax(context @ current))
        score, _ = _token_score(context, current, token)
        return (project(current + learning_rate * score), token), token

    carry0 = (theta.astype(features.dtype), jnp.asarray(vocab))
    _, tokens = jax.lax.scan(step, carry0, (jnp.arange(horizon), jax.random.split(key, horizon)))
    return tokens


@partial(jax.jit, static_argnames=("n", "horizon"))
def _ttt_sample_core(features, theta, log_mu, learning_rate, constraint, key, *, n, horizon):
    key_x, key_y = jax.random.split(key)
    x = jax.random.categorical(key_x, log_mu, shape=(n,))
    y = jax.vmap(_sample_one, in_axes=(None, None, 0, 0, None, None, None))(
        features, theta, x, jax.random.split(key_y, n), learning_rate, constraint, horizon)
    return x, y


def ttt_sample(features_model: LinearModel, theta, mu, n: int, *, key: Array, learning_rate,
               constraint) -> tuple[Array, Array]:
    r"""Draw ``n`` i.i.d. pairs :math:`x\sim\mu`, :math:`y\sim\pi^{TTT}_\theta(\cdot|x)`.

    Each sequence starts from θ; token h is drawn from :math:`\pi_{\vartheta_{h-1}}` and
    then ϑ takes one projected SGD step on it (arXiv 2510.15020 v2, Eqs. 22–23).

    **Arguments:** `features_model`, `theta` ``(d,)``, `mu` ``(P,)``, `n` (static int),
    `key`, `learning_rate` η, `constraint`.

    **Returns:** ``(x (n,), y (n, H))``.
    """
    check_key(key, "ttt_sample")
    n = check_positive_int(n, "n", "ttt_sample")
    _check_learner(features_model, theta, constraint, "ttt_sample")
    mu = check_distribution(mu, features_model.num_prompts, "ttt_sample")
    dtype = features_model.features.dtype
    return _ttt_sample_core(features_model.features, jnp.asarray(theta, dtype),
                            jnp.log(jnp.asarray(mu, dtype)), jnp.asarray(learning_rate, dtype),
                            constraint, key, n=n, horizon=features_model.horizon)


@partial(jax.jit, static_argnames=("statistic", "num_samples", "chunk"))
def _ttt_mc(truth, features, theta, mu, learning_rate, constraint, log_levels, key, *,
            statistic, num_samples, chunk):
    truth_table = next_token_log_probs(truth).astype(features.dtype)
    num_chunks = -(-num_samples // chunk)

    def statistic_of(x, y):
        token_lp, step_kl = _teacher_forced(features, theta, x, y, learning_rate, constraint, truth_table)
        if statistic == "kl":
            return jnp.sum(step_kl)[None]
        log_truth = jnp.sum(_gather_contexts(truth_table, x, y)[jnp.arange(y.shape[0]), y])
        log_model = jnp.sum(token_lp)
        ratio = jnp.where(jnp.isneginf(log_model), jnp.inf,
                          log_truth - jnp.where(jnp.isneginf(log_model), 0.0, log_model))
        return (ratio >= log_levels).astype(features.dtype)

    def body(carry, inputs):
        total, total_sq = carry
        index, k = inputs
        x, y = sample(truth, mu, chunk, key=k)
        values = jax.vmap(statistic_of)(x, y)
        valid = (index * chunk + jnp.arange(chunk)) < num_samples
        values = jnp.where(valid[:, None], values, 0.0)
        return (total + values.sum(0), total_sq + (values**2).sum(0)), None

    width = 1 if statistic == "kl" else log_levels.shape[0]
    zero = jnp.zeros((width,), dtype=features.dtype)
    (total, total_sq), _ = jax.lax.scan(
        body, (zero, zero), (jnp.arange(num_chunks), jax.random.split(key, num_chunks)))
    mean = total / num_samples
    var = jnp.maximum(total_sq / num_samples - mean**2, 0.0) * num_samples / max(num_samples - 1, 1)
    return mean, jnp.sqrt(var / num_samples)


def _check_mc(truth, features_model, theta, mu, constraint, num_samples, key, chunk_size, where):
    check_key(key, where)
    _check_learner(features_model, theta, constraint, where)
    if truth.horizon != features_model.horizon or truth.vocab_size != features_model.vocab_size:
        raise ValueError(
            f"{where}: truth (H={truth.horizon}, V={truth.vocab_size}) and features_model "
            f"(H={features_model.horizon}, V={features_model.vocab_size}) must have equal H and V")
    prompts = {truth.num_prompts, features_model.num_prompts} - {1}
    if len(prompts) > 1:
        raise ValueError(f"{where}: truth has P={truth.num_prompts}, features_model P={features_model.num_prompts}")
    mu = check_distribution(mu, prompts.pop() if prompts else None, where)
    num_samples = check_positive_int(num_samples, "num_samples", where, minimum=2)
    chunk = min(check_positive_int(chunk_size, "chunk_size", where), num_samples,
                max(1, DEFAULT_TOKEN_BUDGET // truth.horizon))  # memory bounded in tokens
    return num_samples, chunk, mu


def ttt_kl(truth: SequenceModel, features_model: LinearModel, theta, mu, *, learning_rate, constraint,
           num_samples: int, key: Array, chunk_size: int = DEFAULT_CHUNK) -> MCEstimate:
    r"""Sequence KL :math:`D_{KL}(\pi_D\|\pi^{TTT}_\theta)` by Monte Carlo over prefixes.

    .. math::

        D_{KL}(\pi_D\|\pi^{TTT}_\theta) = \mathbb{E}_{x\sim\mu,\,y\sim\pi_D}\sum_h
        \mathrm{KL}\big(\pi_D(\cdot|x,y_{<h})\,\|\,\pi_{\vartheta_{h-1}}(\cdot|x,y_{<h})\big),

    with ϑ teacher-forced along y; each inner KL is exact (closed form over V); only the
    prefixes are sampled (arXiv 2510.15020 v2, Thm 6.1; THEORY.md §6.4).

    **Arguments:** `truth` π_D, `features_model`, `theta` ``(d,)``, `mu` ``(P,)``,
    `learning_rate` η, `constraint`, `num_samples` (≥ 2), `key`, `chunk_size`.

    **Returns:** :class:`~covsim.MCEstimate` ``(mean, stderr)`` (scalars).
    """
    num_samples, chunk, mu = _check_mc(truth, features_model, theta, mu, constraint, num_samples,
                                       key, chunk_size, "ttt_kl")
    dtype = features_model.features.dtype
    mean, stderr = _ttt_mc(truth, features_model.features, jnp.asarray(theta, dtype),
                           jnp.asarray(mu, dtype), jnp.asarray(learning_rate, dtype), constraint,
                           jnp.zeros((1,), dtype), key, statistic="kl", num_samples=num_samples,
                           chunk=chunk)
    return guard_distribution(MCEstimate(mean[0], stderr[0]), mu, "ttt_kl")


def ttt_coverage(truth: SequenceModel, features_model: LinearModel, theta, mu, N, *, learning_rate,
                 constraint, num_samples: int, key: Array, chunk_size: int = DEFAULT_CHUNK) -> MCEstimate:
    r"""Coverage profile :math:`\mathrm{Cov}_N(\pi_D\|\pi^{TTT}_\theta)` by Monte Carlo.

    .. math::

        \mathrm{Cov}_N = P_{x\sim\mu,\,y\sim\pi_D}\big[\log\pi_D(y|x) - \log\pi^{TTT}_\theta(y|x)
        \ge \log N\big]

    (arXiv 2510.15020 v2, Def. 1.1 and Thm 6.1), ties counted with tolerance 1e-9 nats
    (THEORY.md §0).

    **Arguments:** as :func:`ttt_kl`, plus `N` ≥ 1 of any shape.

    **Returns:** :class:`~covsim.MCEstimate` with the shape of `N`.
    """
    N = check_thresholds(N, "ttt_coverage")
    num_samples, chunk, mu = _check_mc(truth, features_model, theta, mu, constraint, num_samples,
                                       key, chunk_size, "ttt_coverage")
    dtype = features_model.features.dtype
    levels = jnp.asarray(N, dtype)
    log_levels = jnp.log(levels).reshape(-1) - TIE_TOLERANCE
    mean, stderr = _ttt_mc(truth, features_model.features, jnp.asarray(theta, dtype),
                           jnp.asarray(mu, dtype), jnp.asarray(learning_rate, dtype), constraint,
                           log_levels, key, statistic="coverage", num_samples=num_samples, chunk=chunk)
    return guard_distribution(MCEstimate(mean.reshape(levels.shape), stderr.reshape(levels.shape)),
                              mu, "ttt_coverage")
