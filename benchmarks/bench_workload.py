"""The user's workload (issue 11, "What to build" 5 and 8): covsim against NumPy/SciPy, in one run.

Workload: 3 horizons H ∈ {16, 64, 256} × 8 seeds. For each (H, seed): draw n = 1000
sequences from an AR-linear law (covsim.LinearModel, P = 4 prompts, V = 8 tokens, d = 16,
random Gaussian features φ ~ N(0, 1/d), ‖θ⋆‖ = 1, prompt law uniform), fit the constrained
MLE over the ball ‖θ‖ ≤ 2 (contains θ⋆), compute the exact sequence KL(π⋆‖π̂) and the
coverage Cov_N(π⋆‖π̂) at N ∈ {1.01, 1.1, 1.5} by Monte Carlo with 20 000 sequences.

  covsim: what a good user writes — one function of (law, seed keys), ``jax.vmap`` over the
  8 seeds, ``jax.jit``; the law (features) is an argument, not a closed-over constant.
  With ``--pad`` the three horizons share ONE compiled program: each law is padded to
  H = 256 with ``covsim.pad_horizon`` (padded positions are uniform under both laws, so they
  add exactly 0 to every log-ratio and KL) and the fit masks them (``fit_mle(..., horizon=H)``).

  NumPy/SciPy (the headline baseline): the same work written plainly and vectorized over samples — sampling by a
  loop over positions (inverse CDF), sufficient statistics by ``np.add.at``, the constrained
  MLE by ``scipy.optimize.minimize(method="SLSQP")`` with the analytic gradient and the
  constraint ‖θ‖² ≤ r², exact KL by the forward recursion over positions, Monte Carlo by a
  loop over positions; a Python loop over (H, seed). A second NumPy/SciPy variant
  ("token level", reported next to it) fits on the token-level log-likelihood (gathered
  features of every token, no sufficient statistics) — the pipeline of a user who does not
  aggregate counts; everything else is identical.

Reported in ONE run (JSON on stdout and in --out):
  - covsim **cold**: a fresh process with an empty persistent-compilation-cache folder
    (compilation included; Python/JAX import time reported separately);
  - covsim **warm**: a fresh process with that cache folder now filled;
  - covsim **compiled-only**: the second call of the workload in the warm process;
  - NumPy/SciPy wall time, and the ratios NumPy / covsim for the three;
  - throughput: an estimate of the workload's arithmetic (FLOPs, formula in
    ``workload_flops``) per second of compiled-only covsim, against this machine's own
    float64 matmul rate (NumPy and JAX, 1024×1024);
  - seeds scaling over 1, 2, 4 virtual CPU devices (``XLA_FLAGS=
    --xla_force_host_platform_device_count=K``, seed keys sharded with ``NamedSharding``):
    a sanity check that sharding runs and gives the same numbers, not a speed claim (the
    virtual devices share the same cores).

The covsim children use the persistent cache with ``jax_persistent_cache_min_compile_time_secs
= 0`` (every program is written). ``--runtime-checks off`` sets ``COVSIM_RUNTIME_CHECKS=0`` in
the children (see covsim/_validate.py: traced value checks are then not compiled in, so no
program holds a host callback and every program can be cached persistently).

Run: python benchmarks/bench_workload.py [--out FILE] [--runtime-checks on|off] [--pad]
     [--skip-numpy] [--skip-devices]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HORIZONS = (16, 64, 256)
SEEDS = 8
P, V, D = 4, 8, 16
N_DATA = 1000
MC = 20_000
N_GRID = (1.01, 1.1, 1.5)
RADIUS = 2.0
TIE = 1e-9  # covsim.exact.TIE_TOLERANCE


# ---------------------------------------------------------------- the law (shared)


def law_arrays(H, np):
    """Features (P, H, V+1, V, d) ~ N(0, 1/d), θ⋆ with ‖θ⋆‖ = 1, μ uniform (seeded by H)."""
    rng = np.random.default_rng(1000 + H)
    features = rng.normal(size=(P, H, V + 1, V, D)) / np.sqrt(D)
    theta = rng.normal(size=D)
    theta /= np.linalg.norm(theta)
    return features, theta, np.full(P, 1.0 / P)


# ---------------------------------------------------------------- covsim side (child process)


def covsim_child(args):
    t0 = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", args.cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import jax.numpy as jnp
    import numpy as np
    from jax import monitoring

    import covsim

    t_import = time.perf_counter() - t0
    events = {"compiles": 0, "compile_s": 0.0, "cache_hits": 0}

    def on_duration(name, secs, **_):
        if name == "/jax/core/compile/backend_compile_duration":
            events["compiles"] += 1
            events["compile_s"] += secs

    def on_event(name, **_):
        if name == "/jax/compilation_cache/cache_hits":
            events["cache_hits"] += 1

    monitoring.register_event_duration_secs_listener(on_duration)
    monitoring.register_event_listener(on_event)

    N = jnp.asarray(N_GRID)
    h_max = max(HORIZONS)

    def one_seed(p, mu, horizon, key):
        k_data, k_mc = jax.random.split(key)
        x, y = covsim.sample(p, mu, N_DATA, key=k_data)
        q = covsim.fit_mle(p, x, y, constraint=covsim.Ball(RADIUS),
                           **({"horizon": horizon} if args.pad else {}))
        kl = covsim.kl(p, q, mu)
        cov = covsim.coverage(p, q, mu, N, method="mc", num_samples=MC, key=k_mc)
        return kl, cov, q.theta

    @jax.jit
    def sweep_cell(p, mu, horizon, keys):
        """All seeds of one horizon: vmap over the seed keys, one compiled program."""
        return jax.vmap(one_seed, in_axes=(None, None, None, 0))(p, mu, horizon, keys)

    mesh = None
    if args.shard:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(jax.devices()), ("seeds",))
        seeds_sharding = NamedSharding(mesh, PartitionSpec("seeds"))

    laws = []
    for H in HORIZONS:
        features, theta, mu = law_arrays(H, np)
        p = covsim.LinearModel(jnp.asarray(features), jnp.asarray(theta))
        if args.pad:
            p = covsim.pad_horizon(p, h_max)
        keys = jax.random.split(jax.random.PRNGKey(H), SEEDS)
        if mesh is not None:
            keys = jax.device_put(keys, seeds_sharding)
        laws.append((H, p, jnp.asarray(mu), keys))

    def workload():
        out = []
        for H, p, mu, keys in laws:
            out.append(sweep_cell(p, mu, jnp.asarray(H), keys))
        return jax.block_until_ready(out)

    t1 = time.perf_counter()
    first = workload()
    t_first = time.perf_counter() - t1
    first_events = dict(events)
    t2 = time.perf_counter()
    second = workload()
    t_second = time.perf_counter() - t2
    for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
        assert np.array_equal(np.asarray(a), np.asarray(b)), "second call differs"
    results = {str(H): {"kl": np.asarray(kl).tolist(), "coverage": np.asarray(cov).tolist(),
                        "theta_norm": np.linalg.norm(np.asarray(th), axis=-1).tolist()}
               for (H, *_), (kl, cov, th) in zip(laws, first)}
    iterations = {}
    if not args.shard:  # iteration counts for the FLOP estimate (outside the timings)
        for H, p, mu, keys in laws:
            def iters(key, p=p, mu=mu, H=H):
                x, y = covsim.sample(p, mu, N_DATA, key=jax.random.split(key)[0])
                kw = {"horizon": H} if args.pad else {}
                _, diag = covsim.fit_mle(p, x, y, constraint=covsim.Ball(RADIUS),
                                         return_diagnostics=True, **kw)
                return diag.iterations, diag.converged
            it, conv = jax.jit(jax.vmap(iters))(keys)
            iterations[str(H)] = {"iterations": np.asarray(it).tolist(),
                                  "converged": bool(np.all(np.asarray(conv)))}
    report = {
        "import_s": t_import, "first_call_s": t_first, "second_call_s": t_second,
        "first_call_compiles": first_events["compiles"],
        "first_call_compile_s": first_events["compile_s"],
        "first_call_persistent_cache_hits": first_events["cache_hits"],
        "devices": len(jax.devices()), "device_kind": jax.devices()[0].device_kind,
        "results": results, "fit": iterations,
        "runtime_checks": os.environ.get("COVSIM_RUNTIME_CHECKS", "1"),
    }
    print("CHILD_JSON " + json.dumps(report))


def run_child(cache_dir, *, pad, shard=False, devices=None, runtime_checks="on"):
    env = dict(os.environ)
    env["COVSIM_RUNTIME_CHECKS"] = "0" if runtime_checks == "off" else "1"
    if devices is not None:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={devices}").strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--role", "covsim"]
    if cache_dir:
        cmd += ["--cache-dir", cache_dir]
    if pad:
        cmd += ["--pad"]
    if shard:
        cmd += ["--shard"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"covsim child failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHILD_JSON ")][-1]
    out = json.loads(line[len("CHILD_JSON "):])
    out["process_wall_s"] = wall
    return out


# ---------------------------------------------------------------- NumPy / SciPy side


def numpy_pipeline(seeds=SEEDS, token_level=False):
    import numpy as np
    import scipy.optimize

    def minimize_in_ball(neg):
        """SLSQP on ``neg`` (value, gradient) over the ball ‖θ‖ ≤ RADIUS from θ = 0."""
        res = scipy.optimize.minimize(
            neg, np.zeros(D), jac=True, method="SLSQP",
            constraints=[{"type": "ineq", "fun": lambda t: RADIUS**2 - t @ t,
                          "jac": lambda t: -2 * t}],
            options={"ftol": 1e-14, "maxiter": 200})
        return res.x, res.nit

    def log_softmax(z):
        m = z.max(-1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))

    def sample(lp, mu, n, rng):
        """x ~ μ, y ~ π(·|x) by inverse CDF, a loop over positions; lp (P, H, V+1, V)."""
        H = lp.shape[1]
        x = rng.choice(P, size=n, p=mu)
        y = np.empty((n, H), dtype=np.int64)
        prev = np.full(n, V)
        for h in range(H):
            cdf = np.exp(lp[x, h, prev]).cumsum(-1)
            u = rng.random((n, 1))
            prev = np.minimum((cdf <= u * cdf[:, -1:]).sum(-1), V - 1)
            y[:, h] = prev
        return x, y

    def counts_of(x, y, H):
        prev = np.concatenate([np.full((len(x), 1), V), y[:, :-1]], axis=1)
        counts = np.zeros((P, H, V + 1, V))
        np.add.at(counts, (x[:, None], np.arange(H)[None, :], prev, y), 1.0)
        return counts

    def fit(features, counts):
        """max Σ C log softmax(φθ) s.t. ‖θ‖² ≤ r², SLSQP with the analytic gradient."""
        phi = features.reshape(-1, V, D)
        c = counts.reshape(-1, V)
        tot = c.sum(-1)
        mass = max(c.sum(), 1.0)

        def neg(theta):
            lp = log_softmax(phi @ theta)
            grad = np.einsum("cv,cvd->d", c - tot[:, None] * np.exp(lp), phi)
            return -np.sum(c * lp) / mass, -grad / mass

        return minimize_in_ball(neg)

    def fit_tokens(features, x, y):
        """The same constrained MLE on the token-level log-likelihood Σ_i Σ_h log π(y_ih|…)
        (no sufficient statistics: what a user who does not aggregate counts writes)."""
        H = y.shape[1]
        prev = np.concatenate([np.full((len(x), 1), V), y[:, :-1]], axis=1)
        phi = features[x[:, None], np.arange(H)[None, :], prev]  # (n, H, V, d)
        onehot = np.eye(V)[y]
        mass = y.size

        def neg(theta):
            lp = log_softmax(phi @ theta)
            grad = np.einsum("nhv,nhvd->d", onehot - np.exp(lp), phi)
            return -np.sum(np.take_along_axis(lp, y[..., None], -1)) / mass, -grad / mass

        return minimize_in_ball(neg)

    def kl(lp, lq, mu):
        H = lp.shape[1]
        m = np.zeros((P, V + 1))
        m[:, V] = mu
        total = 0.0
        for h in range(H):
            a, b = lp[:, h], lq[:, h]
            pa = np.exp(a)
            total += np.sum(m * np.sum(pa * (a - b), axis=-1))
            m = np.concatenate([np.einsum("xu,xuv->xv", m, pa), np.zeros((P, 1))], axis=1)
        return total

    def coverage_mc(lp, lq, mu, rng):
        H = lp.shape[1]
        x = rng.choice(P, size=MC, p=mu)
        prev = np.full(MC, V)
        ratio = np.zeros(MC)
        for h in range(H):
            rows = lp[x, h, prev]
            cdf = np.exp(rows).cumsum(-1)
            u = rng.random((MC, 1))
            tok = np.minimum((cdf <= u * cdf[:, -1:]).sum(-1), V - 1)
            ratio += rows[np.arange(MC), tok] - lq[x, h, prev, tok]
            prev = tok
        log_t = np.log(np.asarray(N_GRID)) - TIE
        return (ratio[:, None] >= log_t[None, :]).mean(0)

    results = {}
    t0 = time.perf_counter()
    for H in HORIZONS:
        features, theta, mu = law_arrays(H, np)
        lp = log_softmax(features @ theta)
        rows = {"kl": [], "coverage": [], "theta_norm": [], "slsqp_iterations": []}
        for seed in range(seeds):
            rng = np.random.default_rng([H, seed])
            x, y = sample(lp, mu, N_DATA, rng)
            theta_hat, nit = (fit_tokens(features, x, y) if token_level
                              else fit(features, counts_of(x, y, H)))
            lq = log_softmax(features @ theta_hat)
            rows["kl"].append(kl(lp, lq, mu))
            rows["coverage"].append(coverage_mc(lp, lq, mu, rng).tolist())
            rows["theta_norm"].append(float(np.linalg.norm(theta_hat)))
            rows["slsqp_iterations"].append(int(nit))
        results[str(H)] = rows
    return time.perf_counter() - t0, results, (sample, counts_of, fit, kl, log_softmax)


def cross_check(helpers):
    """Same data through both pipelines (H = 16, one seed): fitted θ and KL must agree."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import covsim

    sample, counts_of, fit, kl, log_softmax = helpers
    H = HORIZONS[0]
    features, theta, mu = law_arrays(H, np)
    p = covsim.LinearModel(jnp.asarray(features), jnp.asarray(theta))
    x, y = covsim.sample(p, jnp.asarray(mu), N_DATA, key=jax.random.PRNGKey(7))
    q = covsim.fit_mle(p, x, y, constraint=covsim.Ball(RADIUS))
    theta_np, _ = fit(features, counts_of(np.asarray(x), np.asarray(y), H))
    lp = log_softmax(features @ theta)
    kl_np = kl(lp, log_softmax(features @ theta_np), mu)
    kl_cs = float(covsim.kl(p, q, jnp.asarray(mu)))
    return {"theta_max_abs_diff": float(np.max(np.abs(theta_np - np.asarray(q.theta)))),
            "kl_covsim": kl_cs, "kl_numpy_on_its_fit": float(kl_np),
            "kl_rel_diff": abs(kl_cs - kl_np) / kl_cs}


# ---------------------------------------------------------------- throughput


def matmul_rates(size=1024, repeats=5):
    """GFLOP/s of a float64 size×size matmul (2·size³ flops): NumPy and jitted JAX."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    a = np.random.default_rng(0).normal(size=(size, size))
    flops = 2 * size**3

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    aj = jnp.asarray(a)
    mm = jax.jit(lambda u: u @ u)
    return {"numpy_gflops": best(lambda: a @ a),
            "jax_gflops": best(lambda: mm(aj).block_until_ready()), "size": size}


def workload_flops(fit_iterations):
    """Estimated useful arithmetic of the whole workload (FLOPs), summed over (H, seed).

    Per (H, seed), with C = P·H·(V+1) contexts and `it` Newton iterations (from the fit's
    diagnostics): logits φθ of the true law 2·C·V·d (for sampling, KL and MC; once);
    sampling n·H·4V (exp, cumsum, compare, count); counts n·H; fit per iteration
    [φθ, gradient, mean, centring: 9·C·V·d; Hessian 2·C·V·d²; line search ≈ 1 trial: 2·C·V·d
    + 5·C·V; eigh ≈ 10·d³] plus the projector (2·C·V·d² + 10·d³) once; KL: q's logits
    2·C·V·d + 8·C·V; MC: 20 000·H·(4V + 6). Memory-bound gathers are counted as 1 flop.
    """
    total = 0.0
    for H in HORIZONS:
        C = P * H * (V + 1)
        for it in fit_iterations[str(H)]["iterations"]:
            per_iter = 9 * C * V * D + 2 * C * V * D**2 + 2 * C * V * D + 5 * C * V + 10 * D**3
            total += (2 * C * V * D + N_DATA * H * (4 * V + 1) + (it + 1) * per_iter
                      + 2 * C * V * D**2 + 10 * D**3 + 2 * C * V * D + 8 * C * V
                      + MC * H * (4 * V + 6))
    return total


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="main", choices=("main", "covsim"))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--pad", action="store_true", help="one program for every H (pad_horizon)")
    parser.add_argument("--shard", action="store_true")
    parser.add_argument("--runtime-checks", default="on", choices=("on", "off"))
    parser.add_argument("--skip-numpy", action="store_true")
    parser.add_argument("--skip-devices", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.role == "covsim":
        covsim_child(args)
        return

    report = {"workload": dict(horizons=HORIZONS, seeds=SEEDS, P=P, V=V, d=D, n=N_DATA,
                               mc_samples=MC, N=N_GRID, radius=RADIUS, pad=args.pad,
                               runtime_checks=args.runtime_checks)}
    with tempfile.TemporaryDirectory(prefix="covsim-jax-cache-") as cache:
        cold = run_child(cache, pad=args.pad, runtime_checks=args.runtime_checks)
        warm = run_child(cache, pad=args.pad, runtime_checks=args.runtime_checks)
        entries = len(os.listdir(cache))
    report["covsim"] = {
        "cold_s": cold["first_call_s"], "warm_s": warm["first_call_s"],
        "compiled_only_s": warm["second_call_s"],
        "cold_compiles": cold["first_call_compiles"], "cold_compile_s": cold["first_call_compile_s"],
        "warm_compiles": warm["first_call_compiles"], "warm_compile_s": warm["first_call_compile_s"],
        "warm_persistent_cache_hits": warm["first_call_persistent_cache_hits"],
        "persistent_cache_entries": entries,
        "import_s": {"cold": cold["import_s"], "warm": warm["import_s"]},
        "process_wall_s": {"cold": cold["process_wall_s"], "warm": warm["process_wall_s"]},
        "fit": warm["fit"], "results": warm["results"],
    }
    print(f"covsim cold {cold['first_call_s']:.2f} s ({cold['first_call_compiles']} compiles, "
          f"{cold['first_call_compile_s']:.2f} s compiling), warm {warm['first_call_s']:.2f} s "
          f"({warm['first_call_compiles']} compiles, {warm['first_call_persistent_cache_hits']} "
          f"cache hits), compiled-only {warm['second_call_s']:.2f} s", file=sys.stderr)

    if not args.skip_numpy:
        t_np, np_results, helpers = numpy_pipeline()
        report["numpy_scipy"] = {"s": t_np, "results": np_results}
        c = report["covsim"]
        report["ratios_numpy_over_covsim"] = {
            "cold": t_np / c["cold_s"], "warm": t_np / c["warm_s"],
            "compiled_only": t_np / c["compiled_only_s"],
            "cold_with_import": t_np / (c["cold_s"] + c["import_s"]["cold"]),
            "warm_with_import": t_np / (c["warm_s"] + c["import_s"]["warm"]),
        }
        report["cross_check_same_data"] = cross_check(helpers)
        t_tok, tok_results, _ = numpy_pipeline(token_level=True)
        report["numpy_scipy_token_level"] = {"s": t_tok, "results": tok_results}
        report["ratios_numpy_token_level_over_covsim"] = {
            "cold": t_tok / c["cold_s"], "warm": t_tok / c["warm_s"],
            "compiled_only": t_tok / c["compiled_only_s"]}
        print(f"numpy/scipy token-level fit {t_tok:.2f} s; ratios "
              f"{report['ratios_numpy_token_level_over_covsim']}", file=sys.stderr)
        print(f"numpy/scipy {t_np:.2f} s; ratios {report['ratios_numpy_over_covsim']}", file=sys.stderr)

    rates = matmul_rates()
    flops = workload_flops(warm["fit"])
    report["throughput"] = {
        "workload_gflop_estimate": flops / 1e9,
        "covsim_gflops": flops / warm["second_call_s"] / 1e9, **rates,
    }
    report["throughput"]["fraction_of_numpy_matmul"] = (
        report["throughput"]["covsim_gflops"] / rates["numpy_gflops"])

    if not args.skip_devices:
        scaling = {}
        reference = None
        for k in (1, 2, 4):
            out = run_child(None, pad=args.pad, shard=True, devices=k, runtime_checks=args.runtime_checks)
            if reference is None:
                reference = out["results"]
            same = max(
                abs(a - b) / max(abs(b), 1e-300)
                for H in reference for key in ("kl", "theta_norm")
                for a, b in zip(out["results"][H][key], reference[H][key]))
            cov_same = all(out["results"][H]["coverage"] == reference[H]["coverage"] for H in reference)
            scaling[str(k)] = {"devices": out["devices"], "first_call_s": out["first_call_s"],
                               "compiled_only_s": out["second_call_s"],
                               "max_rel_diff_vs_1_device": same, "coverage_identical": cov_same}
        report["seeds_scaling_virtual_devices"] = scaling
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
