r"""Bernoulli missing mass: KL is infinite with constant probability, coverage is O(log(1/δ)/n).

Claim (arXiv 2510.15020 v2, §3 case study; THEORY.md §5.1; CONSTRUCTIONS §1): for
Π = {Ber(p) : p ∈ [0, ½]}, π_D = Ber(p⋆) with p⋆ = c/n, the MLE p̂ = min(k/n, ½) is 0 with
probability (1 − p⋆)^n (a constant ≈ e^{-c}), and on exactly those runs KL(π_D‖π̂) = +∞;
yet Cov_N(π̂) = p⋆·1{p̂ ≤ p⋆/N} and its (1 − δ)-quantile is ≤ 8 log(1/δ)/n (EXACT w.p. ≥ 1 − δ),
so it decays with slope −1 in n.

Pipeline per seed: ``covsim.sample`` n draws from the truth, the class-capped MLE
(:func:`bernoulli_mle` from the count k; cross-checked against ``covsim.fit_mle`` on the
tabular class whenever k/n ≤ ½), exact ``covsim.kl`` and exact ``covsim.coverage``
(enumeration, H = 1); the closed form Cov_N = p⋆·1{p̂ ≤ p⋆/N} is a cross-check.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim import bounds
from covsim.exact import TIE_TOLERANCE
from covsim.experiments.check import Assertion, Check, Summary, Verdict
from covsim.experiments.stats import SlopeFit, loglog_slope, slope_assertion, zero_violation_assertion
from covsim.instances.statistical import (
    bernoulli_missing_mass,
    bernoulli_missing_mass_prob_zero,
    bernoulli_mle,
)

N_VALUES = (2.0, 16.0)
DELTAS = (0.1, 0.01)
SLOPE_DELTA = 0.1  # the quantile whose slope in n is fitted
SLOPE_BAND = (-1.25, -0.75)
MATCH_TOL = 1e-12


def grid(size: str) -> list[dict]:
    """Log grid of n from 10 to ~3000 (quick) or ~30000 (full); p⋆ = c/n with c = 1."""
    ns = [10, 30, 100, 300, 1000, 3000] if size == "quick" else [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
    return [dict(n=n, c=1.0) for n in ns]


def _seed_metrics(key, truth, mu, p_star, *, n):
    x, y = covsim.sample(truth, mu, n, key=key)
    k = jnp.sum(y)
    mle = bernoulli_mle(k, n)
    p_hat = jnp.exp(mle.logits[0, 0, 0, 1])
    kl = covsim.kl(truth, mle, mu)
    Ns = jnp.asarray(N_VALUES, dtype=p_hat.dtype)
    cov = covsim.coverage(truth, mle, mu, Ns)
    # closed form p⋆·1{log p⋆ − log p̂ ≥ log N} (same tie tolerance as covsim)
    closed = p_star * ((jnp.log(p_star) - jnp.log(p_hat)) >= jnp.log(Ns) - TIE_TOLERANCE)
    # generic tabular MLE: empirical frequencies; equals the capped MLE when k/n ≤ ½
    shape_model = covsim.TabularModel(jnp.zeros((1, 1, 1, 2), dtype=p_hat.dtype), horizon=1)
    p_tab = jnp.exp(covsim.fit_mle(shape_model, x, y).logits[0, 0, 0, 1])
    freq = k / n
    out = {
        "k": k.astype(p_hat.dtype),
        "p_hat": p_hat,
        "p_hat_zero": (p_hat == 0).astype(p_hat.dtype),
        "kl_inf": jnp.isposinf(kl).astype(p_hat.dtype),
        "kl_mismatch": (jnp.isposinf(kl) != (k == 0)).astype(p_hat.dtype),
        "kl_nan": jnp.isnan(kl).astype(p_hat.dtype),
        "kl_finite": jnp.where(jnp.isfinite(kl), kl, 0.0),
        "tabular_mismatch": ((freq <= 0.5) & (jnp.abs(p_tab - p_hat) > MATCH_TOL)).astype(p_hat.dtype),
        "closed_cov_mismatch": jnp.sum(jnp.abs(cov - closed) > MATCH_TOL).astype(p_hat.dtype),
    }
    for i, N in enumerate(N_VALUES):
        out[f"cov_N{int(N)}"] = cov[i]
    return out


@partial(jax.jit, static_argnames=("n", "num_seeds"))
def _run_seeds(key, truth, mu, p_star, *, n, num_seeds):
    keys = jax.random.split(key, num_seeds)
    return jax.vmap(lambda k: _seed_metrics(k, truth, mu, p_star, n=n))(keys)


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    n = int(cell["n"])
    p_star = float(cell["c"]) / n
    inst = bernoulli_missing_mass(p_star)
    out = _run_seeds(key, inst.truth, inst.mu, jnp.asarray(p_star), n=n, num_seeds=num_seeds)
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


# ---------------------------------------------------------------------------
# analysis


def quantile_slope(x, y, q: float, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> SlopeFit:
    """Log–log slope of the per-x q-quantile over seeds, with a seed-bootstrap CI.

    ``y`` is (k, S); seeds are resampled independently within each x. Resamples with a
    quantile ≤ 0 are dropped; more than 10% dropped makes the fit invalid.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    nan = math.nan
    qs = np.quantile(y, q, axis=1, method="higher")
    if not np.all(qs > 0):
        return SlopeFit(nan, nan, nan, nan, n_boot, ci, False, f"a quantile is <= 0: {qs.tolist()}")
    lx = np.log(x)
    dx = lx - lx.mean()
    slope = float(np.log(qs) @ dx / (dx @ dx))
    intercept = float(np.log(qs).mean() - slope * lx.mean())
    rng = np.random.default_rng(seed)
    k, s = y.shape
    boot = np.empty((n_boot, k))
    for i in range(k):
        idx = rng.integers(0, s, size=(n_boot, s))
        boot[:, i] = np.quantile(y[i][idx], q, axis=1, method="higher")
    ok = np.all(boot > 0, axis=1)
    if ok.sum() < 0.9 * n_boot:
        return SlopeFit(nan, nan, nan, nan, n_boot, ci, False, f"{n_boot - ok.sum()} resamples had a zero quantile")
    ly = np.log(boot[ok])
    slopes = (ly - ly.mean(axis=1, keepdims=True)) @ dx / (dx @ dx)
    lo, hi = np.quantile(slopes, [(1 - ci) / 2, (1 + ci) / 2])
    return SlopeFit(slope, float(lo), float(hi), intercept, int(ok.sum()), ci)


def _zero_fraction_assertion(table) -> Assertion:
    rows, worst = [], 0.0
    for n in table.unique("n"):
        sub = table.select(n=n)
        zero = sub.column("p_hat_zero")
        c = float(sub.column("c")[0])
        p0 = float(bernoulli_missing_mass_prob_zero(c / n, n))
        se = math.sqrt(p0 * (1 - p0) / zero.size)
        z = (zero.mean() - p0) / se if se > 0 else math.inf
        worst = max(worst, abs(z))
        rows.append({"n": n, "fraction": float(zero.mean()), "predicted": p0, "z": float(z), "seeds": int(zero.size)})
    verdict = Verdict.HOLDS if worst <= 5.0 else Verdict.FAILS
    return Assertion("prob_p_hat_zero", verdict,
                     f"fraction of runs with p̂ = 0 vs (1 − p⋆)^n: worst |z| = {worst:.2f} (allowed 5)",
                     {"cells": rows})


def _bound_violation_assertion(table) -> Assertion:
    rows, bad = [], 0
    for n in table.unique("n"):
        sub = table.select(n=n)
        for N in N_VALUES:
            cov = sub.column(f"cov_N{int(N)}")
            for delta in DELTAS:
                bound = float(bounds.bernoulli_missing_mass_quantile(n, delta))
                frac = float(np.mean(cov > bound * (1 + 1e-12)))
                bad += frac > delta
                rows.append({"n": n, "N": N, "delta": delta, "bound": bound, "violation_fraction": frac})
    verdict = Verdict.HOLDS if bad == 0 else Verdict.FAILS
    return Assertion("quantile_bound", verdict,
                     f"P[Cov_N > 8 log(1/δ)/n] ≤ δ in {len(rows) - bad}/{len(rows)} (n, N, δ) cells "
                     "(arXiv 2510.15020 v2 §3; EXACT w.p. ≥ 1 − δ)", {"cells": rows})


def analyze(table, size: str) -> Summary:
    assertions = [_zero_fraction_assertion(table)]
    num = len(table.column("kl_mismatch"))
    assertions.append(zero_violation_assertion(
        "kl_inf_iff_p_hat_zero", int(np.sum(table.column("kl_mismatch")) + np.sum(table.column("kl_nan"))), num,
        what="exact covsim.kl = +inf exactly on runs with k = 0 (and never NaN)"))
    assertions.append(zero_violation_assertion(
        "mle_crosscheck", int(np.sum(table.column("tabular_mismatch"))), num,
        what="covsim.fit_mle (tabular) equals min(k/n, 1/2) when k/n ≤ 1/2"))
    assertions.append(zero_violation_assertion(
        "coverage_closed_form", int(np.sum(table.column("closed_cov_mismatch"))), num * len(N_VALUES),
        what="exact covsim.coverage equals p⋆·1{p̂ ≤ p⋆/N}"))
    assertions.append(_bound_violation_assertion(table))
    details = {}
    for N in N_VALUES:
        name = f"cov_N{int(N)}"
        x, _, _, per_seed = table.group_mean("n", name)
        fit_q = quantile_slope(x, per_seed, 1 - SLOPE_DELTA)
        assertions.append(slope_assertion(
            f"quantile_slope_N{int(N)}", fit_q, *SLOPE_BAND,
            what=f"slope in n of the {1 - SLOPE_DELTA:.0%}-quantile of Cov_{int(N)}"))
        fit_m = loglog_slope(x, per_seed)
        assertions.append(slope_assertion(
            f"mean_slope_N{int(N)}", fit_m, *SLOPE_BAND, what=f"slope in n of E Cov_{int(N)}"))
        details[f"quantile_fit_N{int(N)}"] = fit_q.to_dict()
        details[f"mean_fit_N{int(N)}"] = fit_m.to_dict()
        details[f"quantile_N{int(N)}"] = np.quantile(per_seed, 1 - SLOPE_DELTA, axis=1, method="higher").tolist()
    details["n"] = [float(v) for v in table.unique("n")]
    return Summary(assertions, details)


def plot(table, summary, out):
    from covsim.plotting import Curve, Series, loglog_figure, series_from_table

    ns = np.asarray(table.unique("n"), dtype=float)
    series = []
    for N in N_VALUES:
        name = f"cov_N{int(N)}"
        q = np.asarray(summary.details[f"quantile_N{int(N)}"])
        series.append(Series(ns, q, q, q, label=f"{1 - SLOPE_DELTA:.0%}-quantile Cov_{int(N)}",
                             fit=summary.details[f"quantile_fit_N{int(N)}"]))
        series.append(series_from_table(table, "n", name, label=f"mean Cov_{int(N)}",
                                        fit=summary.details[f"mean_fit_N{int(N)}"]))
    curves = [Curve(ns, np.asarray(bounds.bernoulli_missing_mass_quantile(ns, SLOPE_DELTA)),
                    label=f"8 log(1/δ)/n, δ = {SLOPE_DELTA}"),
              Curve(ns, np.asarray([float(bernoulli_missing_mass_prob_zero(1.0 / n, n)) / n for n in ns]),
                    label="E Cov_N = p⋆(1−p⋆)^n (closed form)")]
    path = out / "cov_vs_n.png"
    loglog_figure(path, series, xlabel="n", ylabel="Cov_N", bounds=curves,
                  title="Bernoulli missing mass (p⋆ = 1/n): coverage decays like 1/n")
    series = [series_from_table(table, "n", "kl_inf", label="P(KL = +inf) (measured)")]
    curves = [Curve(ns, np.asarray([float(bernoulli_missing_mass_prob_zero(1.0 / n, n)) for n in ns]),
                    label="(1 − p⋆)^n")]
    path2 = out / "kl_inf_vs_n.png"
    loglog_figure(path2, series, xlabel="n", ylabel="P(KL = +inf)", bounds=curves,
                  title="Bernoulli missing mass: KL is infinite with constant probability")
    return [path, path2]


CHECK = Check(
    name="missing_mass",
    claim="Bernoulli missing mass at p⋆ = 1/n: P(p̂ = 0) = (1 − p⋆)^n and KL = +inf exactly then, while "
          "the (1 − δ)-quantile of Cov_N decays like 1/n and is ≤ 8 log(1/δ)/n.",
    reference="arXiv 2510.15020 v2, §3 case study (THEORY §5.1)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 400, "full": 20000},
)
