r"""Best-of-N sampling, exact Pass@N and the Best-of-N regret (THEORY.md §4).

Setting (arXiv 2510.15020 v2, §4 and Props. D.6–D.7): a base model π̂, a reward
:math:`r(x, y)`, a comparator π_T. BoN_N draws :math:`y^1, \dots, y^N \sim \hat\pi(\cdot|x)`
i.i.d. and returns an argmax of the reward (ties: the first draw). For a binary reward
:math:`r(x, y) = 1\{y \in S_x\}` everything is exact from the single-draw success
probability :math:`s(x) = \hat\pi(S_x|x)`:

.. math::

    \mathrm{Pass@}N = \mathbb{E}_x\big[1 - (1 - s(x))^N\big],\qquad
    \mathrm{regret} = \mathbb{E}_x\big[\pi_T(S_x|x) - 1 + (1 - s(x))^N\big].

Success sets come in three forms: one target sequence per prompt (``target_y`` of shape
``(P, H)``), a boolean mask over all :math:`V^H` responses per prompt (``(P, V^H)``,
responses in the lexicographic order of :func:`covsim.enumerate_sequences`, first token
most significant), or a predicate ``success_fn(x, y) -> bool`` (Monte Carlo).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from covsim._validate import check_distribution, check_key, check_positive_int, check_thresholds, is_concrete
from covsim.exact import MAX_ENUMERATION, TIE_TOLERANCE, enumerate_sequences
from covsim.metrics import MCEstimate, pass_at_n
from covsim.models import SequenceModel, log_prob, next_token_log_probs, step_log_probs

__all__ = [
    "BoNResult",
    "sample_responses",
    "best_of_n",
    "success_probability",
    "pass_at_n_exact",
    "success_probability_from_mask",
    "pass_at_n_from_mask",
    "success_probability_mc",
    "pass_at_n_mc",
    "bon_regret",
    "necessity_mask",
    "necessity_regret",
]


class BoNResult(NamedTuple):
    """Output of :func:`best_of_n`.

    - `x`: the prompt(s), shape ``()`` or ``(n,)``.
    - `y`: the selected response(s), ``(H,)`` or ``(n, H)``.
    - `reward`: the reward of the selected response(s), ``()`` or ``(n,)``.
    - `choice`: index in ``[0, N)`` of the selected draw.
    """

    x: Array
    y: Array
    reward: Array
    choice: Array


# ---------------------------------------------------------------------------
# sampling responses for given prompts


def _sample_given_prompts(table: Array, x: Array, horizon: int, key: Array) -> Array:
    """Draw one response per entry of ``x`` (flat ``(n,)``) from log-prob ``table``."""
    vocab = table.shape[-1]
    x_idx = x if table.shape[0] > 1 else jnp.zeros_like(x)
    step_keys = jax.random.split(key, horizon)

    def step(prev, inputs):
        h, k = inputs
        logp = step_log_probs(table, h)  # (P|1, U, V)
        u_idx = prev if table.shape[2] > 1 else jnp.zeros_like(prev)
        tok = jax.random.categorical(k, logp[x_idx, u_idx], axis=-1)
        return tok.astype(x.dtype), tok

    prev0 = jnp.full(x.shape, vocab, dtype=x.dtype)
    _, ys = jax.lax.scan(step, prev0, (jnp.arange(horizon), step_keys))
    return ys.T


def _check_prompts(x, num_prompts: int, where: str) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{where}: prompts x must be integer indices, got dtype {x.dtype}")
    if is_concrete(x) and x.size and num_prompts > 1:
        values = np.asarray(x)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= num_prompts:
            raise ValueError(
                f"{where}: prompts x must lie in [0, {num_prompts}), got values in [{lo}, {hi}]"
            )
    return x


def sample_responses(model: SequenceModel, x, num_samples: int, *, key: Array) -> Array:
    r"""Draw ``num_samples`` i.i.d. responses :math:`y \sim \pi(\cdot|x)` for each given prompt.

    **Arguments:**

    - `model`: the law to sample from.
    - `x`: prompt index (integer scalar) or integer array of any shape.
    - `num_samples`: responses per prompt (static Python int).
    - `key`: a JAX PRNG key (keyword-only, required).

    **Returns:** integer array of shape ``x.shape + (num_samples, H)``.
    """
    check_key(key, "sample_responses")
    num_samples = check_positive_int(num_samples, "num_samples", "sample_responses")
    x = _check_prompts(x, model.num_prompts, "sample_responses")
    table = next_token_log_probs(model)
    flat = jnp.repeat(x.reshape(-1), num_samples)
    ys = _sample_given_prompts(table, flat, model.horizon, key)
    return ys.reshape(x.shape + (num_samples, model.horizon))


# ---------------------------------------------------------------------------
# Best-of-N


def best_of_n(model: SequenceModel, mu_or_x, reward_fn: Callable, N: int, *, key: Array) -> BoNResult:
    r"""Best-of-N sampling (arXiv 2510.15020 v2, §4; THEORY.md §4).

    .. math:: \mathrm{BoN}_N(x) = y^{\hat\jmath},\quad \hat\jmath = \min\operatorname{argmax}_{j\le N} r(x, y^j),
              \quad y^1,\dots,y^N \overset{iid}{\sim} \hat\pi(\cdot|x).

    **Arguments:**

    - `model`: the base model π̂.
    - `mu_or_x`: either prompts (an integer scalar or integer array ``(n,)``), or a prompt
      law μ (a floating array ``(P,)``) from which one prompt is drawn per call (vmap over
      keys for many prompts).
    - `reward_fn`: ``reward_fn(x, y) -> scalar`` for one prompt and one response ``(H,)``;
      traced (jnp code).
    - `N`: number of draws (static Python int ≥ 1).
    - `key`: a JAX PRNG key (keyword-only, required).

    **Returns:** :class:`BoNResult` ``(x, y, reward, choice)``. Ties go to the first draw.
    vmappable over `key`.
    """
    check_key(key, "best_of_n")
    N = check_positive_int(N, "N", "best_of_n")
    arg = jnp.asarray(mu_or_x)
    if jnp.issubdtype(arg.dtype, jnp.floating):
        arg = check_distribution(arg, model.num_prompts, "best_of_n", name="mu_or_x (a prompt law)")
        key, key_x = jax.random.split(key)
        x = jax.random.categorical(key_x, jnp.log(arg))
    else:
        x = _check_prompts(arg, model.num_prompts, "best_of_n")
        if x.ndim > 1:
            raise ValueError(f"best_of_n: prompts must be a scalar or shape (n,), got shape {x.shape}")
    draws = sample_responses(model, x, N, key=key)  # x.shape + (N, H)
    flat_x = x.reshape(-1)
    flat_draws = draws.reshape((-1, N, model.horizon))
    rewards = jax.vmap(lambda xi, ys: jax.vmap(lambda yj: reward_fn(xi, yj))(ys))(flat_x, flat_draws)
    choice = jnp.argmax(rewards, axis=-1)
    best = jnp.take_along_axis(flat_draws, choice[:, None, None], axis=1)[:, 0]
    reward = jnp.take_along_axis(rewards, choice[:, None], axis=1)[:, 0]
    shape = x.shape
    return BoNResult(x, best.reshape(shape + (model.horizon,)), reward.reshape(shape),
                     choice.reshape(shape))


# ---------------------------------------------------------------------------
# exact success probabilities


def _check_targets(model: SequenceModel, target_y, where: str) -> Array:
    target_y = jnp.asarray(target_y)
    if target_y.ndim != 2 or target_y.shape[1] != model.horizon:
        raise ValueError(
            f"{where}: target_y must have shape (P, H) with H={model.horizon}, got shape "
            f"{target_y.shape}"
        )
    if model.num_prompts not in (1, target_y.shape[0]):
        raise ValueError(
            f"{where}: target_y has {target_y.shape[0]} prompts but the model has "
            f"P={model.num_prompts}"
        )
    if is_concrete(target_y):
        values = np.asarray(target_y)
        if np.any(values < 0) or np.any(values >= model.vocab_size):
            raise ValueError(
                f"{where}: target tokens must lie in [0, {model.vocab_size}), got values in "
                f"[{values.min()}, {values.max()}]"
            )
    return target_y


def success_probability(model: SequenceModel, target_y) -> Array:
    r"""Single-draw success probability for one target per prompt: :math:`s(x) = \hat\pi(y^\star(x)|x)`.

    (THEORY.md §4.3, deterministic target; arXiv 2510.15020 v2, §4.)

    **Arguments:** `model` π̂; `target_y` integer array ``(P, H)``, the target response of
    each prompt.

    **Returns:** ``(P,)`` probabilities in [0, 1].
    """
    target_y = _check_targets(model, target_y, "success_probability")
    prompts = jnp.arange(target_y.shape[0])
    return jnp.exp(jax.vmap(lambda x, y: log_prob(model, x, y))(prompts, target_y))


def pass_at_n_exact(model: SequenceModel, mu, target_y, N) -> Array:
    r"""Exact Pass@N for one target per prompt (THEORY.md §4.3; v2 Prop. D.6–D.7 setting).

    .. math:: \mathrm{Pass@}N = \sum_x \mu(x)\,\big[1 - (1 - \hat\pi(y^\star(x)|x))^N\big].

    **Arguments:** `model` π̂, `mu` ``(P,)``, `target_y` ``(P, H)``, `N` ≥ 0 of any shape.

    **Returns:** an array with the shape of `N`.
    """
    target_y = _check_targets(model, target_y, "pass_at_n_exact")
    mu = check_distribution(mu, target_y.shape[0], "pass_at_n_exact")
    return _average_pass(success_probability(model, target_y), mu, N)


def _average_pass(s: Array, mu, N) -> Array:
    mu = jnp.asarray(mu, dtype=s.dtype)
    n = jnp.asarray(N, dtype=s.dtype)
    per_prompt = pass_at_n(s[:, None], n.reshape(1, -1))  # (P, J)
    return jnp.einsum("x,xj->j", mu, per_prompt).reshape(n.shape)


def _enumerated_log_probs(model: SequenceModel, num_prompts: int) -> Array:
    """``log π(y|x)`` for every prompt and every response, ``(P, V^H)`` (lexicographic order)."""
    uniform = jnp.full((num_prompts,), 1.0 / num_prompts)
    seq_lp, _, _ = enumerate_sequences(model, model, uniform)
    return seq_lp


def _check_mask(model: SequenceModel, mask, where: str) -> Array:
    mask = jnp.asarray(mask)
    count = model.vocab_size**model.horizon
    if mask.ndim != 2 or mask.shape[1] != count:
        raise ValueError(
            f"{where}: mask must have shape (P, V^H) = (P, {count}), got shape {mask.shape}"
        )
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{where}: mask must be boolean, got dtype {mask.dtype}")
    if model.num_prompts not in (1, mask.shape[0]):
        raise ValueError(
            f"{where}: mask has {mask.shape[0]} prompts but the model has P={model.num_prompts}"
        )
    if mask.shape[0] * count > MAX_ENUMERATION:
        raise ValueError(
            f"{where}: enumerating P·V^H = {mask.shape[0] * count} sequences exceeds "
            f"{MAX_ENUMERATION}; use success_probability_mc"
        )
    return mask


def _masked_mass(seq_lp: Array, mask: Array) -> Array:
    """``Σ_y mask·exp(log p)`` per prompt, computed in log space."""
    masked = jnp.where(mask, seq_lp, -jnp.inf)
    return jnp.exp(jax.nn.logsumexp(masked, axis=-1))


def success_probability_from_mask(model: SequenceModel, mask) -> Array:
    r"""Exact single-draw success :math:`s(x) = \hat\pi(S_x|x) = \sum_{y \in S_x}\hat\pi(y|x)` by enumeration.

    (THEORY.md §4.3.) **Arguments:** `model` π̂; `mask` boolean ``(P, V^H)``, ``mask[x, j]``
    says whether the j-th response (lexicographic order, as
    :func:`covsim.enumerate_sequences`) is in S_x. **Returns:** ``(P,)``.
    """
    mask = _check_mask(model, mask, "success_probability_from_mask")
    return _masked_mass(_enumerated_log_probs(model, mask.shape[0]), mask)


def pass_at_n_from_mask(model: SequenceModel, mu, mask, N) -> Array:
    r"""Exact Pass@N :math:`\mathbb{E}_x[1 - (1 - \hat\pi(S_x|x))^N]` for a mask success set (THEORY.md §4.3)."""
    mask = _check_mask(model, mask, "pass_at_n_from_mask")
    mu = check_distribution(mu, mask.shape[0], "pass_at_n_from_mask")
    return _average_pass(success_probability_from_mask(model, mask), mu, N)


# ---------------------------------------------------------------------------
# Monte Carlo


def _mc(values: Array) -> MCEstimate:
    values = values.astype(jnp.result_type(float))
    n = values.shape[0]
    mean = jnp.mean(values)
    var = jnp.sum((values - mean) ** 2) / max(n - 1, 1)
    return MCEstimate(mean, jnp.sqrt(var / n))


def _check_mc(model, mu, num_samples, key, where):
    check_key(key, where)
    num_samples = check_positive_int(num_samples, "num_samples", where)
    mu = check_distribution(mu, model.num_prompts, where)
    return num_samples


@partial(jax.jit, static_argnames=("success_fn", "num_samples", "draws"))
def _mc_success(model, mu, key, *, success_fn, num_samples, draws):
    key_x, key_y = jax.random.split(key)
    x = jax.random.categorical(key_x, jnp.log(jnp.asarray(mu)), shape=(num_samples,))
    ys = sample_responses(model, x, draws, key=key_y)  # (n, draws, H)
    hits = jax.vmap(lambda xi, yi: jax.vmap(lambda yj: success_fn(xi, yj))(yi))(x, ys)
    return jnp.any(hits, axis=-1)


def success_probability_mc(model: SequenceModel, mu, success_fn: Callable, num_samples: int, *,
                           key: Array) -> MCEstimate:
    r"""Monte Carlo single-draw success :math:`\mathbb{E}_{x\sim\mu}\hat\pi(S_x|x)` with its standard error.

    (THEORY.md §4.3.) `success_fn(x, y) -> bool` for one prompt and one response ``(H,)``
    (traced jnp code, hashable — e.g. a module-level function). Draws `num_samples` pairs
    :math:`x\sim\mu, y\sim\hat\pi(\cdot|x)`. **Returns:** :class:`~covsim.MCEstimate` of scalars.
    """
    num_samples = _check_mc(model, mu, num_samples, key, "success_probability_mc")
    hits = _mc_success(model, mu, key, success_fn=success_fn, num_samples=num_samples, draws=1)
    return _mc(hits)


def pass_at_n_mc(model: SequenceModel, mu, success_fn: Callable, N: int, num_samples: int, *,
                 key: Array) -> MCEstimate:
    r"""Monte Carlo BoN_N success rate (= Pass@N for a binary verifier, THEORY.md §4.3).

    Draws `num_samples` prompts :math:`x\sim\mu`, N responses each, and records whether any
    response succeeds. **Returns:** :class:`~covsim.MCEstimate` of scalars.
    """
    num_samples = _check_mc(model, mu, num_samples, key, "pass_at_n_mc")
    N = check_positive_int(N, "N", "pass_at_n_mc")
    hits = _mc_success(model, mu, key, success_fn=success_fn, num_samples=num_samples, draws=N)
    return _mc(hits)


# ---------------------------------------------------------------------------
# regret


def bon_regret(model: SequenceModel, comparator: SequenceModel, mu, mask, N) -> Array:
    r"""Exact BoN_N regret against a comparator for a binary success set (THEORY.md §4.1–4.2).

    .. math::

        \mathrm{regret} = \mathbb{E}_{x\sim\mu}\big[r(x,\pi_T) - r(x,\mathrm{BoN}_N)\big]
        = \sum_x \mu(x)\big[\pi_T(S_x|x) - 1 + (1 - \hat\pi(S_x|x))^N\big]

    (arXiv 2510.15020 v2, Props. D.6–D.7), exact by enumeration of all responses.

    **Arguments:** `model` the base model π̂; `comparator` π_T; `mu` ``(P,)``; `mask` boolean
    ``(P, V^H)`` encoding S_x; `N` ≥ 0 of any shape.

    **Returns:** an array with the shape of `N` (may be negative).
    """
    mask = _check_mask(model, mask, "bon_regret")
    _check_mask(comparator, mask, "bon_regret")
    mu = check_distribution(mu, mask.shape[0], "bon_regret")
    if comparator.horizon != model.horizon or comparator.vocab_size != model.vocab_size:
        raise ValueError(
            "bon_regret: model and comparator must share H and V, got "
            f"(H={model.horizon}, V={model.vocab_size}) and "
            f"(H={comparator.horizon}, V={comparator.vocab_size})"
        )
    uniform = jnp.full((mask.shape[0],), 1.0 / mask.shape[0])
    lq, lt, _ = enumerate_sequences(model, comparator, uniform)
    s_model = _masked_mass(lq, mask)
    s_comp = _masked_mass(lt, mask)
    mu = jnp.asarray(mu, dtype=s_model.dtype)
    bon = _average_pass(s_model, mu, N)
    return jnp.sum(mu * s_comp) - bon


def necessity_mask(model: SequenceModel, comparator: SequenceModel, N) -> Array:
    r"""The necessity success set :math:`S_x = \{y : \pi_T(y|x)/\hat\pi(y|x) \ge 2N\}` (THEORY.md §4.2).

    (arXiv 2510.15020 v2, Prop. D.7.) Ties within 1e-9 nats count; :math:`\hat\pi(y|x) = 0 <
    \pi_T(y|x)` counts (ratio +∞); :math:`\pi_T(y|x) = 0` never counts.

    **Arguments:** `model` π̂, `comparator` π_T, `N` ≥ 1 (scalar).
    **Returns:** boolean ``(P, V^H)`` with P = the larger prompt axis of the two models.
    """
    N = check_thresholds(N, "necessity_mask")
    if np.ndim(N) != 0:
        raise ValueError(f"necessity_mask: N must be a scalar, got shape {np.shape(N)}")
    num_prompts = max(model.num_prompts, comparator.num_prompts)
    uniform = jnp.full((num_prompts,), 1.0 / num_prompts)
    lq, lt, _ = enumerate_sequences(model, comparator, uniform)
    log_level = jnp.log(2.0 * jnp.asarray(N, dtype=lq.dtype)) - TIE_TOLERANCE
    ratio = jnp.where(jnp.isneginf(lq), jnp.inf, lt - jnp.where(jnp.isneginf(lq), 0.0, lq))
    return (ratio >= log_level) & ~jnp.isneginf(lt)


def necessity_regret(model: SequenceModel, comparator: SequenceModel, mu, N) -> Array:
    r"""BoN_N regret for the necessity reward :math:`r = 1\{\pi_T/\hat\pi \ge 2N\}` (v2 Prop. D.7).

    EXACT guarantee (THEORY.md §4.2): the result is ≥ ½·Cov_{2N}(π_T‖π̂). Scalar `N`.
    """
    mask = necessity_mask(model, comparator, N)
    return bon_regret(model, comparator, mu, mask, N)
