"""Core metrics: covsim (JAX, jit) against a plain NumPy implementation of the same work.

Workload (issue 2, §6): P = 4 prompts, H = 1024, V = 32, a previous-token-dependent law
and a perturbation of it. Measures, in one run, the wall time of
  - sequence KL by forward recursion,
  - coverage by the rigorous bracket (bins = 256),
  - coverage by Monte Carlo (10^4 sequences),
for covsim (after compilation; compile time reported separately) and for a NumPy loop
over positions doing the same arithmetic. Reports the ratios NumPy / covsim, which are
what is comparable across machines.

Run: python benchmarks/bench_core.py [--repeats 3]
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

P, H, V = 4, 1024, 32
BINS = 256
MC_SAMPLES = 10_000


def make_pair(seed=0):
    """A near-deterministic "increment rule" chain (next token = previous + 1 mod V, margin 10)
    with a high-entropy pivotal step every 64 positions, and a fitted-looking perturbation of
    it (margin 9, perturbed pivotal law) — the regime of the paper's instances, where the
    bracket is informative. The position axis is full (H = 1024)."""
    rng = np.random.default_rng(seed)
    prev = np.arange(V + 1) % V
    rule = np.zeros((V + 1, V))
    rule[np.arange(V + 1), (prev + 1) % V] = 1.0
    pivotal = (np.arange(H) % 64) == 63
    zipf = -1.2 * np.log(np.arange(1, V + 1))
    def logits(margin, pivot_noise):
        out = np.empty((P, H, V + 1, V))
        out[:] = margin * rule
        piv = zipf + pivot_noise * rng.normal(size=(P, 1, 1, V))
        out[:, pivotal] = np.broadcast_to(piv, (P, int(pivotal.sum()), V + 1, V))
        return out
    p = covsim.TabularModel(jnp.asarray(logits(10.0, 0.0)), horizon=H)
    q = covsim.TabularModel(jnp.asarray(logits(9.0, 0.5)), horizon=H)
    return p, q, jnp.ones(P) / P


def _log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# ---------------------------------------------------------------- NumPy references


def numpy_kl(lp, lq, mu):
    m = np.zeros((P, V + 1))
    m[:, V] = mu
    total = 0.0
    for h in range(H):
        a, b = lp[:, min(h, lp.shape[1] - 1)], lq[:, min(h, lq.shape[1] - 1)]
        kl_ctx = np.sum(np.exp(a) * (a - b), axis=-1)
        total += np.sum(m * kl_ctx)
        nxt = np.einsum("xu,xuv->xv", m, np.exp(a))
        m = np.concatenate([nxt, np.zeros((P, 1))], axis=1)
    return total


def numpy_bracket_lower(lp, lq, mu, log_t, step, zero_bin, offsets):
    """Lower end of the bracket with the same grid (one side only, as in covsim's loop)."""
    state = np.zeros((P, V + 1, BINS))
    state[np.arange(P), V, zero_bin] = mu
    k = np.arange(BINS)
    for h in range(H):
        a, b = lp[:, h], lq[:, h]
        shift = np.floor((a - b - offsets[:, h, None, None]) / step[:, None, None] + 1e-9).astype(int)
        src = k[None, None, None, :] - shift[..., None]
        padded = np.concatenate([np.zeros_like(state), state, np.zeros_like(state)], axis=-1)
        moved = np.take_along_axis(padded[:, :, None, :].repeat(V, axis=2), src + BINS, axis=-1)
        tail = np.cumsum(state[..., ::-1], axis=-1)[..., ::-1]
        tail = np.concatenate([tail, np.zeros(tail.shape[:-1] + (1,))], axis=-1)
        j = np.clip(BINS - 1 - shift, 0, BINS)
        moved[..., -1] = np.take_along_axis(tail[:, :, None, :].repeat(V, axis=2), j[..., None], axis=-1)[..., 0]
        new = np.einsum("xuv,xuvk->xvk", np.exp(a), moved)
        state = np.concatenate([new, np.zeros((P, 1, BINS))], axis=1)
    return state


def numpy_mc(lp, lq, mu, n, log_t, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.choice(P, size=n, p=np.asarray(mu))
    prev = np.full(n, V)
    ratio = np.zeros(n)
    for h in range(H):
        probs = np.exp(lp[x, h, prev])
        cdf = probs.cumsum(-1)
        u = rng.random((n, 1))
        tok = np.minimum((cdf <= u * cdf[:, -1:]).sum(-1), V - 1)
        ratio += lp[x, h, prev, tok] - lq[x, h, prev, tok]
        prev = tok
    return (ratio[:, None] >= log_t[None, :]).mean(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    p, q, mu = make_pair()
    N = jnp.array([2.0, 16.0, 256.0])
    lp = np.asarray(covsim.next_token_log_probs(p))
    lq = np.asarray(covsim.next_token_log_probs(q))
    mu_np = np.asarray(mu)
    log_t = np.log(np.asarray(N)) - 1e-9
    key = jax.random.PRNGKey(0)

    jobs = {
        "kl": (lambda: covsim.kl(p, q, mu), lambda: numpy_kl(lp, lq, mu_np)),
        "coverage_bracket": (
            lambda: covsim.coverage(p, q, mu, N, method="bracket", bins=BINS),
            # NumPy does one side of the bracket; covsim's time covers both sides.
            lambda: numpy_bracket_lower(lp, lq, mu_np, log_t, np.full(P, 0.05), np.full(P, BINS // 2),
                                        np.zeros((P, H))),
        ),
        "coverage_mc": (
            lambda: covsim.coverage(p, q, mu, N, method="mc", num_samples=MC_SAMPLES, key=key),
            lambda: numpy_mc(lp, lq, mu_np, MC_SAMPLES, log_t),
        ),
    }
    report = {"workload": dict(P=P, H=H, V=V, bins=BINS, mc_samples=MC_SAMPLES),
              "backend": jax.default_backend()}
    for name, (jax_fn, np_fn) in jobs.items():
        t0 = time.perf_counter()
        jax.block_until_ready(jax_fn())
        compile_and_first = time.perf_counter() - t0
        t_jax = best_time(jax_fn, args.repeats)
        t_np = best_time(np_fn, 1 if name != "kl" else args.repeats)
        report[name] = {"covsim_s": t_jax, "numpy_s": t_np, "numpy_over_covsim": t_np / t_jax,
                        "first_call_s": compile_and_first}
        print(f"{name:18s} covsim {t_jax * 1e3:9.2f} ms   numpy {t_np * 1e3:9.2f} ms   "
              f"ratio numpy/covsim {t_np / t_jax:7.1f}x   (first call {compile_and_first:.1f} s)")
    lo, hi = covsim.coverage(p, q, mu, N, method="bracket", bins=BINS)
    report["bracket"] = {"lower": np.asarray(lo).tolist(), "upper": np.asarray(hi).tolist()}
    print("bracket at N = 2, 16, 256:", np.round(np.asarray(lo), 4), np.round(np.asarray(hi), 4))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
