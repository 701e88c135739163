r"""Normalized SGD (Theorem 5.1) at the theorem's constants: the averaged Cov_N is within the
rate √(σ⋆²/(T log N)) + B²/T + B/(K log N), and the late floor falls with the batch K.

Claim (arXiv 2510.15020 v2, Thm 5.1, Eqs. 17–18, App. I.5; THEORY.md §6.3): for normalized
SGD with batch K, η = min{1/(128B), (log N/(σ⋆²T))^{1/4}} and λ = log N/(16η) (so
λ ≥ 8B log N and ηλ ≤ log N/16, asserted in ``_separation.theorem_normalized``),
(1/T) Σ_t E Cov_N(π_{θ_t}) ≲ √(σ⋆²/(T log N)) + B²/T + B/(K log N), where "the B/(K log N)
term is the bias created by normalizing; batching is necessary".

Instance: ``theory_checks._separation.two_prompts(H = 16, k = 8)`` (B = 1; dense prompt
informative at every position, sparse prompt at 8; θ_1 = 0). At these T the cap binds:
η = 1/128, λ = 8·log N = 11.09 at every T and K. Exact Cov_N and KL (closed forms) at
every iterate inside the training scan (exact iterate averages); the late (second-half)
KL is the mean of the exact KL at 64 stratified random iterates of t ∈ (T/2, T] (one
uniform draw per block: an unbiased estimate of the second-half average, every term exact).

Rules (declared before the runs):

1. ``avg_cov_within_thm51_bound`` (cap 0): in every (T, K) cell, seed mean of
   (1/T)Σ_t Cov_N(π_{θ_t}) − [√(σ⋆²/(T log N)) + B²/T + B/(K log N)] ≤ 0 (the ≲ read with
   constant 1, a [project] choice; Student-t CI of the worst cell). The bound is < 1 in
   every cell (vacuity gate) and falls to ≈ 0.07 at K = 16: plain burn-in averaging cannot
   satisfy this alone — a slow method whose burn-in is not within the theorem's budget
   has an averaged Cov_N far above it (the control).
2. ``late_kl_falls_with_K`` (paired ≥ 0): per seed, second-half exact KL at K = 1 minus at
   the largest K (same T): the floor falls with the batch (the B/(K log N) term; THEORY
   §6.3 "The analysis runs on the stopped KL", here the plain KL, an upper bound on it).
   Exact KL, not coverage: late in training Cov_N is exactly 0 on this instance.

A vanilla arm at the same K, the same data streams and the same small-gradient effective
step η/λ separates the normalization's bias from the variance: the late KL of both arms
and their difference are reported per K (observations, not rules). The log–log slope of
the averaged Cov_N in T is reported too (any convergent method's burn-in average has slope
≈ −1, so it is not a rule).

Measured at quick (8 seeds, T = 10⁴): averaged Cov_4 = 0.0155 / 0.0138 / 0.0133 at K = 1 / 4 / 16
against bounds 0.746 / 0.205 / 0.070 (and 0.0039 at T = 4·10⁴, K = 1; slope in T ≈ −1.00,
burn-in dominated); second-half exact KL 8.0e-4 / 3.0e-4 / 7.6e-5 (≈ K^{-0.8}). The vanilla arm
at η/λ has a *larger* late KL at every K (1.4e-3 / 3.8e-4 / 8.5e-5): on this instance the
normalization only shrinks steps, and no bias of normalizing is visible at these sizes — the
1/K fall of the floor is the variance of the batch mean, shared by both arms. (At the tiny
T = 2000, still in burn-in, the normalized arm's late KL is the larger one.)

Control: normalized SGD at η/64 (λ unchanged; both requirements still hold, but η is not the
theorem's choice): it converges, only slowly, and its burn-in average must exceed the bound.

Sizes: tiny T = 2000, K ∈ {1, 4}; quick T ∈ {10⁴, 4·10⁴} at K = 1 and K ∈ {1, 4, 16} at
T = 10⁴; full T up to 10⁵, K up to 64, 256 seeds (accelerator only).
"""

from __future__ import annotations

import math

import numpy as np

from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.stats import loglog_slope
from theory_checks._separation import (
    B_FEATURE,
    SPARSE_K,
    exact_kl,
    per_seed_matrix,
    sigma2_star,
    theorem_normalized,
    train_grid,
)

HORIZON, THRESHOLD, LATE_POINTS = 16, 4.0, 64
CONTROL_ETA_DIVISOR = 64.0

RULES = (
    Rule("avg_cov_within_thm51_bound", "cap",
         "seed mean of iterate-averaged exact Cov_N minus √(σ⋆²/(T log N)) + B²/T + B/(K log N), worst (T, K) cell",
         0.0,
         regime="normalized SGD at Thm 5.1's eta, lambda; every (T, K) cell",
         theory="THEORY §6.3 Thm 5.1: (1/T) Σ_t E Cov_N(π_θt) ≲ √(σ⋆²/(T log N)) + B²/T + B/(K log N)",
         bound="√(σ⋆²/(T log N)) + B²/T + B/(K log N) (constant 1)"),
    Rule("late_kl_falls_with_K", "paired",
         "per-seed second-half exact KL at K = 1 minus at the largest K (normalized SGD, same T)",
         0.0,
         regime="normalized SGD, K-sweep cells at fixed T",
         theory="THEORY §6.3: the B/(K log N) term is the bias created by normalizing; batching is necessary"),
)


def _sizes(size: str):
    if size == "tiny":
        return [(2000, 1), (2000, 4)]
    if size == "quick":
        return [(10_000, 1), (40_000, 1), (10_000, 4), (10_000, 16)]
    return [(10_000, 1), (40_000, 1), (100_000, 1), (10_000, 4), (10_000, 16), (10_000, 64)]


def _cells(size: str, variant: str) -> list[dict]:
    """Both arms at the K-sweep's T (the T with several K); the normalized arm only elsewhere."""
    sizes = _sizes(size)
    T_K = max(T for T, _ in sizes if sum(t == T for t, _ in sizes) > 1)
    return [dict(arm=arm, variant=variant, T=T, K=K, H=HORIZON, k=SPARSE_K, N=THRESHOLD)
            for T, K in sizes for arm in ("normalized", "vanilla") if arm == "normalized" or T == T_K]


def grid(size: str) -> list[dict]:
    return _cells(size, "theorem")


def control_grid(size: str) -> list[dict]:
    return [c for c in _cells(size, "eta_over_64") if c["arm"] == "normalized"]


def bound(T, K, N, sigma2, B=B_FEATURE) -> float:
    log_n = math.log(N)
    return math.sqrt(sigma2 / (T * log_n)) + B * B / T + B / (K * log_n)


def _late_checkpoints(T: int, count: int) -> tuple[int, ...]:
    half = T // 2
    edges = np.floor(np.linspace(half + 1, T + 1, count + 1)).astype(int)
    rng = np.random.default_rng(T * 7919 + count)
    return tuple(sorted({int(rng.integers(lo, max(hi, lo + 1))) for lo, hi in zip(edges[:-1], edges[1:])}))


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    import jax

    T, K, H, k, N = cell["T"], cell["K"], cell["H"], cell["k"], cell["N"]
    sigma2 = sigma2_star(H, k)
    eta, lam = theorem_normalized(N, sigma2=sigma2, T=T)
    if cell["variant"] == "eta_over_64":
        eta = eta / CONTROL_ETA_DIVISOR
    if cell["arm"] == "normalized":
        method, step, lam_used = "normalized", eta, lam
    else:  # vanilla at the normalized step's small-gradient limit η/λ, same K, same streams
        method, step, lam_used = "vanilla", eta / lam, 0.0
    ckpts = _late_checkpoints(T, LATE_POINTS)
    res = train_grid(H=H, k=k, N=N, T=T, method=method, etas=[step], lams=[lam_used], K=K, key=key,
                     num_seeds=num_seeds, checkpoints=ckpts)
    thetas = res.checkpoint_thetas[0]  # (S, C, 2)
    late_kl = np.asarray(jax.vmap(jax.vmap(lambda th: exact_kl(th, H, k)))(thetas)).mean(axis=1)
    ones = np.ones(num_seeds)
    return {"cov_avg": np.asarray(res.metrics["cov"][0]), "kl_avg": np.asarray(res.metrics["kl"][0]),
            "late_kl": late_kl, "bound": bound(T, K, N, sigma2) * ones, "eta_used": step * ones,
            "lam": lam_used * ones, "sigma2": sigma2 * ones}


def analyze(table, size: str) -> Analysis:
    evidence, obs, details = {}, [], {"cells": []}
    nor = table.select(arm="normalized")
    worst, bvals = None, []
    for T in nor.unique("T"):
        for K in nor.unique("K"):
            rows = nor.select(T=T, K=K)
            if not rows.rows:
                continue
            _, cov = per_seed_matrix(rows, "T", "cov_avg")
            b = float(rows.column("bound")[0])
            bvals.append(b)
            diff = cov[0] - b
            cell = {"T": T, "K": K, "mean_cov": float(cov[0].mean()), "bound": b, "diff": diff}
            details["cells"].append({k: v for k, v in cell.items() if k != "diff"})
            if worst is None or diff.mean() > worst["diff"].mean():
                worst = cell
    if worst is None:
        evidence["avg_cov_within_thm51_bound"] = Evidence.invalid("no normalized cells", seeds=0, bound_values=[])
    else:
        evidence["avg_cov_within_thm51_bound"] = Evidence.mean(
            worst["diff"], bound_values=bvals, cells={"T": worst["T"], "K": worst["K"]},
            details={"mean_cov": worst["mean_cov"], "bound": worst["bound"]})
    Ks = sorted(nor.unique("K"))
    T_K = max((T for T in nor.unique("T") if len(nor.select(T=T).unique("K")) > 1), default=None)
    if T_K is None or len(Ks) < 2:
        evidence["late_kl_falls_with_K"] = Evidence.invalid("no K sweep at a common T", seeds=0)
    else:
        Kk, late = per_seed_matrix(nor.select(T=T_K), "K", "late_kl")
        evidence["late_kl_falls_with_K"] = Evidence.paired(late[0], late[-1], cells={"T": T_K, "K": [Kk[0], Kk[-1]]})
        details["late_kl_vs_K"] = {"K": Kk, "normalized": late}
        van = table.select(arm="vanilla", T=T_K)
        if van.rows:
            _, vlate = per_seed_matrix(van, "K", "late_kl")
            details["late_kl_vs_K"]["vanilla"] = vlate
            for K, a, v in zip(Kk, late, vlate):
                obs.append(Observation(
                    f"late_kl_K{int(K)}", {"normalized": float(a.mean()), "vanilla_eta_over_lambda": float(v.mean())},
                    f"T={T_K}: normalization's bias+variance minus vanilla's variance at the same K and step "
                    f"η/λ: {float((a - v).mean()):.4g} ± {float((a - v).std(ddof=1) / math.sqrt(a.size)):.2g}"))
    one = nor.select(K=1)
    if one.rows and len(one.unique("T")) >= 2:
        Ts, cov = per_seed_matrix(one, "T", "cov_avg")
        fit = loglog_slope(Ts, cov)
        details["cov_slope_T"] = fit.to_dict()
        obs.append(Observation("cov_slope_T_K1", fit.slope,
                               f"log-log slope of avg Cov_N in T at K = 1, CI [{fit.lo:.3g}, {fit.hi:.3g}] "
                               "(burn-in averaging alone gives ≈ −1; reported only)"))
    if nor.rows:
        r = nor.rows[0]
        obs.append(Observation("hyperparameters", {"eta": r["eta_used"], "lambda": r["lam"]},
                               f"ηλ = {r['eta_used'] * r['lam']:.4g} vs log N/16 = {math.log(r['N']) / 16:.4g}; "
                               f"λ vs 8B log N = {8 * B_FEATURE * math.log(r['N']):.4g}"))
    return Analysis(evidence=evidence, observations=obs, details=details)


def plot(table, summary, out):
    from covsim.plotting import Curve, loglog_figure

    paths = []
    nor = table.select(arm="normalized")

    def band(x, y, label):
        return {"x": x, "mean": y.mean(axis=1), "lo": np.quantile(y, 1 / 16, axis=1),
                "hi": np.quantile(y, 15 / 16, axis=1), "label": label}

    for sweep, fixed in (("K", "T"), ("T", "K")):
        best = None
        for value in nor.unique(fixed):
            sub = nor.select(**{fixed: value})
            if len(sub.unique(sweep)) > 1 and (best is None or len(sub.unique(sweep)) > len(best[1].unique(sweep))):
                best = (value, sub)
        if best is None:
            continue
        value, sub = best
        x, cov = per_seed_matrix(sub, sweep, "cov_avg")
        b = [float(sub.select(**{sweep: v}).column("bound")[0]) for v in x]
        paths.append(loglog_figure(
            out / f"cov_avg_vs_{sweep}.png", [band(x, cov, f"normalized SGD, {fixed}={value}")],
            xlabel="batch K" if sweep == "K" else "steps T", ylabel="avg Cov_N (exact; band: seeds 1/16–15/16)",
            title=f"Thm 5.1 η, λ: averaged Cov_N vs its bound (c = 1), {fixed}={value}",
            bounds=[Curve(x, b, label="√(σ⋆²/(T log N)) + B²/T + B/(K log N)")]))
    late = summary.details.get("late_kl_vs_K")
    if late:
        s = []
        for arm in ("normalized", "vanilla"):
            if arm in late:
                y = np.asarray(late[arm])
                s.append(band(late["K"], y, arm if arm == "normalized" else "vanilla at η/λ (same K, same data)"))
        paths.append(loglog_figure(out / "late_kl_vs_K.png", s, xlabel="batch K", ylabel="second-half exact KL",
                                   title="The floor vs the batch size"))
    return paths


CHECK = Check(
    name="normalized_sgd_rates",
    claim="Normalized SGD at Thm 5.1's η, λ on two_prompts (B = 1): the averaged Cov_N stays below "
          "√(σ⋆²/(T log N)) + B²/T + B/(K log N) in every (T, K) cell, and the late exact KL falls from K = 1 to "
          "the largest K.",
    reference="arXiv 2510.15020 v2, Thm 5.1, App. I.5",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("normalized SGD at η/64 (λ unchanged): a convergent but slow method whose burn-in average "
                    "of Cov_N exceeds the Thm 5.1 bound at the theorem's budget, so the bound rule must fail",
                    control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 8, "full": 256},
    paired_over=("arm", "K"),
)
