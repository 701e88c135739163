"""MLE pipeline: scaling of covsim.fit_mle and the horizon workload against NumPy/SciPy.

(a) Scaling. ``covsim.fit_mle`` (AR-linear, unit ball) on
``covsim.instances.pivotal_tokens(H, k=2, V=8)``: wall time of one jitted
sample + fit (after compilation) at n in {n0, 2n0, 4n0} and H in {H0, 2H0, 4H0}. Sampling
is O(n·H); each Newton iteration is O(contexts) = O(H·V²·d) whatever n, so the ratio per
doubling of n is <= 2 (-> 1 when the fit dominates) and per doubling of H about 2.
Also checks that a sweep over n with ``weights = arange(n_max) < n`` compiles the solver
once (jit cache size of ``covsim.fit.mle._fit_linear_model``).

(b) Horizon workload (kl_horizon_lower_bound, d = 1, Θ = [-1, 1]): per seed-cell
sample -> constrained MLE -> exact KL -> coverage at N = (2, 16, 256).
  covsim: one jitted ``vmap`` over seeds per horizon (sample, fit_mle, kl, coverage bracket).
  baseline: the straightforward NumPy/SciPy code — a sampling loop over positions, SciPy
  ``minimize(method="L-BFGS-B", bounds=[(-1, 1)])`` on the log-likelihood of the tokens,
  exact KL by a forward recursion over positions, coverage by Monte Carlo with 10^5
  sequences (a loop over positions), and a Python loop over seeds.
Reports the per-seed-cell time ratio baseline / covsim (the baseline runs fewer seeds).

Run: python benchmarks/bench_mle.py [--repeats 3] [--n0 512] [--H0 32]
     [--horizons 8,16,32,64,128,256] [--seeds 16] [--baseline-seeds 4] [--mc 100000]
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

jax.config.update("jax_enable_x64", True)

from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
import covsim  # noqa: E402
from covsim.fit import mle as mle_module  # noqa: E402
from covsim.instances import kl_horizon_lower_bound, pivotal_tokens  # noqa: E402

N_GRID = (2.0, 16.0, 256.0)


# ---------------------------------------------------------------- (a) scaling


def scaling(n0, H0, repeats):
    rows = []
    for H in (H0, 2 * H0, 4 * H0):
        inst = pivotal_tokens(H, 2, 8)
        learner = inst.model(jnp.zeros_like(inst.truth.theta))
        for n in (n0, 2 * n0, 4 * n0):
            @jax.jit
            def sample_and_fit(key, n=n, inst=inst, learner=learner):
                x, y = covsim.sample(inst.truth, inst.mu, n, key=key)
                return covsim.fit_mle(learner, x, y, **inst.fit_kwargs()).theta

            key = jax.random.PRNGKey(1)
            t0 = time.perf_counter()
            jax.block_until_ready(sample_and_fit(key))
            first = time.perf_counter() - t0
            t = best_time(lambda: sample_and_fit(key), repeats)
            rows.append({"n": n, "H": H, "seconds": t, "first_call_s": first})
            print(f"  n={n:6d} H={H:4d}  sample+fit {t * 1e3:9.2f} ms  (first call {first:.1f} s)")
    table = {(r["n"], r["H"]): r["seconds"] for r in rows}
    ns, hs = sorted({r["n"] for r in rows}), sorted({r["H"] for r in rows})
    ratio_n = {f"H={H}": [table[(ns[i + 1], H)] / table[(ns[i], H)] for i in range(2)] for H in hs}
    ratio_h = {f"n={n}": [table[(n, hs[i + 1])] / table[(n, hs[i])] for i in range(2)] for n in ns}
    print("  ratio per doubling of n:", {k: np.round(v, 2).tolist() for k, v in ratio_n.items()})
    print("  ratio per doubling of H:", {k: np.round(v, 2).tolist() for k, v in ratio_h.items()})
    return {"rows": rows, "ratio_per_doubling_n": ratio_n, "ratio_per_doubling_H": ratio_h}


def sweep_compiles_once(n_max, H):
    inst = pivotal_tokens(H, 2, 8)
    learner = inst.model(jnp.zeros_like(inst.truth.theta))
    x, y = covsim.sample(inst.truth, inst.mu, n_max, key=jax.random.PRNGKey(2))
    before = mle_module._fit_linear_model._cache_size()
    before_counts = mle_module._counts._cache_size()
    thetas = []
    for n in (n_max // 8, n_max // 4, n_max // 2, n_max):
        weights = (jnp.arange(n_max) < n).astype(jnp.float64)
        thetas.append(np.asarray(covsim.fit_mle(learner, x, y, weights=weights, **inst.fit_kwargs()).theta))
    added = mle_module._fit_linear_model._cache_size() - before
    added_counts = mle_module._counts._cache_size() - before_counts
    print(f"  sweep over 4 values of n with a weight mask: {added} new compilation(s) of the solver, "
          f"{added_counts} of the count scatter")
    return {"n_values": 4, "new_compilations": int(added), "new_count_compilations": int(added_counts)}


# ---------------------------------------------------------------- (b) horizon workload


def covsim_pipeline(H, n, seeds, repeats):
    inst = kl_horizon_lower_bound(n, H, key=jax.random.PRNGKey(0))
    learner = inst.model(jnp.zeros(1))
    N = jnp.asarray(N_GRID)

    def one_seed(key):
        key_theta, key_data = jax.random.split(key)
        theta_star = jnp.where(jax.random.bernoulli(key_theta, 0.5), 1.0, -1.0).reshape(1)
        truth = eqx.tree_at(lambda m: m.theta, inst.truth, theta_star)
        x, y = covsim.sample(truth, inst.mu, n, key=key_data)
        fitted = covsim.fit_mle(learner, x, y, box=(-1.0, 1.0))
        kl = covsim.kl(truth, fitted, inst.mu)
        lo, hi = covsim.coverage(truth, fitted, inst.mu, N, method="bracket", bins=256)
        return kl, lo, hi, fitted.theta

    run = jax.jit(jax.vmap(one_seed))
    keys = jax.random.split(jax.random.PRNGKey(7), seeds)
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(keys))
    first = time.perf_counter() - t0
    return best_time(lambda: run(keys), repeats), first, out


def numpy_sample(table, mu, n, H, rng):
    """Sampling loop over positions from a (P, H|1, V+1|1, V) log-prob table."""
    P, _, _, V = table.shape
    x = rng.choice(P, size=n, p=mu)
    prev = np.full(n, V)
    y = np.empty((n, H), dtype=np.int64)
    for h in range(H):
        probs = np.exp(table[x, min(h, table.shape[1] - 1), np.minimum(prev, table.shape[2] - 1)])
        cdf = probs.cumsum(-1)
        u = rng.random((n, 1))
        y[:, h] = np.minimum((cdf <= u * cdf[:, -1:]).sum(-1), V - 1)
        prev = y[:, h]
    return x, y


def numpy_log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def numpy_table(features, theta):
    return numpy_log_softmax(features @ theta)


def numpy_fit(features, x, y):
    """SciPy L-BFGS-B on the negative log-likelihood of all tokens, θ in [-1, 1]^d."""
    n, H = y.shape
    V = features.shape[3]
    prev = np.concatenate([np.full((n, 1), V), y[:, :-1]], axis=1)
    h_idx = np.minimum(np.arange(H)[None, :], features.shape[1] - 1)
    ctx = features[x[:, None], h_idx, np.minimum(prev, features.shape[2] - 1)]  # (n, H, V, d)

    def objective(theta):
        logits = ctx @ theta
        lp = numpy_log_softmax(logits)
        p = np.exp(lp)
        chosen = np.take_along_axis(lp, y[..., None], -1)[..., 0]
        phi_y = np.take_along_axis(ctx, y[..., None, None], 2)[:, :, 0]
        grad = (phi_y - np.einsum("nhv,nhvd->nhd", p, ctx)).sum((0, 1))
        return -chosen.sum(), -grad

    d = features.shape[-1]
    res = scipy.optimize.minimize(objective, np.zeros(d), jac=True, method="L-BFGS-B",
                                  bounds=[(-1.0, 1.0)] * d)
    return res.x


def numpy_kl(lp, lq, mu, H):
    P, _, U, V = lp.shape
    m = np.zeros((P, V + 1))
    m[:, V] = mu
    total = 0.0
    for h in range(H):
        a = np.broadcast_to(lp[:, min(h, lp.shape[1] - 1)], (P, V + 1, V))
        b = np.broadcast_to(lq[:, min(h, lq.shape[1] - 1)], (P, V + 1, V))
        total += np.sum(m * np.sum(np.exp(a) * (a - b), axis=-1))
        nxt = np.einsum("xu,xuv->xv", m, np.exp(a))
        m = np.concatenate([nxt, np.zeros((P, 1))], axis=1)
    return total


def numpy_mc_coverage(lp, lq, mu, H, num, rng):
    P, _, _, V = lp.shape
    x = rng.choice(P, size=num, p=mu)
    prev = np.full(num, V)
    ratio = np.zeros(num)
    for h in range(H):
        hp, hq = min(h, lp.shape[1] - 1), min(h, lq.shape[1] - 1)
        up, uq = np.minimum(prev, lp.shape[2] - 1), np.minimum(prev, lq.shape[2] - 1)
        probs = np.exp(lp[x, hp, up])
        cdf = probs.cumsum(-1)
        tok = np.minimum((cdf <= rng.random((num, 1)) * cdf[:, -1:]).sum(-1), V - 1)
        ratio += lp[x, hp, up, tok] - lq[x, hq, uq, tok]
        prev = tok
    return (ratio[:, None] >= np.log(np.asarray(N_GRID))[None, :] - 1e-9).mean(0)


def numpy_pipeline(H, n, seeds, mc):
    inst = kl_horizon_lower_bound(n, H, key=jax.random.PRNGKey(0))
    features = np.asarray(inst.features)
    mu = np.asarray(inst.mu)
    out = []
    stages = dict.fromkeys(("sample", "fit", "kl", "coverage_mc"), 0.0)
    t0 = time.perf_counter()
    for seed in range(seeds):  # per-seed Python loop
        rng = np.random.default_rng(seed)
        theta_star = np.array([1.0 if rng.random() < 0.5 else -1.0])
        lp = numpy_table(features, theta_star)
        t = time.perf_counter()
        x, y = numpy_sample(lp, mu, n, H, rng)
        t, stages["sample"] = time.perf_counter(), stages["sample"] + time.perf_counter() - t
        theta_hat = numpy_fit(features, x, y)
        lq = numpy_table(features, theta_hat)
        t, stages["fit"] = time.perf_counter(), stages["fit"] + time.perf_counter() - t
        kl = numpy_kl(lp, lq, mu, H)
        t, stages["kl"] = time.perf_counter(), stages["kl"] + time.perf_counter() - t
        cov = numpy_mc_coverage(lp, lq, mu, H, mc, rng)
        stages["coverage_mc"] += time.perf_counter() - t
        out.append((kl, cov, theta_hat))
    return time.perf_counter() - t0, out, stages


def horizon_workload(horizons, n, seeds, baseline_seeds, mc, repeats):
    rows = []
    for H in horizons:
        t_cov, first, (kl, lo, hi, theta) = covsim_pipeline(H, n, seeds, repeats)
        t_np, out, stages = numpy_pipeline(H, n, baseline_seeds, mc)
        per_cov, per_np = t_cov / seeds, t_np / baseline_seeds
        rows.append({"H": H, "covsim_s": t_cov, "covsim_seeds": seeds, "covsim_first_call_s": first,
                     "baseline_s": t_np, "baseline_seeds": baseline_seeds,
                     "per_seed_ratio": per_np / per_cov,
                     "baseline_stage_s": stages,
                     "per_seed_ratio_baseline_without_mc": (t_np - stages["coverage_mc"]) / baseline_seeds / per_cov,
                     "covsim_mean_kl": float(np.mean(np.asarray(kl))),
                     "baseline_mean_kl": float(np.mean([o[0] for o in out])),
                     "covsim_bracket_N2": [float(np.mean(np.asarray(lo)[:, 0])), float(np.mean(np.asarray(hi)[:, 0]))],
                     "baseline_mc_N2": float(np.mean([o[1][0] for o in out]))})
        print(f"  H={H:4d}  covsim {seeds} seeds {t_cov * 1e3:8.1f} ms ({per_cov * 1e3:7.2f} ms/seed)   "
              f"numpy/scipy {baseline_seeds} seeds {t_np:7.2f} s ({per_np * 1e3:8.1f} ms/seed)   "
              f"ratio/seed {per_np / per_cov:7.1f}x   (covsim first call {first:.1f} s)")
    total_cov = sum(r["covsim_s"] / r["covsim_seeds"] for r in rows)
    total_np = sum(r["baseline_s"] / r["baseline_seeds"] for r in rows)
    for r in rows:
        print(f"  H={r['H']:4d} baseline stages (s, {baseline_seeds} seeds): "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["baseline_stage_s"].items())
              + f"; ratio/seed without the MC stage {r['per_seed_ratio_baseline_without_mc']:.1f}x")
    with_compile = sum(r["covsim_first_call_s"] for r in rows)
    print(f"  whole grid incl. compilation, {seeds} seeds: covsim first calls {with_compile:.1f} s vs "
          f"numpy/scipy extrapolated {total_np * seeds:.1f} s (ratio {total_np * seeds / with_compile:.1f}x)")
    print(f"  whole grid, per seed: covsim {total_cov * 1e3:.1f} ms, numpy/scipy {total_np * 1e3:.1f} ms, "
          f"ratio {total_np / total_cov:.1f}x")
    return {"rows": rows, "per_seed_ratio_whole_grid": total_np / total_cov,
            "whole_grid_including_compilation_ratio": total_np * seeds / with_compile}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n0", type=int, default=512)
    parser.add_argument("--H0", type=int, default=32)
    parser.add_argument("--n", type=int, default=1000, help="sample size of the horizon workload")
    parser.add_argument("--horizons", default="8,16,32,64,128,256")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--baseline-seeds", type=int, default=4)
    parser.add_argument("--mc", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: scaling,sweep,horizon")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    report = {"backend": jax.default_backend()}
    if "scaling" not in skip:
        print(f"(a) fit_mle scaling on pivotal_tokens(H, k=2, V=8), n0={args.n0}, H0={args.H0}")
        report["scaling"] = scaling(args.n0, args.H0, args.repeats)
    if "sweep" not in skip:
        report["sweep"] = sweep_compiles_once(4 * args.n0, args.H0)
    if "horizon" not in skip:
        horizons = [int(h) for h in args.horizons.split(",")]
        print(f"(b) horizon workload kl_horizon_lower_bound, n={args.n}, {len(horizons)} horizons, "
              f"covsim {args.seeds} seeds (bracket, 256 bins) vs NumPy/SciPy {args.baseline_seeds} "
              f"seeds (MC {args.mc})")
        report["horizon"] = horizon_workload(horizons, args.n, args.seeds, args.baseline_seeds,
                                             args.mc, args.repeats)
    print(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
