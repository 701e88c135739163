r"""Tightness of Theorem 4.1 for the MLE: the coarse term c·d/n and the fine term c·d/(n log N).

Claim (arXiv 2510.15020 v2, Prop. 4.1, App. H.3; ICLR Prop. G.1; THEORY.md §5.5;
CONSTRUCTIONS §4–§5):

(a) coarse construction (``coarse_tightness``, box class Θ = [−1, 1]^d): Cov_N(π̂) ≈ c·(d−1)/n —
    slope −1 in n, +1 in d − 1 — and flat in N for 2 ≤ N ≤ e^B (≥ (d−1)/(10n) w.p. ≥ ½);
(b) fine construction (``fine_tightness``, 2^d + 1 models): Cov_N(π̂) ≈ c·d/(n log N) —
    slope −1 in n and −1 in log N (the corrected rate of THEORY §5.5).

Pipeline per seed: ``covsim.sample`` from the truth; (a) ``covsim.fit_mle`` with the box
constraint (the KKT closed form ``coarse_tightness_mle_theta`` is a cross-check); (b) the
closed-form finite-class MLE ``fine_tightness_mle`` (2^d candidates are too many to enumerate
at d = 32), cross-checked against ``covsim.fit_mle_finite`` over the full class at d = 3;
exact ``covsim.coverage`` (H = 1 enumeration) in both.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim import bounds
from covsim.experiments.check import Assertion, Check, Summary, Verdict
from covsim.experiments.stats import loglog_slope, slope_assertion, zero_violation_assertion
from covsim.instances.statistical import (
    coarse_tightness,
    coarse_tightness_expected_coverage,
    coarse_tightness_mle_theta,
    fine_tightness,
    fine_tightness_counts,
    fine_tightness_coverage,
    fine_tightness_mle,
    fine_tightness_truth,
)

COARSE_N = (2.0, 8.0, 64.0, 512.0)  # all ≤ e^B = 5e·n for n ≥ 64
COARSE_N_MAX = 512  # samples drawn once per seed; the first n are fitted (weights mask)
COARSE_D_FIXED, COARSE_N_FIXED = 9, 256
FINE_D = 32
FINE_N_FIXED, FINE_BIGN_FIXED = 1024, 16.0
SLOPE_BAND = (-1.25, -0.75)
D_SLOPE_BAND = (0.75, 1.25)
LOGN_SLOPE_BAND = (-1.3, -0.7)
FLAT_BAND = 0.1
EQ_TOL = 1e-12
LAW_TOL = 1e-6


def grid(size: str) -> list[dict]:
    quick = size == "quick"
    coarse_ns = [64, 128, 256, 512] if quick else [64, 128, 256, 512, 1024, 2048]
    coarse_ds = [3, 5, 9, 17] if quick else [3, 5, 9, 17, 33, 65]
    n_max = COARSE_N_MAX if quick else 2048
    cells = []
    pairs = {(n, COARSE_D_FIXED) for n in coarse_ns} | {(COARSE_N_FIXED, d) for d in coarse_ds}
    for n, d in sorted(pairs):
        cells.append(dict(kind="coarse", n=n, d=d, N=0.0, n_max=n_max))
    fine_ns = [256, 1024, 4096, 16384] if quick else [256, 1024, 4096, 16384, 65536]
    fine_bigN = [2.0, 16.0, 256.0, 4096.0] if quick else [2.0, 8.0, 16.0, 256.0, 4096.0, 65536.0]
    pairs = {(n, FINE_BIGN_FIXED) for n in fine_ns} | {(FINE_N_FIXED, N) for N in fine_bigN}
    for n, N in sorted(pairs):
        cells.append(dict(kind="fine", n=n, d=FINE_D, N=N, n_max=n))
    cells.append(dict(kind="fine_crosscheck", n=64, d=3, N=16.0, n_max=64))
    return cells


# ---------------------------------------------------------------------------
# coarse construction


def _coarse_seed(key, features, theta_star, n, *, d, n_max):
    dtype = features.dtype
    truth = covsim.LinearModel(features, theta_star, horizon=1)
    mu = jnp.ones((1,), dtype=dtype)
    x, y = covsim.sample(truth, mu, n_max, key=key)
    weights = (jnp.arange(n_max) < n).astype(dtype)
    learner = covsim.LinearModel(features, jnp.zeros((d,), dtype), horizon=1)
    box = (-jnp.ones((d,), dtype), jnp.ones((d,), dtype))
    fitted = covsim.fit_mle(learner, x, y, box=box, weights=weights)
    cov = covsim.coverage(truth, fitted, mu, jnp.asarray(COARSE_N, dtype=dtype))
    counts = jnp.zeros((d,), dtype).at[y[:, 0]].add(weights)
    theta_closed, ok = coarse_tightness_mle_theta(counts, features[0, 0, 0, 0, 0])
    # compare laws, not parameters: with every label seen, θ ↦ θ + c·1 leaves π_θ unchanged
    closed_probs = jnp.exp(covsim.next_token_log_probs(covsim.LinearModel(features, theta_closed, horizon=1)))
    fitted_probs = jnp.exp(covsim.next_token_log_probs(fitted))
    gap = jnp.where(ok, jnp.max(jnp.abs(fitted_probs - closed_probs)), 0.0)
    pi = jnp.exp(covsim.next_token_log_probs(truth)[0, 0, 0])
    out = {f"cov_N{int(N)}": cov[i] for i, N in enumerate(COARSE_N)}
    out["cov_spread_N"] = jnp.max(cov) - jnp.min(cov)
    out["unseen_rare_mass"] = jnp.sum(jnp.where((counts == 0) & (jnp.arange(d) > 0), pi, 0.0))
    out["closed_form_ok"] = ok.astype(dtype)
    out["law_gap"] = gap
    return out


@partial(jax.jit, static_argnames=("d", "n_max", "num_seeds"))
def _coarse_seeds(key, features, theta_star, n, *, d, n_max, num_seeds):
    keys = jax.random.split(key, num_seeds)
    return jax.vmap(lambda k: _coarse_seed(k, features, theta_star, n, d=d, n_max=n_max))(keys)


# ---------------------------------------------------------------------------
# fine construction


def _fine_seed(key, mu, eps, N, *, d, n):
    dtype = mu.dtype
    truth = fine_tightness_truth(d, dtype)
    x, y = covsim.sample(truth, mu, n, key=key)
    counts = fine_tightness_counts(x, y, d)
    fitted, _, gain = fine_tightness_mle(counts, eps, N)
    cov = covsim.coverage(truth, fitted, mu, N)
    closed = fine_tightness_coverage(gain, mu[0])
    return {"cov": cov, "mle_is_theta": (gain > 0).astype(dtype),
            "closed_cov_mismatch": (jnp.abs(cov - closed) > EQ_TOL).astype(dtype)}


@partial(jax.jit, static_argnames=("d", "n", "num_seeds"))
def _fine_seeds(key, mu, eps, N, *, d, n, num_seeds):
    keys = jax.random.split(key, num_seeds)
    return jax.vmap(lambda k: _fine_seed(k, mu, eps, N, d=d, n=n))(keys)


def _crosscheck_seed(key, mu, candidates, eps, N, *, d, n):
    truth = candidates[0]
    x, y = covsim.sample(truth, mu, n, key=key)
    generic = covsim.fit_mle_finite(candidates, x, y)
    closed, _, gain = fine_tightness_mle(fine_tightness_counts(x, y, d), eps, N)
    diff = jnp.max(jnp.abs(jnp.exp(generic.logits) - jnp.exp(closed.logits)))
    cov = covsim.coverage(truth, generic, mu, N)
    return {"cov": cov, "mle_is_theta": (gain > 0).astype(mu.dtype),
            "finite_mismatch": (diff > 1e-9).astype(mu.dtype)}


@partial(jax.jit, static_argnames=("d", "n", "num_seeds"))
def _crosscheck_seeds(key, mu, candidates, eps, N, *, d, n, num_seeds):
    keys = jax.random.split(key, num_seeds)
    return jax.vmap(lambda k: _crosscheck_seed(k, mu, candidates, eps, N, d=d, n=n))(keys)


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    kind, n, d = cell["kind"], int(cell["n"]), int(cell["d"])
    if kind == "coarse":
        inst = coarse_tightness(n, d)
        out = _coarse_seeds(key, inst.features, inst.info["theta_star"], jnp.asarray(n),
                            d=d, n_max=int(cell["n_max"]), num_seeds=num_seeds)
    elif kind == "fine":
        inst = fine_tightness(n, d, float(cell["N"]))
        out = _fine_seeds(key, inst.mu, jnp.asarray(inst.info["epsilon"]), jnp.asarray(float(cell["N"])),
                          d=d, n=n, num_seeds=num_seeds)
    elif kind == "fine_crosscheck":
        inst = fine_tightness(n, d, float(cell["N"]))
        out = _crosscheck_seeds(key, inst.mu, tuple(inst.candidates), jnp.asarray(inst.info["epsilon"]),
                                jnp.asarray(float(cell["N"])), d=d, n=n, num_seeds=num_seeds)
    else:
        raise ValueError(f"tightness: unknown cell kind {kind!r}; allowed: coarse, fine, fine_crosscheck")
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


# ---------------------------------------------------------------------------
# analysis


def _expected_coarse_assertion(table) -> Assertion:
    rows, worst = [], 0.0
    for n in table.unique("n"):
        for d in table.select(n=n).unique("d"):
            cov = table.select(n=n, d=d).column("cov_N2")
            pred = float(coarse_tightness_expected_coverage(n, d))
            se = max(cov.std(ddof=1) / math.sqrt(cov.size), 1e-15) if cov.size > 1 else math.inf
            z = (cov.mean() - pred) / se
            worst = max(worst, abs(z))
            rows.append({"n": n, "d": d, "mean": float(cov.mean()), "predicted": pred, "z": float(z)})
    # the closed form assumes label 1 is the most frequent (w.h.p.), so a miss is a failure only far out
    verdict = Verdict.HOLDS if worst <= 5.0 else Verdict.FAILS
    return Assertion("coarse_expected_coverage", verdict,
                     f"mean Cov_2 vs E π_D(unseen rare labels) (CONSTRUCTIONS §4): worst |z| = {worst:.2f} (allowed 5)",
                     {"cells": rows})


def _coarse_lower_bound_assertion(table) -> Assertion:
    rows, verdicts = [], []
    for n in table.unique("n"):
        for d in table.select(n=n).unique("d"):
            cov = table.select(n=n, d=d).column("cov_N2")
            frac = float(np.mean(cov >= float(bounds.coarse_tightness_lower(d, n)) * (1 - 1e-12)))
            se = math.sqrt(0.25 / cov.size)
            verdicts.append(Verdict.HOLDS if frac >= 0.5 else Verdict.FAILS if frac < 0.5 - 5 * se else Verdict.INCONCLUSIVE)
            rows.append({"n": n, "d": d, "fraction_above": frac})
    verdict = (Verdict.FAILS if Verdict.FAILS in verdicts else
               Verdict.INCONCLUSIVE if Verdict.INCONCLUSIVE in verdicts else Verdict.HOLDS)
    return Assertion("coarse_lower_bound", verdict,
                     f"P[Cov_N ≥ (d−1)/(10n)] ≥ ½ (v2 Prop. 4.1(a)): min fraction "
                     f"{min(r['fraction_above'] for r in rows):.3f} over {len(rows)} cells", {"cells": rows})


def analyze(table, size: str) -> Summary:
    assertions, details = [], {}
    coarse = table.select(kind="coarse")
    fine = table.select(kind="fine")
    cross = table.select(kind="fine_crosscheck")
    if coarse.rows:
        x, _, _, ys = coarse.group_mean("n", "cov_N2", d=COARSE_D_FIXED)
        fit = loglog_slope(x, ys)
        details["coarse_fit_n"] = fit.to_dict()
        assertions.append(slope_assertion("coarse_slope_n", fit, *SLOPE_BAND,
                                          what=f"coarse: slope of Cov_2 in n (d = {COARSE_D_FIXED})"))
        x, _, _, ys = coarse.group_mean("d", "cov_N2", n=COARSE_N_FIXED)
        fit = loglog_slope(np.asarray(x) - 1, ys)
        details["coarse_fit_d"] = fit.to_dict()
        assertions.append(slope_assertion("coarse_slope_d", fit, *D_SLOPE_BAND,
                                          what=f"coarse: slope of Cov_2 in d − 1 (n = {COARSE_N_FIXED})"))
        spread = coarse.column("cov_spread_N")
        assertions.append(zero_violation_assertion(
            "coarse_flat_in_N", int(np.sum(spread > EQ_TOL)), spread.size,
            what=f"coarse: Cov_N identical across N ∈ {list(COARSE_N)} per seed (2 ≤ N ≤ e^B)"))
        sub = coarse.select(n=COARSE_N_FIXED, d=COARSE_D_FIXED)
        ys = np.stack([sub.column(f"cov_N{int(N)}") for N in COARSE_N])
        fit = loglog_slope(np.asarray(COARSE_N), ys)
        details["coarse_fit_N"] = fit.to_dict()
        assertions.append(slope_assertion("coarse_slope_N", fit, -FLAT_BAND, FLAT_BAND,
                                          what="coarse: slope of Cov_N in N"))
        assertions.append(_coarse_lower_bound_assertion(coarse))
        assertions.append(_expected_coarse_assertion(coarse))
        gap = coarse.column("law_gap")
        ok = coarse.column("closed_form_ok")
        assertions.append(zero_violation_assertion(
            "coarse_mle_crosscheck", int(np.sum(gap > LAW_TOL)), int(np.sum(ok > 0)),
            what="coarse: covsim.fit_mle law π_θ̂ equals the KKT closed form's (max |Δπ| ≤ 1e-6, where feasible)"))
    if fine.rows:
        x, _, _, ys = fine.group_mean("n", "cov", N=FINE_BIGN_FIXED)
        fit = loglog_slope(x, ys)
        details["fine_fit_n"] = fit.to_dict()
        assertions.append(slope_assertion("fine_slope_n", fit, *SLOPE_BAND,
                                          what=f"fine: slope of Cov_N in n (N = {FINE_BIGN_FIXED:g}, d = {FINE_D})"))
        x, _, _, ys = fine.group_mean("N", "cov", n=FINE_N_FIXED)
        fit = loglog_slope(np.log(np.asarray(x, dtype=float)), ys)
        details["fine_fit_logN"] = fit.to_dict()
        assertions.append(slope_assertion("fine_slope_log_N", fit, *LOGN_SLOPE_BAND,
                                          what=f"fine: slope of Cov_N in log N (n = {FINE_N_FIXED}, d = {FINE_D})"))
        mism = fine.column("closed_cov_mismatch")
        assertions.append(zero_violation_assertion(
            "fine_coverage_closed_form", int(np.sum(mism)), mism.size,
            what="fine: exact covsim.coverage equals p·1{G > 0}"))
        details["fine_prob_mle_is_theta"] = {
            f"n={r['n']},N={r['N']}": float(np.mean(fine.select(n=r["n"], N=r["N"]).column("mle_is_theta")))
            for r in {(row["n"], row["N"]): row for row in fine.rows}.values()}
    if cross.rows:
        mism = cross.column("finite_mismatch")
        assertions.append(zero_violation_assertion(
            "fine_finite_class_crosscheck", int(np.sum(mism)), mism.size,
            what="fine: closed-form MLE equals covsim.fit_mle_finite over all 2^d + 1 models (d = 3)"))
    return Summary(assertions, details)


def plot(table, summary, out):
    from covsim.plotting import Curve, loglog_figure, series_from_table

    paths = []
    coarse = table.select(kind="coarse")
    fine = table.select(kind="fine")
    if coarse.rows:
        ns = np.asarray(coarse.select(d=COARSE_D_FIXED).unique("n"), dtype=float)
        s = series_from_table(coarse, "n", "cov_N2", label=f"coarse Cov_N (d = {COARSE_D_FIXED}, any 2 ≤ N ≤ 512)",
                              fit=summary.details.get("coarse_fit_n"), d=COARSE_D_FIXED)
        path = out / "coarse_cov_vs_n.png"
        loglog_figure(path, [s], xlabel="n", ylabel="Cov_N", title="Coarse tightness: Cov_N ∝ (d−1)/n, flat in N",
                      bounds=[Curve(ns, np.asarray(bounds.coarse_tightness_lower(COARSE_D_FIXED, ns)),
                                    label="(d−1)/(10n) (lower bound w.p. ≥ ½)"),
                              Curve(ns, np.asarray([float(coarse_tightness_expected_coverage(n, COARSE_D_FIXED)) for n in ns]),
                                    label="E π_D(unseen rare labels) (closed form)")])
        paths.append(path)
        ds = np.asarray(coarse.select(n=COARSE_N_FIXED).unique("d"), dtype=float)
        s = series_from_table(coarse, "d", "cov_N2", label=f"coarse Cov_N (n = {COARSE_N_FIXED})",
                              fit=summary.details.get("coarse_fit_d"), n=COARSE_N_FIXED)
        path = out / "coarse_cov_vs_d.png"
        loglog_figure(path, [s], xlabel="d", ylabel="Cov_N", title="Coarse tightness: Cov_N ∝ (d−1)/n",
                      bounds=[Curve(ds, np.asarray(bounds.coarse_tightness_lower(ds, COARSE_N_FIXED)),
                                    label="(d−1)/(10n) (lower bound w.p. ≥ ½)")])
        paths.append(path)
    if fine.rows:
        ns = np.asarray(fine.select(N=FINE_BIGN_FIXED).unique("n"), dtype=float)
        s = series_from_table(fine, "n", "cov", label=f"fine Cov_N (N = {FINE_BIGN_FIXED:g}, d = {FINE_D})",
                              fit=summary.details.get("fine_fit_n"), N=FINE_BIGN_FIXED)
        path = out / "fine_cov_vs_n.png"
        loglog_figure(path, [s], xlabel="n", ylabel="Cov_N", title="Fine tightness: Cov_N ∝ d/(n log N)",
                      bounds=[Curve(ns, np.asarray(bounds.fine_tightness_rate(FINE_D, ns, FINE_BIGN_FIXED, c=0.125)),
                                    label="c·d/(n log N), c = c_p·c_ε² = 0.125")])
        paths.append(path)
        Ns = np.asarray(fine.select(n=FINE_N_FIXED).unique("N"), dtype=float)
        x, mean, se, _ = fine.group_mean("N", "cov", n=FINE_N_FIXED)
        from covsim.plotting import Series
        s = Series(np.log(x), mean, mean - 1.96 * se, mean + 1.96 * se, label=f"fine Cov_N (n = {FINE_N_FIXED})",
                   fit=summary.details.get("fine_fit_logN"))
        path = out / "fine_cov_vs_logN.png"
        loglog_figure(path, [s], xlabel="log N", ylabel="Cov_N", title="Fine tightness: Cov_N ∝ 1/log N",
                      bounds=[Curve(np.log(Ns), np.asarray(bounds.fine_tightness_rate(FINE_D, FINE_N_FIXED, Ns, c=0.125)),
                                    label="c·d/(n log N), c = 0.125")])
        paths.append(path)
    return paths


CHECK = Check(
    name="tightness",
    claim="MLE tightness of Thm 4.1: coarse construction Cov_N ≈ c(d−1)/n, flat in 2 ≤ N ≤ e^B; fine "
          "construction Cov_N ≈ c·d/(n log N) (slope −1 in n and in log N).",
    reference="arXiv 2510.15020 v2, Prop. 4.1, App. H.3 (ICLR Prop. G.1; THEORY §5.5)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 128, "full": 2048},
)
