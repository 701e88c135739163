"""Online vanilla SGD: covsim.train (one lax.scan in one jit, vmapped over seeds) against NumPy.

Workload: ``covsim.instances.pivotal_tokens(H=128, k=2, V=8)`` (d = 9, unit ball), the
vanilla rule θ_{t+1} = Proj_ball(θ_t + η ∇ log π_θt(y_t|x)) with one fresh sequence
y_t ~ π⋆ per step (K = 1) and η from ``default_config("vanilla", ...)``, for 16 seeds.
  covsim: ``jax.jit(jax.vmap(lambda k: covsim.train(..., key=k)))`` over 16 keys,
          T = --steps steps (default 2000; the issue's T = 10^4 with --steps 10000).
  numpy:  a plain loop over steps; per step a sampling loop over the H positions from the
          truth's next-token table, the score Σ_h φ(y_h) − E_{π_θ}φ, the step and the
          projection onto the ball. Two baselines: (a) one seed at a time (the plain loop),
          (b) all 16 seeds vectorized in every NumPy call (a stronger baseline).
          Each runs --numpy-steps steps (default 200); times are compared per seed-step.
Also reports the jit cache of the training core across calls that change only the key and
η, or only the checkpoint steps (no retrace expected), and with a different number of
checkpoints (the count is static: one compilation expected).

Run: python benchmarks/bench_sgd.py [--steps 2000] [--numpy-steps 200] [--repeats 2] [--H 128]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
import covsim  # noqa: E402
from covsim.fit import sgd as sgd_module  # noqa: E402
from covsim.instances import pivotal_tokens  # noqa: E402

SEEDS = 16
N_THRESHOLD = 16.0


def make_problem(H, V=8, k=2):
    inst = pivotal_tokens(H, k, V)
    learner = inst.model(jnp.zeros_like(inst.truth.theta))
    return inst, learner


def numpy_vanilla(features, truth_lp, eta, radius, steps, seeds, rng):
    """Plain NumPy vanilla SGD, vectorized over seeds, loop over steps and positions."""
    _, H, U, V, d = features.shape
    theta = np.zeros((seeds, d))
    rows = np.arange(seeds)
    for _ in range(steps):
        prev = np.full(seeds, V)
        y = np.empty((seeds, H), dtype=np.int64)
        for h in range(H):  # sampling loop over positions
            probs = np.exp(truth_lp[0, h, prev])
            cdf = probs.cumsum(-1)
            y[:, h] = np.minimum((cdf <= rng.random((seeds, 1)) * cdf[:, -1:]).sum(-1), V - 1)
            prev = y[:, h]
        prevs = np.concatenate([np.full((seeds, 1), V), y[:, :-1]], axis=1)
        ctx = features[0, np.arange(H)[None, :], prevs]  # (S, H, V, d)
        logits = np.einsum("shvd,sd->shv", ctx, theta)
        logits -= logits.max(-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(-1, keepdims=True)
        chosen = ctx[rows[:, None], np.arange(H)[None, :], y]  # (S, H, d)
        score = (chosen - np.einsum("shv,shvd->shd", p, ctx)).sum(1)
        theta = theta + eta * score
        norms = np.linalg.norm(theta, axis=1, keepdims=True)
        theta = theta / np.maximum(1.0, norms / radius)
    return theta


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--numpy-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--H", type=int, default=128)
    args = parser.parse_args()
    T = args.steps
    inst, learner = make_problem(args.H)
    info = inst.info
    config = covsim.default_config("vanilla", sigma2=info["sigma2"], B=info["B"], H=args.H,
                                           T=T, N=N_THRESHOLD)
    eta = float(config.learning_rate)
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
    checkpoints = sgd_module.default_checkpoints(T)

    def train_all(keys, lr, checkpoints=checkpoints):
        cfg = covsim.SGDConfig("vanilla", lr)
        return jax.vmap(lambda k: covsim.train(learner, inst.truth, inst.mu, cfg, num_steps=T, key=k,
                                               constraint=inst.constraint, checkpoints=checkpoints))(keys)

    t0 = time.perf_counter()
    result = jax.block_until_ready(train_all(keys, eta))
    first = time.perf_counter() - t0
    t_cov = best_time(lambda: train_all(keys, eta), args.repeats)

    # Same law, sampled up front: T fresh sequences per seed drawn by covsim.sample (one scan
    # over positions for all steps), then train(dataset=...) visits row t at step t
    # (isolates the cost of the update loop from sampling).
    def train_presampled(keys, lr):
        cfg = covsim.SGDConfig("vanilla", lr)

        def one(k):
            k_data, k_run = jax.random.split(k)
            data = covsim.sample(inst.truth, inst.mu, T, key=k_data)
            return covsim.train(learner, inst.truth, inst.mu, cfg, num_steps=T, key=k_run,
                                constraint=inst.constraint, checkpoints=checkpoints, dataset=data)
        return jax.vmap(one)(keys)

    presampled = jax.jit(train_presampled)
    jax.block_until_ready(presampled(keys, eta))
    t_pre = best_time(lambda: presampled(keys, eta), args.repeats)

    # Retracing, counted on the jit cache of the training core (single-seed calls: under an
    # outer vmap the inner jit's cache is not used).
    core = sgd_module._train_core

    def single(key, lr, ckpts):
        return covsim.train(learner, inst.truth, inst.mu, covsim.SGDConfig("vanilla", lr), num_steps=T,
                            key=key, constraint=inst.constraint, checkpoints=ckpts)

    cache0 = core._cache_size()
    jax.block_until_ready(single(keys[0], eta, checkpoints))
    cache1 = core._cache_size()
    jax.block_until_ready(single(keys[1], 0.5 * eta, checkpoints))  # new key and η
    cache2 = core._cache_size()
    jax.block_until_ready(single(keys[0], eta, tuple(range(1, len(checkpoints) + 1))))  # same count
    cache3 = core._cache_size()
    jax.block_until_ready(single(keys[0], eta, (1, T // 2, T + 1)))  # another count
    cache4 = core._cache_size()

    features = np.asarray(learner.features)
    truth_lp = np.asarray(covsim.next_token_log_probs(inst.truth))
    radius = float(inst.constraint.radius)
    t0 = time.perf_counter()
    theta_np = numpy_vanilla(features, truth_lp, eta, radius, args.numpy_steps, SEEDS, np.random.default_rng(0))
    t_np = time.perf_counter() - t0
    one_seed_steps = max(1, args.numpy_steps // 4)
    t0 = time.perf_counter()
    numpy_vanilla(features, truth_lp, eta, radius, one_seed_steps, 1, np.random.default_rng(1))
    t_np1 = time.perf_counter() - t0

    per_cov = t_cov / (T * SEEDS)
    per_np = t_np / (args.numpy_steps * SEEDS)
    per_np1 = t_np1 / one_seed_steps
    theta_cov = np.asarray(result.theta)
    report = {
        "backend": jax.default_backend(),
        "workload": {"instance": "pivotal_tokens", "H": args.H, "V": 8, "k": 2, "d": int(features.shape[-1]),
                     "seeds": SEEDS, "covsim_steps": T, "numpy_steps": args.numpy_steps, "eta": eta},
        "covsim_s": t_cov, "covsim_first_call_s": first, "numpy_s": t_np,
        "covsim_us_per_seed_step": per_cov * 1e6, "numpy_us_per_seed_step": per_np * 1e6,
        "covsim_us_per_step_16_seeds": t_cov / T * 1e6, "numpy_us_per_step_16_seeds": t_np / args.numpy_steps * 1e6,
        "numpy_over_covsim_per_seed_step": per_np / per_cov,
        "numpy_one_seed_us_per_seed_step": per_np1 * 1e6,
        "numpy_one_seed_over_covsim_per_seed_step": per_np1 / per_cov,
        "covsim_presampled_s": t_pre, "covsim_presampled_us_per_seed_step": t_pre / (T * SEEDS) * 1e6,
        "numpy_over_covsim_presampled_per_seed_step": per_np / (t_pre / (T * SEEDS)),
        "compilations": {"first_call": cache1 - cache0, "new_key_and_eta": cache2 - cache1,
                         "other_checkpoints_same_count": cache3 - cache2,
                         "checkpoints_other_count": cache4 - cache3},
        "sanity": {"covsim_mean_theta0_final": float(theta_cov[:, 0].mean()),
                   "numpy_mean_theta0_after_numpy_steps": float(theta_np[:, 0].mean()),
                   "theta_star0": float(info["theta_star"][0])},
    }
    print(f"covsim  {SEEDS} seeds x {T} steps: {t_cov:.3f} s  ({per_cov * 1e6:.2f} us per seed-step, "
          f"{t_cov / T * 1e6:.1f} us per step of 16 seeds; first call {first:.1f} s)")
    print(f"numpy   {SEEDS} seeds x {args.numpy_steps} steps: {t_np:.3f} s  ({per_np * 1e6:.2f} us per seed-step)")
    print(f"numpy   1 seed x {one_seed_steps} steps: {t_np1:.3f} s  ({per_np1 * 1e6:.2f} us per seed-step)")
    print(f"ratio numpy/covsim per seed-step: {per_np1 / per_cov:.1f}x against the one-seed loop, "
          f"{per_np / per_cov:.1f}x against NumPy vectorized over the 16 seeds")
    print(f"covsim, the T sequences sampled up front (dataset=): {t_pre:.3f} s "
          f"({t_pre / (T * SEEDS) * 1e6:.2f} us per seed-step), ratio numpy/covsim "
          f"{per_np / (t_pre / (T * SEEDS)):.1f}x")
    print(f"jit cache of the training core: +{cache1 - cache0} first call, +{cache2 - cache1} with a new key "
          f"and eta, +{cache3 - cache2} with other checkpoint steps of the same count, "
          f"+{cache4 - cache3} with another count")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
