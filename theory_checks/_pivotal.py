"""Shared helpers of the SGD checks on ``pivotal_tokens`` (CONSTRUCTIONS.md §9): the
instance set-up, step-size configs, seed-vectorised training with checkpoints, and
coverage / TTT metrics at checkpoints. Private to ``theory_checks``; no check imports
another check, they import this module."""

from __future__ import annotations

import functools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim.decoding import ttt_coverage, ttt_kl
from covsim.experiments.check import Assertion, Verdict
from covsim.experiments.stats import mean_ci
from covsim.fit import sgd
from covsim.instances.statistical import pivotal_tokens
from covsim.experiments.sharding import shard_seeds

NORMALIZED_ETA_FACTOR = 32.0
"""[project] fixed multiplier of the normalized-SGD step η (λ unchanged), a labelled
variant (THEORY §6.3: a larger η is not evidence for Thm 5.1)."""

GROWTH_SLOPE = 0.15
"""Threshold on the log–log slope in H: 'no growth' = CI upper end ≤ 0.15,
'growth' = CI lower end ≥ 0.15."""




@functools.lru_cache(maxsize=None)
def pivotal_setup(H: int, k: int, V: int):
    """(instance, learner LinearModel at θ_1 = 0, exact-KL metric fn, σ⋆²) — cached, so the
    metric function is the same object across calls (``train`` treats it as static)."""
    inst = pivotal_tokens(H, k, V)
    learner = inst.model(jnp.zeros(inst.info["d"]))

    def kl_metric(theta):
        return covsim.kl(inst.truth, inst.model(theta), inst.mu)

    sigma2 = float(covsim.inherent_variance(inst.truth, inst.mu))
    return inst, learner, kl_metric, sigma2


def stratified_checkpoints(T: int, count: int, seed: int) -> tuple[int, ...]:
    """One uniform iterate index in each of ``count`` equal blocks of 1..T (sorted, unique).

    The mean of f over these iterates is an unbiased estimate of (1/T)Σ_{t=1..T} f(θ_t)
    (stratified sampling with blocks of equal size, up to rounding of the block edges)."""
    count = min(count, T)
    edges = np.floor(np.linspace(1, T + 1, count + 1)).astype(int)
    rng = np.random.default_rng(seed)
    picks = [int(rng.integers(lo, max(hi, lo + 1))) for lo, hi in zip(edges[:-1], edges[1:])]
    return tuple(sorted(set(picks)))


def cell_seed(cell: dict) -> int:
    from covsim.experiments.runner import stable_int_hash

    return stable_int_hash(cell)


def pivotal_config(method: str, *, H, k, V, T, N, K=1, eta_factor=1.0):
    """THEORY §6.6 defaults for ``pivotal_tokens`` (σ⋆² exact); normalized η times
    ``eta_factor`` with λ kept at the theorem's value."""
    _, _, _, sigma2 = pivotal_setup(H, k, V)
    config = sgd.default_config(method, sigma2=sigma2, B=16.0, H=H, T=T, N=N, K=K)
    if eta_factor != 1.0:
        config = sgd.SGDConfig(method, config.learning_rate * eta_factor, lam=config.lam,
                               batch_size=config.batch_size, log_n=config.log_n)
    return config


def train_seeds(config, *, H, k, V, T, key, num_seeds, checkpoints):
    """``train`` vmapped over seeds with the exact KL metric in the scan."""
    inst, learner, kl_metric, _ = pivotal_setup(H, k, V)
    keys = shard_seeds(jax.random.split(key, num_seeds))
    return jax.vmap(lambda kk: sgd.train(
        learner, inst.truth, inst.mu, config, num_steps=T, key=kk, constraint=inst.constraint,
        checkpoints=checkpoints, metrics={"kl": kl_metric}))(keys)


@partial(jax.jit, static_argnames=("H", "k", "V", "num_samples"))
def mc_coverage_at(thetas, key, N, *, H, k, V, num_samples):
    """Cov_N(π_D‖π_θ) by ``covsim.coverage(method='mc')`` for thetas (S, C, d); independent
    keys per seed and checkpoint. Returns (S, C)."""
    inst, _, _, _ = pivotal_setup(H, k, V)
    S, C = thetas.shape[:2]
    keys = jax.random.split(key, S * C).reshape(S, C, -1)

    def one(theta, kk):
        return covsim.coverage(inst.truth, inst.model(theta), inst.mu, N, method="mc",
                               num_samples=num_samples, key=kk)

    return jax.vmap(jax.vmap(one))(thetas, keys)


@partial(jax.jit, static_argnames=("H", "k", "V", "num_samples"))
def ttt_metrics_at(thetas, key, N, learning_rate, *, H, k, V, num_samples):
    """KL and Cov_N of π^TTT_θ (``covsim.decoding``, MC over prefixes) for thetas (S, C, d)."""
    inst, learner, _, _ = pivotal_setup(H, k, V)
    S, C = thetas.shape[:2]
    keys = jax.random.split(key, 2 * S * C).reshape(2, S, C, -1)

    def one(theta, k_kl, k_cov):
        kl = ttt_kl(inst.truth, learner, theta, inst.mu, learning_rate=learning_rate,
                    constraint=inst.constraint, num_samples=num_samples, key=k_kl).mean
        cov = ttt_coverage(inst.truth, learner, theta, inst.mu, N, learning_rate=learning_rate,
                           constraint=inst.constraint, num_samples=num_samples, key=k_cov).mean
        return kl, cov

    return jax.vmap(jax.vmap(one))(thetas, keys[0], keys[1])


def theta_star_dist2(H: int, k: int, V: int) -> float:
    """‖θ⋆ − θ_1‖² with θ_1 = 0."""
    inst, _, _, _ = pivotal_setup(H, k, V)
    return float(jnp.sum(inst.info["theta_star"] ** 2))


def exact_mean_bound_assertion(name: str, values, bound: float, *, what: str) -> Assertion:
    """EXACT in expectation: *fails* if the 95% CI of the seed mean lies above the bound,
    *holds* if the seed mean is ≤ the bound, else *inconclusive*."""
    mean, lo, hi = mean_ci(values)
    details = {"mean": mean, "ci": [lo, hi], "bound": bound, "ratio": mean / bound if bound > 0 else math.inf}
    text = f"{what}: seed mean {mean:.4g} [{lo:.4g}, {hi:.4g}] vs bound {bound:.4g}"
    if not np.isfinite(mean):
        return Assertion(name, Verdict.INCONCLUSIVE, text + " (non-finite)", details)
    if lo > bound:
        return Assertion(name, Verdict.FAILS, text + ": CI above the bound", details)
    if mean <= bound:
        return Assertion(name, Verdict.HOLDS, text + ": below", details)
    return Assertion(name, Verdict.INCONCLUSIVE, text + ": mean above, CI overlaps", details)


def per_seed(table, x_name, y_name, **filters):
    x, mean, se, ys = table.group_mean(x_name, y_name, **filters)
    return x, ys


# ---------------------------------------------------------------------------
# this check

