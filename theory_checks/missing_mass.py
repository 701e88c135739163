r"""Bernoulli missing mass: KL is infinite with constant probability, coverage is O(log(1/δ)/n).

Claim (arXiv 2510.15020 v2, §3 case study; THEORY.md §5.1; CONSTRUCTIONS §1): for
Π = {Ber(p) : p ∈ [0, ½]} and π_D = Ber(p⋆), the MLE p̂ = min(k/n, ½) is 0 with probability
(1 − p⋆)^n, and on exactly those runs KL(π_D‖π̂) = +∞; yet, for every p⋆ and N ≥ 2, EXACT
w.p. ≥ 1 − δ: Cov_N(π̂) ≤ 8 log(1/δ)/n.

The sharp form of the last statement is about the worst p⋆: for N ≥ 2, Cov_N(π̂) = p⋆·1{p̂ ≤ p⋆/N}
takes the values 0 and p⋆, so its (1 − δ)-quantile is p⋆ when P(Bin(n, p⋆) ≤ np⋆/N) > δ and 0
otherwise, and sup_{p⋆ ∈ (0, ½]} n·q_{1−δ}(Cov_N) is a one-dimensional supremum of binomial
sums, computed exactly (``sup_scaled_quantile``: on each interval c = np⋆ ∈ [Nj, N(j+1)) the
event is {k ≤ j} and its probability decreases in c, so the supremum is a root or an endpoint).
At N = 2 it is ≈ 6.68 (δ = 0.1) and ≈ 20.1 (δ = 0.01) as n → ∞, against the bound's
8 log(1/δ) = 18.4 and 36.8 (ratios 0.36 and 0.55).

Simulation (per seed): ``covsim.sample`` n draws at p⋆ = c/n, c swept over {0.5, 1, 2, 4, 8}
(p⋆ ≤ ½), the class-capped MLE (``bernoulli_mle``; cross-checked against ``covsim.fit_mle`` on
the tabular class whenever k/n ≤ ½), exact ``covsim.kl`` and exact ``covsim.coverage``.

Rules (declared before any run):

- ``quantile_bound_sharp`` — cap 1: max over n ∈ {grid n} ∪ {1e4, 1e5}, N ∈ {2, 16},
  δ ∈ {0.1, 0.01} of sup_{p⋆} n·q_{1−δ}(Cov_N) / (8 log(1/δ)) — an exact number (binomial sums);
  bound 8 log(1/δ)/n (vacuity gate: it bites for n ≥ 40). THEORY §5.1 (EXACT w.p. ≥ 1 − δ).
- ``prob_p_hat_zero`` — band [−0.02, 0.02] on the pooled mean over seeds and cells of
  1{p̂ = 0} − (1 − p⋆)^n (Student-t CI). THEORY §5.1: P(p̂ = 0) = (1 − p⋆)^n.
- ``cov_law_matches_binomial`` — band [−0.02, 0.02] on the pooled mean of
  Cov_N/p⋆ − P(Bin(n, p⋆) ≤ np⋆/N) (N = 2, 16): the simulated coverage has the law the exact
  supremum is computed from (CONSTRUCTIONS §1: E Cov_N = p⋆·P(Bin(n, p⋆) ≤ np⋆/N)).
- ``kl_inf_iff_p_hat_zero`` — zero_violations: covsim.kl = +∞ exactly on the runs with k = 0,
  never NaN. THEORY §5.1.
- ``coverage_closed_form`` — zero_violations: covsim.coverage = p⋆·1{p̂ ≤ p⋆/N}. THEORY §5.1 [project].
- ``mle_crosscheck`` — zero_violations: covsim.fit_mle (tabular) = min(k/n, ½) when k/n ≤ ½.

Observations: the Poisson-limit supremum (n = 1e5) per (N, δ), the per-cell simulated
(1 − δ)-quantile against the exact one, and E Cov_N·n per cell.

Measured (``--quick``, 400 seeds × 24 cells; 134 s wall on loaded shared cores, 20 s CPU): holds —
worst ratio 0.547 (N = 2, δ = 0.01, n = 1e5: 20.14/36.84); P(p̂ = 0) band −0.0022 [−0.0092, 0.0049];
law band −0.0017 [−0.0074, 0.0039]; 0 violations of the three exact facts. Control: fails (1.64).

Control (``variant="control"``): the same cells with the bound divided by 3 (8 log(1/δ)/(3n)),
below what the worst p⋆ attains (6.68 > 18.4/3 at N = 2, δ = 0.1), so ``quantile_bound_sharp``
must fail. ``--full`` adds n up to 3e4 and 20000 seeds per cell.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim.exact import TIE_TOLERANCE
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.sharding import shard_seeds
from covsim.instances.statistical import (
    bernoulli_missing_mass,
    bernoulli_missing_mass_prob_zero,
    bernoulli_mle,
)

N_VALUES = (2.0, 16.0)
DELTAS = (0.1, 0.01)
C_VALUES = (0.5, 1.0, 2.0, 4.0, 8.0)
EXTRA_N = (10_000, 100_000)  # exact supremum only (no simulation)
CONTROL_SCALE = 1.0 / 3.0
MATCH_TOL = 1e-12

RULES = (
    Rule("quantile_bound_sharp", "cap",
         "max over n, N in {2, 16}, delta in {0.1, 0.01} of sup_{p*} n·q_{1-delta}(Cov_N) / (8 log(1/delta)) "
         "(exact binomial sums)", 1.0,
         regime="n in the grid and n = 1e4, 1e5; p* over (0, 1/2]",
         theory="THEORY §5.1: EXACT w.p. >= 1 - delta, Cov_N(pi_hat) <= 8 log(1/delta)/n",
         bound="8 log(1/delta)/n"),
    Rule("prob_p_hat_zero", "band", "pooled mean of 1{p_hat = 0} - (1 - p*)^n over seeds and cells",
         (-0.02, 0.02), regime="all cells",
         theory="THEORY §5.1: the MLE is 0 with probability (1 - p*)^n"),
    Rule("cov_law_matches_binomial", "band",
         "pooled mean of Cov_N/p* - P(Bin(n, p*) <= n p*/N) over seeds, cells and N in {2, 16}",
         (-0.02, 0.02), regime="all cells",
         theory="CONSTRUCTIONS §1 / THEORY §5.1: Cov_N = p*·1{p_hat <= p*/N}, E Cov_N = p* P(Bin <= np*/N)"),
    Rule("kl_inf_iff_p_hat_zero", "zero_violations", "covsim.kl = +inf exactly on runs with k = 0 (never NaN)",
         None, regime="all seeds and cells", theory="THEORY §5.1: KL = +inf when p_hat = 0 (so E KL = +inf)"),
    Rule("coverage_closed_form", "zero_violations", "exact covsim.coverage equals p*·1{p_hat <= p*/N}",
         None, regime="all seeds, cells, N in {2, 16}", theory="THEORY §5.1 [project]: Cov_N = p*·1{p_hat <= p*/N}"),
    Rule("mle_crosscheck", "zero_violations", "covsim.fit_mle (tabular) equals min(k/n, 1/2) when k/n <= 1/2",
         None, regime="all seeds and cells", theory="CONSTRUCTIONS §1: the MLE is p_hat = min(k/n, 1/2)"),
)


def _ns(size: str) -> list[int]:
    return {"tiny": [30, 300], "quick": [10, 30, 100, 300, 1000],
            "full": [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]}[size]


def _cells(size: str, variant: str) -> list[dict]:
    cs = (1.0, 4.0) if size == "tiny" or variant == "control" else C_VALUES
    return [dict(n=n, c=c, variant=variant) for n in _ns(size) for c in cs if c / n <= 0.5]


def grid(size: str) -> list[dict]:
    """n on a log grid, p⋆ = c/n with c = n·p⋆ swept over C_VALUES (p⋆ ≤ ½)."""
    return _cells(size, "mle")


def control_grid(size: str) -> list[dict]:
    return _cells(size, "control")


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
    keys = shard_seeds(jax.random.split(key, num_seeds))
    return jax.vmap(lambda k: _seed_metrics(k, truth, mu, p_star, n=n))(keys)


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    n = int(cell["n"])
    p_star = float(cell["c"]) / n
    inst = bernoulli_missing_mass(p_star)
    out = _run_seeds(key, inst.truth, inst.mu, jnp.asarray(p_star), n=n, num_seeds=num_seeds)
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


# ---------------------------------------------------------------------------
# exact quantiles


def hit_probability(n: int, c, N: float):
    """P(Cov_N = p⋆) = P(Bin(n, c/n) ≤ c/N) (ties counted, covsim's tolerance), N ≥ 2."""
    from scipy.stats import binom

    c = np.asarray(c, dtype=float)
    j = np.floor(c / N * (1 + 1e-12) + 1e-12)
    return binom.cdf(j, n, np.minimum(c / n, 0.5))


def exact_quantile(n: int, c: float, N: float, delta: float) -> float:
    """The (1 − δ)-quantile of Cov_N(π̂) at p⋆ = c/n: p⋆ if P(Cov_N = p⋆) > δ, else 0 (N ≥ 2)."""
    return c / n if float(hit_probability(n, c, N)) > delta else 0.0


def sup_scaled_quantile(n: int, N: float, delta: float) -> tuple[float, float]:
    """sup over p⋆ ∈ (0, ½] of n·q_{1−δ}(Cov_N(π̂)), exactly, and the c = np⋆ that (nearly) attains it.

    For N ≥ 2, q_{1−δ} = p⋆·1{P(Bin(n, p⋆) ≤ np⋆/N) > δ}. On c ∈ [Nj, N(j+1)) the event is {k ≤ j}
    and P(Bin(n, c/n) ≤ j) decreases in c, so the largest admissible c there is the root of
    P(Bin(n, c/n) ≤ j) = δ (found by bisection to 1e-12) or the interval's right end; the
    supremum is the largest over j (and never above n/2).
    """
    from scipy.optimize import brentq
    from scipy.stats import binom

    if N < 2:
        raise ValueError(f"sup_scaled_quantile: N must be >= 2, got {N}")
    best, arg = 0.0, 0.0
    js = np.arange(0, int(math.floor(n / 2 / N)) + 1)
    start = binom.cdf(js, n, np.minimum(N * js / n, 0.5)) - delta
    for j in js[start > 0]:
        lo, hi = float(N * j), float(min(N * (j + 1), n / 2))

        def f(c, j=j):
            return binom.cdf(j, n, c / n) - delta

        c = hi if f(hi) > 0 else brentq(f, max(lo, 1e-300), hi, xtol=1e-12)
        if c > best:
            best, arg = c, c
    return best, arg


# ---------------------------------------------------------------------------
# analysis


def _bound_scale(table) -> float:
    variants = set(table.unique("variant"))
    return CONTROL_SCALE if "control" in variants else 1.0


def analyze(table, size: str) -> Analysis:
    ev, obs, det = {}, [], {}
    scale = _bound_scale(table)
    ns = sorted(int(n) for n in table.unique("n"))
    seeds = min(len(table.select(n=r["n"], c=r["c"]).rows) for r in table.rows[:1]) if table.rows else 0

    # sharp quantile bound: exact supremum over p⋆
    rows, worst, bound_values = [], -math.inf, []
    for n in sorted(set(ns) | set(EXTRA_N)):
        for N in N_VALUES:
            for delta in DELTAS:
                sup, arg = sup_scaled_quantile(n, N, delta)
                bound_n = scale * 8 * math.log(1 / delta)  # n·bound
                ratio = sup / bound_n
                worst = max(worst, ratio)
                bound_values.append(bound_n / n)
                rows.append({"n": n, "N": N, "delta": delta, "sup_n_quantile": sup, "argmax_c": arg,
                             "n_bound": bound_n, "ratio": ratio})
    ev["quantile_bound_sharp"] = Evidence.exact_value(worst, bound_values=bound_values,
                                                      details={"cells": rows, "bound_scale": scale})
    det["sup_rows"] = rows
    det["bound_scale"] = scale
    for N in N_VALUES:
        for delta in DELTAS:
            r = [x for x in rows if x["n"] == max(EXTRA_N) and x["N"] == N and x["delta"] == delta][0]
            obs.append(Observation(f"sup_n_q{1 - delta:g}_N{N:g}_n1e5", round(r["sup_n_quantile"], 4),
                                   f"vs n·bound {r['n_bound']:.2f} (Poisson limit; attained near c = {r['argmax_c']:.3f})"))

    # per-seed facts
    zero_diff, law_diff, qrows = [], [], []
    for n in ns:
        for c in sorted(table.select(n=n).unique("c")):
            sub = table.select(n=n, c=c)
            p_star = c / n
            p0 = float(bernoulli_missing_mass_prob_zero(p_star, n))
            zero_diff.append(sub.column("p_hat_zero") - p0)
            for N in N_VALUES:
                cov = sub.column(f"cov_N{int(N)}")
                hit = float(hit_probability(n, c, N))
                law_diff.append(cov / p_star - hit)
                for delta in DELTAS:
                    emp = float(np.quantile(cov, 1 - delta, method="inverted_cdf"))
                    qrows.append({"n": n, "c": c, "N": N, "delta": delta, "empirical": emp,
                                  "exact": exact_quantile(n, c, N, delta), "hit_probability": hit})
    if zero_diff:
        ev["prob_p_hat_zero"] = Evidence.mean(np.concatenate(zero_diff))
        ev["cov_law_matches_binomial"] = Evidence.mean(np.concatenate(law_diff))
    det["quantile_cells"] = qrows
    agree = sum(abs(r["empirical"] - r["exact"]) <= MATCH_TOL for r in qrows)
    obs.append(Observation("empirical_vs_exact_quantile_agree", f"{agree}/{len(qrows)}",
                           "cells (n, c, N, delta) where the seeds' (1-delta)-quantile equals the exact one "
                           "(they differ only where P(Cov = p*) is near delta)"))

    num = len(table.rows)
    ev["kl_inf_iff_p_hat_zero"] = Evidence.count(
        int(np.sum(table.column("kl_mismatch")) + np.sum(table.column("kl_nan"))), num, seeds=seeds)
    ev["coverage_closed_form"] = Evidence.count(int(np.sum(table.column("closed_cov_mismatch"))),
                                                num * len(N_VALUES), seeds=seeds)
    ev["mle_crosscheck"] = Evidence.count(int(np.sum(table.column("tabular_mismatch"))), num, seeds=seeds)
    det["n"] = ns
    return Analysis(ev, obs, det)


# ---------------------------------------------------------------------------
# figures


def plot(table, summary, out):
    from covsim.plotting import Curve, Series, loglog_figure

    d = summary.details
    scale = float(d.get("bound_scale", 1.0))
    paths = []
    # 1. the sharp statement: sup_p⋆ n·q against the bound's n·8 log(1/δ)
    rows = d["sup_rows"]
    ns_all = sorted({r["n"] for r in rows})
    series, curves = [], []
    for N in N_VALUES:
        for delta in DELTAS:
            y = [next(r["sup_n_quantile"] for r in rows if r["n"] == n and r["N"] == N and r["delta"] == delta)
                 for n in ns_all]
            series.append(Series(ns_all, y, label=f"sup_p* n·q_{1 - delta:g}(Cov_{N:g}) (exact)"))
    for delta in DELTAS:
        curves.append(Curve(ns_all, np.full(len(ns_all), scale * 8 * math.log(1 / delta)),
                            label=f"{'' if scale == 1 else f'{scale:.3g}·'}8 log(1/delta), delta = {delta}"))
    paths.append(loglog_figure(out / "sup_quantile_vs_n.png", series, xlabel="n", ylabel="n · (1-delta)-quantile",
                               bounds=curves, title="Bernoulli missing mass: worst p* quantile vs the bound"))
    # 2. the with-probability statement as the probability it is about: P(Cov_N = p⋆) against c = np⋆;
    #    q_{1-δ} = p⋆ exactly where this is > δ, and the bound can only be exceeded where also c > n·bound
    n = max(d["n"])
    cs = np.geomspace(0.05, min(40.0, n / 2), 800)
    series, curves = [], []
    for N in N_VALUES:
        series.append(Series(cs, hit_probability(n, cs, N), label=f"P(Cov_{N:g} = p*) exact, n = {n}"))
        q = [r for r in d["quantile_cells"] if r["n"] == n and r["N"] == N and r["delta"] == DELTAS[0]]
        sims = [table.select(n=n, c=r["c"]).column(f"cov_N{int(N)}") for r in q]
        frac = np.asarray([float(np.mean(v > 0)) for v in sims])
        lo, hi = _wilson(frac * len(sims[0]), len(sims[0])) if sims else (None, None)
        series.append(Series([r["c"] for r in q], frac, lo, hi, label=f"simulated fraction, N = {N:g} (95% band)"))
    for dl in DELTAS:
        curves.append(Curve(cs, np.full(cs.shape, dl), label=f"delta = {dl}"))
        c_bound = scale * 8 * math.log(1 / dl)
        curves.append(Curve([c_bound, c_bound], [1e-4, 1.0], label=f"c = n·bound = {c_bound:.1f} (delta = {dl})"))
    paths.append(loglog_figure(out / "hit_probability_vs_c.png", series, xlabel="c = n p*",
                               ylabel="P(Cov_N = p*)", bounds=curves,
                               title=f"n = {n}: q_(1-delta) = p* where the curve is above delta"))
    # 3. P(p̂ = 0) measured vs (1 − p⋆)^n
    series, curves = [], []
    for c in sorted(table.unique("c")):
        sub = table.select(c=c)
        x, mean, _, per = sub.group_mean("n", "p_hat_zero")
        lo, hi = _wilson(per.sum(1), per.shape[1])
        series.append(Series(x, mean, lo, hi, label=f"P(p_hat = 0), c = {c:g} (95% Wilson band)"))
        curves.append(Curve(x, [float(bernoulli_missing_mass_prob_zero(c / n_, n_)) for n_ in x], label=""))
    paths.append(loglog_figure(out / "prob_zero_vs_n.png", series, xlabel="n", ylabel="P(KL = +inf) = P(p_hat = 0)",
                               bounds=curves, title="KL is infinite with probability (1 - p*)^n (dashed)"))
    return paths


def _wilson(k, m, z=1.96):
    k, m = np.asarray(k, float), float(m)
    p = k / m
    den = 1 + z * z / m
    mid = (p + z * z / (2 * m)) / den
    half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / den
    return mid - half, mid + half


CHECK = Check(
    name="missing_mass",
    claim="Bernoulli missing mass: P(p_hat = 0) = (1 - p*)^n and KL = +inf exactly then, while for every p* "
          "the (1 - delta)-quantile of Cov_N is <= 8 log(1/delta)/n (sharp: sup_p* n·q_0.9 = 6.7 vs 18.4).",
    reference="arXiv 2510.15020 v2, §3 case study (THEORY §5.1)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("the same cells with the bound divided by 3, below the exact worst-case quantile "
                    "(sup_p* n·q_0.9(Cov_2) = 6.68 > 18.4/3)", control_grid),
    plot=plot,
    seeds={"tiny": 64, "quick": 400, "full": 20000},
)
