r"""Shared helpers of the Figure 1 checks (``mode_tradeoff``, ``tournament``, ``best_of_n``).

The instance is the *continuum* variant of :func:`covsim.instances.selection.mode_tradeoff`
(CONSTRUCTIONS.md §11, project design): R = 32 prompts per class, 1 or 2 pivotal positions per
prompt, a per-prompt class-feature scale c(x) (π_D's pivot law σ(8·c(x)), c log-uniform on
[0.3, 1]) and a per-prompt shared-feature scale b(x) (log-uniform on [0.5, 2], B_s = 1), so the
coverage profile along a trajectory takes a continuum of values; every mid-training log-ratio
(pivots 50/50) lies ≥ 0.05 nats from log N for each tested level N (no knife edge).

Noiseless reference (population gradient ascent, η = 2/(H B_v²); computed when the instance
was designed): KL 11.2 (t = 1) → 0.74 (50) → 0.37 (5e3), strictly decreasing; Cov_N for
N ∈ {4.6, 5.7, 8, 16} is 1 at t = 1, at its minimum at ``T_MID`` = 50 (0.006 for N = 4.6, 0 for
the others, which are 0 on t ∈ [20, 100]), and rises
gradually to 0.066, 0.066, 0.063, 0.040 by t = 5e3; Pass@8 peaks at 0.970 (t = 300) and ends at
0.947, Pass@12 peaks at 0.990 and ends at 0.957.

Everything here is exact per checkpoint: KL by :func:`covsim.kl`, Pass@N by
:func:`covsim.bon.pass_at_n_exact`, Cov_N by the meet-in-the-middle convolution
:func:`covsim.exact.independent_tail` (features ignore the previous token). Private to
``theory_checks``; no check imports another check, they import this module.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim.bon import pass_at_n_exact
from covsim.exact import independent_tail
from covsim.fit.sgd import SGDConfig, train
from covsim.instances._base import Box
from covsim.instances.selection import mode_tradeoff
from covsim.selection import heldout_logliks, select_min_cross_entropy, select_min_kl, tournament
from covsim.experiments.rules import t_quantile
from covsim.experiments.sharding import shard_seeds

COV_N = (2.0, 4.0, 4.6, 5.7, 6.0, 8.0, 16.0)
"""Coverage levels recorded at every checkpoint (N/2 for Pass@{4, 8, 12} included)."""

U_SHAPE_N = (4.6, 5.7, 8.0, 16.0)
"""Mid-range levels whose coverage should dip and rise (CONSTRUCTIONS.md §11)."""

PASS_N = (4.0, 8.0, 12.0)
"""Pass@N levels; Figure 1 pairs Pass@N with Cov_{N/2} (THEORY.md §4.3, §10.10)."""

T_MID = 50
"""The checkpoint inside the coverage dip of the noiseless reference for every level in
``U_SHAPE_N`` (each level's minimum over the grid: 0.006 for N = 4.6, 0 for the others);
fixed from the instance, not from data."""

INSTANCE_ARGS = dict(R=32, pivot_counts=(1, 2), class_scale=(0.3, 1.0), B_s=1.0,
                     shared_scale=(0.5, 2.0), avoid_N=COV_N)
"""Arguments of :func:`covsim.instances.selection.mode_tradeoff` for the continuum variant."""

CHECKPOINTS = {
    "tiny": (1, 3, 10, 50, 100, 300),
    "quick": (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000),
    "full": (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 20000),
}
"""Checkpoint grids (log-spaced) by size; the last entry is the number of SGD steps."""

HELDOUT = 2048
"""Held-out sample size of the selection rules (CONSTRUCTIONS.md §11)."""


def checkpoints_for(num_steps: int) -> tuple[int, ...]:
    """The checkpoint grid ending at `num_steps` (grid entries below it, then num_steps)."""
    grid = CHECKPOINTS["full"] if num_steps > 300 else CHECKPOINTS["tiny"]
    return tuple(t for t in grid if t < num_steps) + (int(num_steps),)


@lru_cache(maxsize=1)
def instance():
    """The continuum ``mode_tradeoff`` instance (cached; float64 under the CLI and the tests)."""
    return mode_tradeoff(**INSTANCE_ARGS)


VARIANTS = ("main", "frozen")
"""Learners: ``"main"`` clips to the instance's Θ; ``"frozen"`` boxes the shared coordinate
θ_1 to 0 (a learner that cannot trade the minority mode away: the mode_tradeoff control)."""


def constraint(variant: str = "main") -> Box:
    """The box the learner clips to (see :data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    lower, upper = instance().constraint
    if variant == "frozen":
        lower, upper = lower.at[1].set(0.0), upper.at[1].set(0.0)
    return Box(lower, upper)


# ---------------------------------------------------------------------------
# exact per-position metrics


def position_tables(features, theta):
    """Per-position log-probs ``(P, H, V)`` of the AR-linear model (features ``(P, H, 1, V, d)``)."""
    return jax.nn.log_softmax(jnp.einsum("phuvd,d->phuv", features, theta), axis=-1)[:, :, 0, :]


def coverage_positionwise(truth_lp, model_lp, mu, N):
    r"""Exact Cov_N(π‖π̂) from finite per-position tables ``(P, H, V)`` (THEORY.md §2, Def. 1.1)."""
    return independent_tail(truth_lp, truth_lp - model_lp, mu, N)


def _slots(allowed):
    """Indices ``(P, H, 2)`` of the (first, second) allowed token; the second repeats the first
    at forced positions (its weight is then masked to -inf)."""
    allowed = np.asarray(allowed)
    first = np.argmax(allowed, axis=-1)
    last = allowed.shape[-1] - 1 - np.argmax(allowed[..., ::-1], axis=-1)
    return jnp.asarray(np.stack([first, last], axis=-1)), jnp.asarray(first != last)


def compress(lp, allowed):
    r"""Merge the disallowed tokens of each position into one atom: ``(P, H, V)`` → ``(P, H, 3)``.

    In ``mode_tradeoff`` every disallowed token has all-zero features, so all of them carry
    the same logit (0) under every θ: the log-ratio of any two such laws is the same on all of
    them, and merging them into one atom of summed mass leaves the law of Σ_h r_h — hence every
    coverage and tail mass — exactly unchanged. Slots: first allowed token, second allowed token
    (-inf at forced positions), the merged rest. 3^4 = 81 atoms per half instead of 8^4.
    """
    idx, two = _slots(allowed)
    picked = jnp.take_along_axis(lp, idx, axis=-1)
    picked = picked.at[..., 1].set(jnp.where(two, picked[..., 1], -jnp.inf))
    rest = jax.nn.logsumexp(jnp.where(jnp.asarray(allowed), -jnp.inf, lp), axis=-1)
    return jnp.concatenate([picked, rest[..., None]], axis=-1)


def tail_compressed(weight_lp, truth_lp, model_lp, mu, N):
    r"""Exact :math:`\sum_x\mu(x) P_{y\sim w}[\log\pi(y|x)/\hat\pi(y|x) \ge \log N]` on the
    instance's compressed tables (``(P, H, V)`` inputs; `mu` None → per prompt ``(P, L)``)."""
    allowed = instance().info["allowed"]
    cw, ct, cm = (compress(t, allowed) for t in (weight_lp, truth_lp, model_lp))
    ratio = jnp.where(jnp.isfinite(cw) & jnp.isfinite(ct), ct - cm, 0.0)
    return independent_tail(cw, ratio, mu, N)


def coverage_fast(truth_lp, model_lp, mu, N):
    """Exact Cov_N(π_D‖π̂) for laws of this instance, via :func:`compress`."""
    return tail_compressed(truth_lp, truth_lp, model_lp, mu, N)


# ---------------------------------------------------------------------------
# trajectories


@partial(jax.jit, static_argnames=("num_steps", "checkpoints", "num_seeds"))
def _trajectories(key, lower, upper, features_model, *, num_steps, checkpoints, num_seeds):
    inst = instance()
    config = SGDConfig(method="vanilla", learning_rate=inst.info["eta"],
                       batch_size=inst.info["batch_size"])

    def one(k):
        return train(features_model, inst.truth, inst.mu, config, num_steps=num_steps, key=k,
                     constraint=Box(lower, upper), theta_init=inst.info["theta_init"],
                     checkpoints=checkpoints).checkpoint_thetas

    return jax.vmap(one)(shard_seeds(jax.random.split(key, num_seeds)))


def trajectories(key, num_seeds, *, num_steps, checkpoints, variant="main"):
    """Checkpoint parameters θ_t ``(S, C, d)`` of `num_seeds` independent online-SGD runs
    (vanilla SGD, batch 128, η = 2/(H B_v²), clipping to the variant's box; CONSTRUCTIONS.md §11)."""
    lower, upper = constraint(variant)  # builds the (cached) instance outside any trace
    inst = instance()
    features_model = inst.model(inst.info["theta_init"])  # built (and validated) outside the trace
    return _trajectories(key, lower, upper, features_model, num_steps=int(num_steps),
                         checkpoints=tuple(int(t) for t in checkpoints), num_seeds=int(num_seeds))


def checkpoint_metrics(thetas):
    """Exact KL, Cov_N (N in COV_N) and Pass@N (N in PASS_N) for thetas ``(..., d)``."""
    inst = instance()
    return _checkpoint_metrics(jnp.asarray(thetas), inst.truth)


@jax.jit
def _checkpoint_metrics(thetas, truth):
    """`truth` is passed in (traced), not captured: no concrete model is validated inside the trace."""
    inst = instance()
    truth_lp = position_tables(inst.features, inst.info["theta_star"])

    def one(theta):
        model = inst.model(theta)
        model_lp = position_tables(inst.features, theta)
        return {
            "kl": covsim.kl(truth, model, inst.mu),
            "cov": coverage_fast(truth_lp, model_lp, inst.mu, jnp.asarray(COV_N)),
            "pass": pass_at_n_exact(model, inst.mu, inst.info["target_y"], jnp.asarray(PASS_N)),
        }

    flat = thetas.reshape(-1, thetas.shape[-1])
    out = jax.lax.map(one, flat)
    return jax.tree_util.tree_map(lambda v: v.reshape(thetas.shape[:-1] + v.shape[1:]), out)


def metric_name(kind: str, t: int, level: float | None = None) -> str:
    """Column name of a per-checkpoint metric, e.g. ``cov5.7@t300``."""
    return f"{kind}{'' if level is None else f'{level:g}'}@t{t}"


def flatten_metrics(metrics, checkpoints) -> dict:
    """Per-seed columns from ``checkpoint_metrics`` output with leading axes (S, C)."""
    out = {}
    for c, t in enumerate(checkpoints):
        out[metric_name("kl", t)] = np.asarray(metrics["kl"][:, c], float)
        for j, level in enumerate(COV_N):
            out[metric_name("cov", t, level)] = np.asarray(metrics["cov"][:, c, j], float)
        for j, level in enumerate(PASS_N):
            out[metric_name("pass", t, level)] = np.asarray(metrics["pass"][:, c, j], float)
    return out


def per_checkpoint(table, kind: str, level: float | None = None):
    """(checkpoints (C,), values (C, S)) of one metric from a ResultTable with one cell."""
    steps = sorted(int(name.split("@t")[1]) for name in table.columns if name.startswith("kl@t"))
    values = np.stack([table.column(metric_name(kind, t, level)).astype(float) for t in steps])
    return np.asarray(steps), values


# ---------------------------------------------------------------------------
# selection among one seed's checkpoints


def stacked_checkpoints(thetas):
    """One stacked LinearModel with theta ``(C, d)``."""
    inst = instance()
    return eqx.filter_vmap(lambda th: covsim.LinearModel(inst.features, th, inst.horizon))(thetas)


@partial(jax.jit, static_argnames=("num_heldout", "levels", "scramble"))
def _picks(thetas, key, truth, *, num_heldout, levels, scramble):
    inst = instance()
    key_sample, key_perm = jax.random.split(key)
    x, y = covsim.sample(truth, inst.mu, num_heldout, key=key_sample)
    stacked = stacked_checkpoints(thetas)
    logliks = heldout_logliks(stacked, x, y)
    out = {}
    for level in levels:
        index, scores = tournament(logliks, level)
        if scramble:  # the scores handed to the candidates in a random order (negative control)
            perm = jax.random.permutation(key_perm, scores.shape[0])
            index = perm[jnp.argmin(scores)]
        out[f"tour{level:g}"] = index
    out["mince"] = select_min_cross_entropy(logliks)[0]
    out["minkl"] = select_min_kl(stacked, truth, inst.mu)[0]
    return out


def picks(thetas, keys, *, levels, num_heldout=HELDOUT, scramble=False):
    """Checkpoint indices picked by the simple tournament (each level), min-CE and min-KL.

    `thetas` ``(S, C, d)``, `keys` ``(S, 2)`` (one held-out sample of π_D per seed). The
    tournament and min-CE see only held-out log-likelihoods; min-KL is the oracle. With
    `scramble` the tournament's scores are dealt to the checkpoints in a random order.
    """
    truth = instance().truth
    fn = jax.vmap(lambda th, k: _picks(th, k, truth, num_heldout=int(num_heldout),
                                       levels=tuple(float(v) for v in levels), scramble=bool(scramble)))
    return {name: np.asarray(v) for name, v in fn(thetas, keys).items()}


# ---------------------------------------------------------------------------
# per-step paired intervals


def paired_t(diff, level=0.95):
    """Mean and Student-t CI of per-seed differences along the last axis (rows: steps,
    columns: seeds); with one seed the interval has zero width."""
    s = diff.shape[-1]
    mean = diff.mean(axis=-1)
    if s < 2:
        return mean, mean, mean
    half = t_quantile(0.5 + level / 2, s - 1) * diff.std(axis=-1, ddof=1) / math.sqrt(s)
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------
# rank correlations


def _ranks(values):
    """Average ranks along the last axis of a 2-d array (ties share their mean rank)."""
    values = np.atleast_2d(np.asarray(values, float))
    out = np.empty_like(values)
    for i, row in enumerate(values):
        order = np.argsort(row, kind="stable")
        ranks = np.empty_like(row)
        ranks[order] = np.arange(row.size, dtype=float)
        for v in np.unique(row):
            tie = row == v
            ranks[tie] = ranks[tie].mean()
        out[i] = ranks
    return out


def spearman(a, b):
    """Spearman rank correlation per row of ``(S, C)`` arrays (nan when a row is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)
