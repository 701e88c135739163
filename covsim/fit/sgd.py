r"""Single-pass SGD variants for autoregressive linear models (THEORY.md §6).

The update rules of arXiv 2510.15020 v2 §5–6 as optax ``GradientTransformation``s,
plus one compiled training loop (:func:`train`).

**Sign convention.** covsim *maximizes* log-likelihood. The loop computes the ascent
direction :math:`g` (e.g. :math:`\nabla_\theta\log\pi_\theta(y|x)`) and hands ``-g`` to
optax as the "gradient", so standard optax semantics hold: ``optax.sgd(η)`` produces the
update ``+η·g`` and :func:`optax.apply_updates` adds it to θ. Every transformation here
is symmetric under ``g ↦ -g`` (normalization, sign, Adam), so the paper's ascent rules
come out exactly.

**Projection.** Euclidean projection onto Θ (:func:`projection`) is applied by the
loop *after* ``optax.apply_updates``, after every update (after every token for the
token-level rule), so θ never leaves Θ. It is not an optax transformation.

**AR-linear calculus** (THEORY.md §1): the per-token score is
:math:`\phi(x,y_{\le h}) - \bar\phi_\theta(x,y_{<h})`, computed by gathering the H
context feature slices ``(H, V, d)`` of one sequence — the full logits tensor is never
formed during training, so a step costs O(K·H·V·d).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from covsim._validate import check_distribution, check_key, check_positive_int, is_concrete
from covsim.exact import _kl_context
from covsim.constraints import Ball, Box
from covsim.models import LinearModel, SequenceModel, _invert_cdf, next_token_log_probs

__all__ = [
    "METHODS",
    "SGDConfig",
    "TrainResult",
    "vanilla_sgd",
    "normalize_by_norm",
    "normalized_sgd",
    "adam",
    "sign_sgd",
    "projection",
    "truncation_weights",
    "token_scores",
    "sequence_score",
    "truncated_score",
    "token_level_pass",
    "make_optimizer",
    "default_config",
    "default_checkpoints",
    "train",
]

METHODS = ("vanilla", "normalized", "truncated", "token", "adam", "sign")


# ---------------------------------------------------------------------------
# update rules (optax transformations)


def vanilla_sgd(learning_rate) -> optax.GradientTransformation:
    r"""Vanilla SGD :math:`\theta \leftarrow \theta + \eta\,g` (v2 Eq. 14; ICLR Eq. 8).

    With covsim's convention (optax receives ``-g``) this is ``optax.sgd(η)``.
    Also the update of the truncated (v2 Eq. 26) and token-level (v2 Eq. 21) rules.
    """
    return optax.sgd(learning_rate)


def normalize_by_norm(lam) -> optax.GradientTransformation:
    r"""Scale the update by its global norm: :math:`u \mapsto u/(\lambda + \|u\|_2)`.

    The norm is over the whole pytree. Chained with a learning-rate scale this is the
    paper's normalized SGD (arXiv 2510.15020 v2, Eqs. 17–18).

    **Arguments:** `lam` — λ > 0 (may be a traced scalar).
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norm = optax.tree_utils.tree_norm(updates)
        updates = jax.tree_util.tree_map(lambda u: u / (lam + norm), updates)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def normalized_sgd(learning_rate, lam) -> optax.GradientTransformation:
    r"""Normalized SGD :math:`\theta \leftarrow \theta + \eta\,\hat g/(\lambda + \|\hat g\|)`
    (arXiv 2510.15020 v2, Eqs. 17–18; ICLR Eq. 10)."""
    return optax.chain(normalize_by_norm(lam), optax.scale_by_learning_rate(learning_rate))


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8) -> optax.GradientTransformation:
    """``optax.adam`` (not in the paper; a baseline)."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def sign_sgd(learning_rate) -> optax.GradientTransformation:
    r"""SignSGD :math:`\theta \leftarrow \theta + \eta\,\mathrm{sign}(\hat g)` (v2 Eq. 20; no theorem)."""
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))


def projection(constraint) -> Callable[[Array], Array]:
    r"""Euclidean projection onto Θ, applied by the loop after ``optax.apply_updates``.

    - :class:`~covsim.instances._base.Ball` ``(r)``: :math:`\theta/\max(1, \|\theta\|_2/r)`;
    - :class:`~covsim.instances._base.Box` ``(lower, upper)``: coordinatewise clipping;
    - ``None``: the identity (unconstrained).

    (THEORY.md §6.) **Returns:** a function ``theta -> theta``.
    """
    if constraint is None:
        return lambda theta: theta
    if isinstance(constraint, Ball):
        radius = constraint.radius

        def project_ball(theta):
            return theta / jnp.maximum(1.0, jnp.linalg.norm(theta) / radius)

        return project_ball
    if isinstance(constraint, Box):
        return lambda theta: jnp.clip(theta, constraint.lower, constraint.upper)
    raise ValueError(
        f"constraint must be a Ball, a Box or None, got {type(constraint).__name__}"
    )


# ---------------------------------------------------------------------------
# AR-linear calculus on one sequence


def _gather_contexts(array: Array, x, y: Array) -> Array:
    """``array[x, h, y_{h-1}]`` for h = 1..H; ``array`` has leading axes (P|1, H|1, V+1|1).

    One row gather on the flattened context axes (cheaper on CPU than a 3-d gather).
    Returns shape ``(H,) + array.shape[3:]``.
    """
    horizon = y.shape[-1]
    vocab = array.shape[3]
    prompts, positions, prevs = array.shape[:3]
    prev = jnp.concatenate([jnp.full((1,), vocab, dtype=y.dtype), y[:-1]])
    x_idx = jnp.asarray(x, dtype=y.dtype) if prompts > 1 else 0
    h_idx = jnp.arange(horizon, dtype=y.dtype) if positions > 1 else 0
    u_idx = prev if prevs > 1 else 0
    rows = (x_idx * positions + h_idx) * prevs + u_idx + jnp.zeros(horizon, dtype=y.dtype)
    flat = array.reshape((prompts * positions * prevs,) + array.shape[3:])
    return jnp.take(flat, rows, axis=0, mode="clip")


def _token_score(context_features: Array, theta: Array, token) -> tuple[Array, Array]:
    """Score φ(v=token) − φ̄_θ and log-probs for one context; features ``(V, d)``."""
    log_probs = jax.nn.log_softmax(context_features @ theta)
    mean_feature = jnp.exp(log_probs) @ context_features
    return context_features[token] - mean_feature, log_probs


def token_scores(context_features: Array, theta: Array, y: Array) -> tuple[Array, Array]:
    r"""Per-token scores :math:`\nabla_\theta\log\pi_\theta(y_h|x,y_{<h}) = \phi(x,y_{\le h}) - \bar\phi_\theta(x,y_{<h})`.

    (THEORY.md §1, AR-linear calculus.)

    **Arguments:** `context_features` ``(H, V, d)`` (the context slices of one sequence),
    `theta` ``(d,)``, `y` ``(H,)``.

    **Returns:** ``(scores (H, d), log_probs (H, V))``.
    """
    return jax.vmap(_token_score, in_axes=(0, None, 0))(context_features, theta, y)


def sequence_score(features: Array, theta: Array, x, y: Array) -> Array:
    r"""Sequence score :math:`\nabla_\theta\log\pi_\theta(y|x) = \sum_h[\phi(x,y_{\le h}) - \bar\phi_\theta(x,y_{<h})]`.

    (arXiv 2510.15020 v2, Eq. 14; THEORY.md §1.) `features` ``(P, H, V+1, V, d)`` (broadcast
    axes allowed), one sequence ``y`` ``(H,)``. **Returns:** ``(d,)``.
    """
    scores, _ = token_scores(_gather_contexts(features, x, y), theta, y)
    return jnp.sum(scores, axis=0)


def truncation_weights(eps: Array, log_n) -> Array:
    r"""Truncation weights of distillation SGD (v2 Thm 6.2, Eqs. 24–26; THEORY.md §6.5).

    With :math:`A = \log N`, :math:`S_h = \sum_{j\le h}\varepsilon_j`, :math:`S_0 = 0`:
    :math:`\alpha_h = 1` if :math:`S_h \le A`; :math:`0` if :math:`S_{h-1} > A`; else
    :math:`(A - S_{h-1})/\varepsilon_h`. Then :math:`\alpha_h\in[0,1]` and
    :math:`\sum_h \alpha_h\varepsilon_h = \min\{A, \sum_h\varepsilon_h\}` (EXACT).

    **Arguments:** `eps` ``(..., H)`` non-negative per-step KLs (``+inf`` allowed);
    `log_n` = A ≥ 0. **Returns:** α with the shape of `eps`.
    """
    eps = jnp.asarray(eps)
    cumulative = jnp.cumsum(eps, axis=-1)
    before = jnp.concatenate([jnp.zeros_like(eps[..., :1]), cumulative[..., :-1]], axis=-1)
    safe_eps = jnp.where((eps > 0) & jnp.isfinite(eps), eps, 1.0)
    partial_weight = jnp.where(jnp.isfinite(eps), (log_n - before) / safe_eps, 0.0)
    alpha = jnp.where(cumulative <= log_n, 1.0, jnp.where(before > log_n, 0.0, partial_weight))
    return jnp.clip(alpha, 0.0, 1.0)


def truncated_score(features: Array, truth_table: Array, theta: Array, x, y: Array, log_n) -> Array:
    r"""Truncated distillation gradient :math:`\hat g_\theta(y|x) = \sum_h \alpha_h\nabla\log\pi_\theta(y_h|x,y_{<h})`.

    (arXiv 2510.15020 v2, Eqs. 24–26.) :math:`\varepsilon_h = \mathrm{KL}(\pi_D(\cdot|x,y_{<h})\|\pi_\theta(\cdot|x,y_{<h}))`
    in closed form over V; α from :func:`truncation_weights`.

    **Arguments:** `features` ``(P, H, V+1, V, d)``; `truth_table` the teacher's
    normalized log-probs ``(P|1, H|1, U|1, V)`` (:func:`covsim.next_token_log_probs`);
    `theta` ``(d,)``; `x`, `y` ``(H,)``; `log_n` = log N. **Returns:** ``(d,)``.
    """
    scores, log_q = token_scores(_gather_contexts(features, x, y), theta, y)
    eps = _kl_context(_gather_contexts(truth_table, x, y), log_q)
    alpha = truncation_weights(eps, log_n)
    return alpha @ scores


def token_level_pass(optimizer, project, features, theta, opt_state, x, y):
    r"""Token-level SGD over one batch of sequences (v2 Eq. 21; THEORY.md §6.4 [project indexing]).

    :math:`\vartheta_0=\theta`, :math:`\vartheta_h = \mathrm{Proj}_\Theta(\vartheta_{h-1} + \eta\,\nabla\log\pi_{\vartheta_{h-1}}(y_h|x,y_{<h}))`
    for h = 1..H (batch-averaged scores when ``x``, ``y`` hold K > 1 sequences).

    **Arguments:** an optax `optimizer` and its `opt_state`, a `project` function, `features`,
    `theta` ``(d,)``, `x` ``(K,)``, `y` ``(K, H)``. **Returns:** ``(theta, opt_state)`` after H steps.
    """
    contexts = jax.vmap(_gather_contexts, in_axes=(None, 0, 0))(features, x, y)  # (K, H, V, d)

    def step(carry, inputs):
        current, state = carry
        context_h, tokens_h = inputs  # (K, V, d), (K,)
        scores, _ = jax.vmap(_token_score, in_axes=(0, None, 0))(context_h, current, tokens_h)
        ascent = jnp.mean(scores, axis=0)
        updates, state = optimizer.update(-ascent, state, current)
        return (project(optax.apply_updates(current, updates)), state), None

    (theta, opt_state), _ = jax.lax.scan(
        step, (theta, opt_state), (jnp.swapaxes(contexts, 0, 1), y.T))
    return theta, opt_state


# ---------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class SGDConfig:
    r"""Hyperparameters of one SGD variant.

    **Fields:**

    - `method`: ``"vanilla"`` (v2 Eq. 14), ``"normalized"`` (Eqs. 17–18), ``"truncated"``
      (distillation, Eqs. 24–26), ``"token"`` (token-level, Eq. 21), ``"adam"``, ``"sign"`` (Eq. 20).
    - `learning_rate`: η > 0 (may be a traced scalar: it is a dynamic argument of the loop).
    - `lam`: λ of normalized SGD (required there).
    - `batch_size`: K fresh sequences per step (gradients averaged).
    - `log_n`: A = log N of the truncated rule (required there).
    - `b1`, `b2`, `eps`: Adam's constants.
    """

    method: str
    learning_rate: float
    lam: float | None = None
    batch_size: int = 1
    log_n: float | None = None
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"SGDConfig: method must be one of {METHODS}, got {self.method!r}")
        check_positive_int(self.batch_size, "batch_size", "SGDConfig")
        if is_concrete(self.learning_rate) and not float(self.learning_rate) > 0:
            raise ValueError(f"SGDConfig: learning_rate must be > 0, got {self.learning_rate!r}")
        if self.method == "normalized":
            if self.lam is None:
                raise ValueError("SGDConfig: method='normalized' needs lam (λ > 0), got None")
            if is_concrete(self.lam) and not float(self.lam) > 0:
                raise ValueError(f"SGDConfig: lam must be > 0, got {self.lam!r}")
        if self.method == "truncated":
            if self.log_n is None:
                raise ValueError("SGDConfig: method='truncated' needs log_n (= log N >= 0), got None")
            if is_concrete(self.log_n) and not float(self.log_n) >= 0:
                raise ValueError(f"SGDConfig: log_n must be >= 0, got {self.log_n!r}")


def _build_optimizer(method: str, learning_rate, lam, b1, b2, eps) -> optax.GradientTransformation:
    if method in ("vanilla", "truncated", "token"):
        return vanilla_sgd(learning_rate)
    if method == "normalized":
        return normalized_sgd(learning_rate, lam)
    if method == "adam":
        return adam(learning_rate, b1, b2, eps)
    return sign_sgd(learning_rate)


def make_optimizer(config: SGDConfig) -> optax.GradientTransformation:
    r"""The optax transformation of ``config.method`` (feed it ``-g``; see the module docstring).

    vanilla / truncated / token → :func:`vanilla_sgd`; normalized → :func:`normalized_sgd`;
    adam → :func:`adam`; sign → :func:`sign_sgd`. The truncated and token-level rules
    differ from vanilla SGD in the gradient estimator, which :func:`train` computes.
    """
    if not isinstance(config, SGDConfig):
        raise ValueError(f"make_optimizer: config must be an SGDConfig, got {type(config).__name__}")
    return _build_optimizer(config.method, config.learning_rate, config.lam,
                            config.b1, config.b2, config.eps)


def default_config(method: str, *, sigma2, B, H, T, N, K: int = 1, **overrides) -> SGDConfig:
    r"""Step sizes of THEORY.md §6.6 (σ⋆² = 0 → the cap), computed by the `covsim.bounds`
    functions that state them (`vanilla_sgd_step_size`, `normalized_sgd_step_size`,
    `ttt_step_size`, `distillation_step_size`).

    - vanilla: :math:`\eta = \min\{1/(2HB^2), \sqrt{2/(\sigma_\star^2T)}\}` (v2 Prop. 5.1);
    - normalized: :math:`\eta = \min\{1/(128B), (\log N/(\sigma_\star^2T))^{1/4}\}`,
      :math:`\lambda = \log N/(16\eta)` (v2 App. I.5);
    - token: :math:`\eta = \min\{1/(2B^2), (\sigma_\star^2T)^{-1/2}\}` (v2 Thm 6.1);
    - truncated [correction]: :math:`\eta = \min\{1/(256\log N\,B^2), (T\sigma_\star^2\log N)^{-1/2}\}`,
      `log_n` = log N (v2 Thm 6.2);
    - adam, sign [project]: the normalized-SGD η (no theory).

    **Arguments:** σ⋆² (`sigma2`), feature bound `B` ≥ 1, horizon `H`, steps `T`, threshold
    `N` (> 1 where log N is used), batch `K`; `overrides` replace any field.
    **Returns:** an :class:`SGDConfig`.
    """
    if method not in METHODS:
        raise ValueError(f"default_config: method must be one of {METHODS}, got {method!r}")
    sigma2, B, N = float(sigma2), float(B), float(N)
    H = check_positive_int(H, "H", "default_config")
    T = check_positive_int(T, "T", "default_config")
    if sigma2 < 0:
        raise ValueError(f"default_config: sigma2 must be >= 0, got {sigma2}")
    if B <= 0:
        raise ValueError(f"default_config: B must be > 0, got {B}")
    if N < 1:
        raise ValueError(f"default_config: N must be >= 1, got {N}")
    log_n = math.log(N)
    needs_log_n = method in ("normalized", "truncated", "adam", "sign")
    if needs_log_n and log_n <= 0 and not ("learning_rate" in overrides and
                                           (method != "normalized" or "lam" in overrides)):
        raise ValueError(f"default_config: method={method!r} needs N > 1, got N={N}")

    from covsim import bounds  # the step sizes are stated once, in covsim.bounds

    fields = {"batch_size": K}
    if method == "vanilla":
        fields["learning_rate"] = float(bounds.vanilla_sgd_step_size(H, B, sigma2, T))
    elif method == "token":
        fields["learning_rate"] = float(bounds.ttt_step_size(B, sigma2, T))
    elif log_n > 0:  # normalized, truncated, adam, sign (else: given in `overrides`)
        if method == "truncated":
            fields["learning_rate"] = float(bounds.distillation_step_size(B, sigma2, T, N))
            fields["log_n"] = log_n
        else:
            eta, lam = bounds.normalized_sgd_step_size(B, sigma2, T, N)
            fields["learning_rate"] = float(eta)
            if method == "normalized":
                fields["lam"] = float(lam)
    fields.update(overrides)
    return SGDConfig(method=method, **fields)


def default_checkpoints(num_steps: int, count: int = 20) -> tuple[int, ...]:
    """A log grid of ~`count` iterate indices in [1, T], deduplicated (1 and T included)."""
    grid = np.unique(np.round(np.geomspace(1, num_steps, count)).astype(int))
    return tuple(int(t) for t in grid)


# ---------------------------------------------------------------------------
# the training loop


class TrainResult(NamedTuple):
    """Output of :func:`train`.

    - `theta`: the final iterate θ_{T+1} ``(d,)``.
    - `checkpoint_thetas`: θ_t at the checkpoint steps ``(C, d)``.
    - `checkpoint_steps`: the 1-based iterate indices t ``(C,)`` (θ_1 = initialization).
    - `metrics`: dict name -> iterate average (1/T) Σ_{t=1..T} f(θ_t).
    - `theta_average`: (1/T) Σ_{t=1..T} θ_t ``(d,)``.
    """

    theta: Array
    checkpoint_thetas: Array
    checkpoint_steps: Array
    metrics: dict
    theta_average: Array


_CHUNK_STEPS = 256  # online mode: steps whose sequences are drawn in one vectorized pass
_CHUNK_TOKENS = 2**18  # ... and at most this many (step, sequence, position, token) entries


def _chunk_steps(num_steps: int, batch: int, horizon: int, vocab: int) -> int:
    """Steps per chunk: bounded so a chunk's sampling buffers stay ~_CHUNK_TOKENS entries."""
    return max(1, min(num_steps, _CHUNK_STEPS, _CHUNK_TOKENS // max(1, batch * horizon * vocab)))


def _sample_sequences(cdf: Array, log_mu: Array, count: int, horizon: int, key: Array):
    """`count` i.i.d. (x, y) from the next-token CDF table ``(P|1, H|1, U|1, V)``.

    Inverse CDF with one uniform per token (as :func:`covsim.sample`); when the law ignores
    the previous token (U = 1) all positions are drawn at once, otherwise one scan over the
    H positions serves all `count` sequences. **Returns:** ``x (count,)``, ``y (count, H)``.
    """
    key_x, key_u = jax.random.split(key)
    x = jax.random.categorical(key_x, log_mu, shape=(count,))
    u = jax.random.uniform(key_u, (horizon, count), dtype=cdf.dtype)
    x_idx = x if cdf.shape[0] > 1 else jnp.zeros_like(x)
    h_idx = jnp.arange(horizon) if cdf.shape[1] > 1 else jnp.zeros(horizon, dtype=x.dtype)
    if cdf.shape[2] == 1:
        rows = cdf[x_idx[None, :], h_idx[:, None], 0]  # (H, count, V)
        return x, _invert_cdf(rows, u).T

    def step(prev, inputs):
        h, u_h = inputs
        token = _invert_cdf(cdf[x_idx, h, prev], u_h)
        return token, token

    prev0 = jnp.full((count,), cdf.shape[-1], dtype=x.dtype)
    _, ys = jax.lax.scan(step, prev0, (h_idx, u))
    return x, ys.T


@partial(jax.jit, static_argnames=("spec", "horizon", "num_steps", "chunk", "metric_fns"))
def _train_core(features, truth_table, log_mu, theta_init, hyper, key, constraint, dataset,
                checkpoint_steps, *, spec, horizon, num_steps, chunk, metric_fns):
    """T steps as a scan over chunks of `chunk` steps: each chunk first draws (online) or
    gathers (dataset) its chunk·K sequences in one vectorized pass, then scans its steps.
    Steps past T in the last chunk leave the state unchanged."""
    method, batch, b1, b2, eps = spec
    optimizer = _build_optimizer(method, hyper["learning_rate"], hyper["lam"], b1, b2, eps)
    project = projection(constraint)
    cdf = jnp.cumsum(jnp.exp(truth_table), axis=-1) if dataset is None else None

    def chunk_data(steps, key_c):
        """(x (chunk, K), y (chunk, K, H)) for the 1-based steps `steps` (chunk,)."""
        if dataset is None:
            x, y = _sample_sequences(cdf, log_mu, chunk * batch, horizon, key_c)
        else:
            xs, ys = dataset
            rows = (((steps - 1) * batch)[:, None] + jnp.arange(batch)[None, :]).reshape(-1) % xs.shape[0]
            x, y = xs[rows], ys[rows]
        return x.reshape(chunk, batch), y.reshape(chunk, batch, horizon)

    def ascent_direction(theta, x, y):
        if method == "truncated":
            per_sequence = jax.vmap(truncated_score, in_axes=(None, None, None, 0, 0, None))(
                features, truth_table, theta, x, y, hyper["log_n"])
        else:
            per_sequence = jax.vmap(sequence_score, in_axes=(None, None, 0, 0))(features, theta, x, y)
        return jnp.mean(per_sequence, axis=0)

    def step(carry, inputs):
        theta, opt_state, saved, theta_sum, metric_sums = carry
        t, x, y = inputs
        saved = jnp.where((checkpoint_steps == t)[:, None], theta, saved)
        theta_sum = theta_sum + theta
        metric_sums = tuple(s + fn(theta) for s, (_, fn) in zip(metric_sums, metric_fns))
        if method == "token":
            theta, opt_state = token_level_pass(optimizer, project, features, theta, opt_state, x, y)
        else:
            updates, opt_state = optimizer.update(-ascent_direction(theta, x, y), opt_state, theta)
            theta = project(optax.apply_updates(theta, updates))
        new = (theta, opt_state, saved, theta_sum, metric_sums)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(t <= num_steps, a, b), new, carry), None

    def run_chunk(carry, inputs):
        first, key_c = inputs
        steps = first + jnp.arange(chunk)
        x, y = chunk_data(steps, key_c)
        carry, _ = jax.lax.scan(step, carry, (steps, x, y))
        return carry, None

    dtype = theta_init.dtype
    saved0 = jnp.zeros((checkpoint_steps.shape[0], theta_init.shape[0]), dtype=dtype)
    metric0 = tuple(jnp.zeros((), dtype=dtype) for _ in metric_fns)
    carry0 = (theta_init, optimizer.init(theta_init), saved0, jnp.zeros_like(theta_init), metric0)
    num_chunks = -(-num_steps // chunk)
    firsts = 1 + chunk * jnp.arange(num_chunks)
    (theta, _, saved, theta_sum, metric_sums), _ = jax.lax.scan(
        run_chunk, carry0, (firsts, jax.random.split(key, num_chunks)))
    saved = jnp.where((checkpoint_steps == num_steps + 1)[:, None], theta, saved)
    averages = {name: s / num_steps for s, (name, _) in zip(metric_sums, metric_fns)}
    return TrainResult(theta, saved, checkpoint_steps, averages, theta_sum / num_steps)


def _check_checkpoints(checkpoints, num_steps: int) -> tuple[int, ...]:
    if checkpoints is None:
        return default_checkpoints(num_steps)
    values = np.asarray(checkpoints)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"train: checkpoints must be a non-empty 1-d sequence of ints, got {checkpoints!r}")
    if values.min() < 1 or values.max() > num_steps + 1:
        raise ValueError(
            f"train: checkpoints must lie in [1, T+1] = [1, {num_steps + 1}] (1-based iterate "
            f"indices, θ_1 = init), got {values.tolist()}")
    return tuple(int(t) for t in np.unique(values))


def _check_train_inputs(features_model, truth, mu, config, constraint, theta_init, dataset, metrics):
    if not isinstance(features_model, LinearModel):
        raise ValueError(f"train: features_model must be a LinearModel, got {type(features_model).__name__}")
    if not isinstance(config, SGDConfig):
        raise ValueError(f"train: config must be an SGDConfig, got {type(config).__name__}")
    if constraint is not None and not isinstance(constraint, (Ball, Box)):
        raise ValueError(f"train: constraint must be a Ball, a Box or None, got {type(constraint).__name__}")
    if truth.horizon != features_model.horizon or truth.vocab_size != features_model.vocab_size:
        raise ValueError(
            f"train: truth (H={truth.horizon}, V={truth.vocab_size}) and features_model "
            f"(H={features_model.horizon}, V={features_model.vocab_size}) must have equal H and V")
    prompts = {truth.num_prompts, features_model.num_prompts} - {1}
    if len(prompts) > 1:
        raise ValueError(f"train: truth has P={truth.num_prompts} prompts, features_model P={features_model.num_prompts}")
    mu = check_distribution(mu, prompts.pop() if prompts else None, "train")
    if theta_init is not None and jnp.shape(theta_init) != (features_model.dim,):
        raise ValueError(f"train: theta_init must have shape ({features_model.dim},), got {jnp.shape(theta_init)}")
    if dataset is not None:
        if not (isinstance(dataset, tuple) and len(dataset) == 2):
            raise ValueError("train: dataset must be a tuple (x (n,), y (n, H))")
        xs, ys = dataset
        n = jnp.shape(xs)[0] if jnp.ndim(xs) == 1 else None
        if n is None or jnp.shape(ys) != (n, features_model.horizon):
            raise ValueError(
                f"train: dataset must be (x (n,), y (n, H={features_model.horizon})), got shapes "
                f"{jnp.shape(xs)} and {jnp.shape(ys)}")
    if metrics is not None:
        if not isinstance(metrics, dict) or not all(callable(f) for f in metrics.values()):
            raise ValueError("train: metrics must be a dict name -> function(theta) -> scalar")


def train(features_model: LinearModel, truth: SequenceModel, mu, config: SGDConfig, *,
          num_steps: int, key: Array, constraint, theta_init=None, checkpoints=None,
          dataset=None, metrics=None) -> TrainResult:
    r"""Run T steps of one SGD variant (THEORY.md §6) as one ``lax.scan`` inside one ``jit``.

    At step t = 1..T the loop draws K fresh sequences :math:`(x, y)\sim\mu\otimes\pi_D`
    (online mode, as in the paper) or takes rows :math:`(t-1)K..tK-1` (mod n) of `dataset`,
    forms the ascent direction of ``config.method`` — batch mean of
    :math:`\nabla\log\pi_{\theta_t}(y|x)` (vanilla, normalized, adam, sign; v2 Eqs. 14, 17–18,
    20), of the truncated score (v2 Eqs. 24–26), or H per-token steps (v2 Eq. 21) — and
    sets :math:`\theta_{t+1} = \mathrm{Proj}_\Theta(\theta_t + \text{update})`.
    Metrics are averaged over the iterates :math:`\theta_1..\theta_T` (θ_{T+1} excluded,
    THEORY.md §0). Cost O(T·K·H·V·d) plus the metrics.

    Recompilation: method, batch size, Adam's constants, T, the *number* of checkpoints, H
    and the metric function objects are static; η, λ, log N, θ_1, the key, Θ, the dataset
    and the checkpoint steps themselves are dynamic — a second call that changes only those
    does not retrace (pass the *same* metric functions). vmap over seeds:
    ``jax.vmap(lambda k: train(..., key=k))(keys)``.

    Online sequences are drawn a chunk of steps at a time (up to 256 steps per chunk, fewer
    when K·H·V is large, so memory stays bounded): one vectorized inverse-CDF pass per chunk
    instead of an H-step sampling scan inside every step.

    **Arguments:**

    - `features_model`: a :class:`~covsim.LinearModel` giving the class's features
      ``(P, H, V+1, V, d)``; its ``theta`` is the default θ_1.
    - `truth`: π_D (TabularModel or LinearModel); `mu`: prompt law ``(P,)``.
    - `config`: an :class:`SGDConfig` (see :func:`default_config`).
    - `num_steps`: T; `key`: PRNG key; `constraint`: ``Ball``, ``Box`` or ``None``.
    - `theta_init`: θ_1 ``(d,)`` (default ``features_model.theta``).
    - `checkpoints`: iterate indices t in [1, T+1] at which θ_t is recorded (default: ~20
      log-spaced steps in [1, T], see :func:`default_checkpoints`).
    - `dataset`: optional ``(x (n,), y (n, H))`` to iterate over instead of sampling.
    - `metrics`: optional dict name -> ``f(theta) -> scalar`` (jit-traceable).

    **Returns:** a :class:`TrainResult`.
    """
    check_key(key, "train")
    num_steps = check_positive_int(num_steps, "num_steps", "train")
    _check_train_inputs(features_model, truth, mu, config, constraint, theta_init, dataset, metrics)
    checkpoint_steps = _check_checkpoints(checkpoints, num_steps)
    features = features_model.features
    dtype = features.dtype
    theta0 = features_model.theta if theta_init is None else jnp.asarray(theta_init)
    theta0 = theta0.astype(dtype)
    truth_table = next_token_log_probs(truth).astype(dtype)
    log_mu = jnp.log(jnp.asarray(mu, dtype=dtype))

    def dynamic(value):
        return jnp.asarray(0.0 if value is None else value, dtype=dtype)

    hyper = {"learning_rate": dynamic(config.learning_rate), "lam": dynamic(config.lam),
             "log_n": dynamic(config.log_n)}
    if dataset is not None:
        dataset = (jnp.asarray(dataset[0]), jnp.asarray(dataset[1]))
    if constraint is not None:
        constraint = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=dtype), constraint)
    spec = (config.method, config.batch_size, float(config.b1), float(config.b2), float(config.eps))
    metric_fns = tuple(sorted((metrics or {}).items(), key=lambda item: item[0]))
    horizon = features_model.horizon
    chunk = _chunk_steps(num_steps, config.batch_size, horizon, features_model.vocab_size)
    return _train_core(features, truth_table, log_mu, theta0, hyper, key, constraint, dataset,
                       jnp.asarray(checkpoint_steps, dtype=jnp.int32), spec=spec, horizon=horizon,
                       num_steps=num_steps, chunk=chunk, metric_fns=metric_fns)
