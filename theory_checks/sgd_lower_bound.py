r"""Vanilla SGD lower bound: for every constant η, Cov_N(π_{θ_t}) ≥ c·min{1, H/(T log N)} at every t.

Claim (arXiv 2510.15020 v2, Prop. 5.1 lower bound, App. I.4; ICLR App. K.4; THEORY.md §6.2;
CONSTRUCTIONS.md §7): on ``sgd_horizon_lower_bound`` (two feature scales b, B̄ = b²), vanilla
sequence-level SGD with any constant step size η keeps, with probability ≥ ½,
Cov_N(π_{θ_t}) ≥ c·min{1, H/(T log N)} for all t ∈ [T]. Case A (η ≥ 8/(HB̄)): SGD oscillates
between w_η(±1) and Cov_N = 1. Case B (η < 8/(HB̄)): the rare prompt + barely moves,
max_t θ_t[1] ≤ r and Cov_N ≥ μ(+)/2 exactly (θ[1] is the first coordinate,
covsim index 0).

The constant c is fixed a priori by the construction: c = c_μ/2 = 1/(1024e) with the paper's
c_μ = 1/(512e), so that in case B c·min{1, H/(T log N)} = μ(+)/2 (B̄ = b²).

Pipeline: ``covsim.fit.sgd.train`` (vanilla, online sampling, θ_1 from the construction,
every iterate θ_1..θ_T recorded) and the exact multinomial coverage
(``covsim.instances.optimization.multinomial_coverage``; tokens are i.i.d. given the prompt)
at every iterate; the minimum over t is exact. Verdict per η: the fraction of seeds on
which min_t Cov_N ≥ c·rate must be ≥ ½ (fails if it is below ½ by more than 2 binomial SE).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from covsim import bounds
from covsim.experiments.check import Assertion, Check, Summary, Verdict
from covsim.fit import sgd
from covsim.instances.optimization import C_MU, multinomial_coverage, sgd_horizon_lower_bound

C_CONST = C_MU / 2.0
"""The a-priori constant c of the lower bound (= μ(+)/2 / rate in case B)."""

ETA_FACTORS = (1 / 32, 1 / 8, 1 / 2, 1.0, 4.0, 16.0)
"""η = factor · 8/(H·B̄): a log grid across the case boundary (factor ≥ 1 is case A)."""


def grid(size: str) -> list[dict]:
    if size == "quick":
        settings = [(100, 16, 4.0)]
    else:
        settings = [(T, H, N) for T in (100, 1000) for H in (16, 64) for N in (4.0, 16.0)]
    cells = []
    for T, H, N in settings:
        b = 2.0 * math.log(4.0 * T * H) + 2.0
        threshold = 8.0 / (H * b * b)
        for f in ETA_FACTORS:
            cells.append(dict(T=T, H=H, N=N, eta_factor=f, eta=threshold * f))
    return cells


def _log_probs(features, theta):
    return jax.nn.log_softmax(features[:, 0, 0] @ theta, axis=-1)  # (P, V)


@partial(jax.jit, static_argnames=("horizon",))
def _coverage_path(features, theta_star, thetas, mu, N, *, horizon):
    """Exact Cov_N at every recorded iterate: thetas (S, C, d) -> (S, C)."""
    truth = _log_probs(features, theta_star)

    def one(theta):
        return multinomial_coverage(truth, _log_probs(features, theta), mu, horizon, N)

    return jax.vmap(jax.vmap(one))(thetas)


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    T, H, N, eta = cell["T"], cell["H"], cell["N"], cell["eta"]
    inst = sgd_horizon_lower_bound(T, H, N, eta)
    info = inst.info
    config = sgd.SGDConfig("vanilla", eta)
    learner = inst.model(info["theta_init"])
    checkpoints = tuple(range(1, T + 1))
    res = jax.vmap(lambda kk: sgd.train(
        learner, inst.truth, inst.mu, config, num_steps=T, key=kk, constraint=inst.constraint,
        checkpoints=checkpoints))(jax.random.split(key, num_seeds))
    thetas = res.checkpoint_thetas  # (S, T, 2)
    cov = _coverage_path(inst.features, info["theta_star"], thetas, inst.mu, N, horizon=H)
    target = C_CONST * float(bounds.sgd_lower_bound_rate(T, N, H))
    min_cov = np.asarray(jnp.min(cov, axis=1))
    ones = np.ones(num_seeds)
    out = {
        "min_cov": min_cov,
        "mean_cov": np.asarray(jnp.mean(cov, axis=1)),
        "all_cov_one": np.asarray(jnp.all(cov >= 1.0 - 1e-12, axis=1), dtype=float),
        "max_theta1": np.asarray(jnp.max(thetas[:, :, 0], axis=1)),  # θ[1] of CONSTRUCTIONS §7 (1-based)
        "target": target * ones,
        "construction_lower": float(info["lower_bound"]) * ones,
        "r": (info["r"] if info["r"] is not None else math.nan) * ones,
        "case_A": float(info["case"] == "A") * ones,
        "requirements_met": float(info["requirements_met"]) * ones,
        "B_bar": info["B_bar"] * ones,
    }
    out["bound_ok"] = (min_cov >= target * (1 - 1e-9)).astype(float)
    return out


def _half_assertion(name: str, successes: np.ndarray, what: str) -> Assertion:
    """Probability ≥ ½ claims: holds if the success fraction ≥ ½, fails if it is below ½ by
    more than 2 binomial standard errors (√(¼/S)), else inconclusive."""
    s = successes.size
    frac = float(np.mean(successes)) if s else math.nan
    details = {"fraction": frac, "seeds": s}
    text = f"{what}: {frac:.3f} of {s} seeds"
    if s == 0:
        return Assertion(name, Verdict.INCONCLUSIVE, f"{what}: no seeds", details)
    if frac >= 0.5:
        return Assertion(name, Verdict.HOLDS, text + " (needs ≥ 1/2)", details)
    if frac + 2 * math.sqrt(0.25 / s) < 0.5:
        return Assertion(name, Verdict.FAILS, text + " (significantly below 1/2)", details)
    return Assertion(name, Verdict.INCONCLUSIVE, text + " (below 1/2 within noise)", details)


def analyze(table, size: str) -> Summary:
    assertions, details = [], {"c": C_CONST, "per_eta": []}
    for T in table.unique("T"):
        for H in table.unique("H"):
            for N in table.unique("N"):
                for f in table.unique("eta_factor"):
                    rows = table.select(T=T, H=H, N=N, eta_factor=f)
                    if not rows.rows:
                        continue
                    tag = f"T{T}_H{H}_N{N:g}_eta{f:g}"
                    case_a = bool(rows.column("case_A")[0])
                    target = float(rows.column("target")[0])
                    min_cov = rows.column("min_cov")
                    ok = rows.column("bound_ok")
                    assertions.append(_half_assertion(
                        f"lower_bound_{tag}", ok,
                        f"case {'A' if case_a else 'B'}, η = {f:g}·8/(HB̄): min_t Cov_N ≥ c·min{{1, H/(T log N)}} "
                        f"= {target:.3g}"))
                    if case_a:
                        mech = _half_assertion(f"case_A_oscillates_{tag}", rows.column("all_cov_one"),
                                               "case A: Cov_N = 1 at every iterate")
                    else:
                        r = float(rows.column("r")[0])
                        stuck = (rows.column("max_theta1") <= r) & (min_cov >= float(rows.column("construction_lower")[0]) * (1 - 1e-9))
                        mech = _half_assertion(f"case_B_stuck_{tag}", stuck.astype(float),
                                               f"case B: max_t θ_t[1] ≤ r = {r:.4g} and min_t Cov_N ≥ μ(+)/2")
                    assertions.append(mech)
                    details["per_eta"].append({
                        "cell": tag, "case": "A" if case_a else "B", "target": target,
                        "min_cov_median": float(np.median(min_cov)), "min_cov_min": float(np.min(min_cov)),
                        "fraction_ok": float(np.mean(ok)),
                        "requirements_met": bool(rows.column("requirements_met")[0]),
                        "max_theta1_max": float(np.max(rows.column("max_theta1")))})
    return Summary(assertions, details)


def plot(table, summary, out):
    from covsim.plotting import Curve, loglog_figure, series_from_table

    paths = []
    T, H, N = table.unique("T")[0], table.unique("H")[0], table.unique("N")[0]
    rows = table.select(T=T, H=H, N=N)
    series = [series_from_table(rows, "eta", "min_cov", label=f"min_t Cov_{N:g} (T={T}, H={H})")]
    etas = np.asarray(rows.unique("eta"), dtype=float)
    target = float(rows.column("target")[0])
    paths.append(loglog_figure(
        out / "min_cov_vs_eta.png", series, xlabel="step size η", ylabel="min over iterates of Cov_N",
        title="Vanilla SGD lower bound (sgd_horizon_lower_bound)",
        bounds=[Curve(etas, np.full(etas.shape, target), label="c·min{1, H/(T log N)}, c = c_μ/2 = 1/(1024e)")]))
    return paths


CHECK = Check(
    name="sgd_lower_bound",
    claim="On sgd_horizon_lower_bound, for every η on a log grid across 8/(H·B̄), vanilla SGD keeps "
          "min_t Cov_N ≥ c·min{1, H/(T log N)} (c = c_μ/2) with probability ≥ 1/2: case A oscillates with "
          "Cov_N = 1, case B stays stuck on the rare prompt (max_t θ_t[1] ≤ r, Cov_N ≥ μ(+)/2).",
    reference="arXiv 2510.15020 v2, Prop. 5.1 (lower bound), App. I.4",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 16, "full": 256},
)
