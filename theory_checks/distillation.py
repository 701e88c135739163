r"""Truncated SGD for distillation: H-free iterate-averaged coverage past the burn-in (Theorem 6.2, v2).

**Claim** (arXiv 2510.15020 v2, Thm 6.2, Eqs. 24–26, App. I.7; ICLR Thm G.2; THEORY.md §6.5,
§9 row 6.5): truncated SGD — θ_{t+1} = Proj_Θ(θ_t + η Σ_h α_h ∇log π_θ(y_h|·)), the weights α_h
stopping the per-step KLs at a cumulative log N — has
(1/T) Σ_t E Cov_N(π_{θ_t}) ≲ √(σ⋆²/(T log N)) + B²/T: no H, the shape of Thm 4.2.

**Instance** ``pivotal_tokens`` (CONSTRUCTIONS §9), k = 2 pivots, V = 8, B = 16, N = 4,
θ_1 = 0; σ⋆² ≈ k·B²(1 − Σ_v p⋆_v²) is the same at every H to < 1%. Step size: covsim's
[correction] default η = min{1/(256 log N B²), (Tσ⋆² log N)^{−1/2}} = 1/(256 log N B²)
(THEORY §6.5), which does not depend on T on the grid, so the first T/2 iterates of a T-step
run are a T/2-step run.

**Vacuity.** The proof's optimization term ‖θ⋆ − θ_1‖²/(ηT log N) = 256·B²·‖θ⋆‖²/T =
5.4×10⁴/T (‖θ⋆‖² = 0.83) is ≥ 1 until T ≈ 5.4×10⁴, at every H and N. The quick grid uses
T = 2¹⁷ = 131072 and its prefix T/2 = 65536 (terms 0.41 and 0.83); full uses 2²⁰ and 2¹⁹.
The tiny size (T = 4096, term 13.6) is a smoke test of the pipeline, not evidence.

**The log H burn-in** (derived before the run). From θ_1 = 0, Cov_N(π_{θ_t}) = 1 until the
deterministic steps' accumulated error (H − k)·q(θ), q ≈ (V − 1)e^{−Bθ_0}, falls below ≈ log N,
i.e. until θ_0 ≥ θ_0^*(H) := log((H − k)(V − 1)/log N)/B; afterwards it is ≈ 0 on this
instance. θ_0 climbs at a rate that does not depend on H (the truncation caps each step's
KL mass at log N: at θ_1 only the first token is used), so the burn-in lasts
T_b(H) = t_0 + θ_0^*(H)/v steps and the iterate average is ≈ T_b(H)/T — logarithmic in H, as
Thm 6.2's constant allows (T_b is bounded by the H-free optimization budget
‖θ⋆ − θ_1‖²/(η log N) = 5.6×10⁴ steps for every H up to ≈ 10⁵, where θ_0^* reaches
θ⋆_0 = 0.9). Its log–log slope in H is at most that of θ_0^*(H) (t_0 ≥ 0 only lowers it):
the least-squares slope of log θ_0^* against log H is 0.28 on the tiny grid {8, 32}, 0.25 on
the quick grid {8, 16, 64}, 0.19 on the full grid {8, …, 1024}. (Offline trajectories, 4
seeds, put the end of the burn-in at ≈ 1.6k, 2.0k, 2.4k steps for H = 8, 32, 128: slope
≈ 0.15.) Vanilla SGD at its own theorem step η = min{1/(2HB²), √(2/(σ⋆²T))} instead needs
a number of steps ∝ H (its step is ∝ 1/H; offline: ≈ 30 steps at H = 8, ≈ 400 at H = 128):
slope ≈ 1 (THEORY §6.2, the B²H/T term).

**Rules** (declared before any run):

1. ``cov_no_power_growth_in_H`` (cap 0.3): log–log slope in H of the seed-mean iterate
   average (1/T) Σ_{t≤T} Cov_N(π_{θ_t}) at T = T_max. The cap 0.3 is above the log
   burn-in's largest slope on the grids (0.28) — growth like any power H^γ with γ > 0.3
   (vanilla SGD: γ ≈ 1) fails it. (THEORY §6.5 / §9: "no growth with H".)
2. ``cov_decreasing_in_T`` (paired ≥ 0): at H = 8, per-seed average over the first T_max/2
   iterates minus the average over T_max (same runs): Thm 6.2's bound decreases in T (the
   shape of Thm 4.2, §9 row 6.5); both T past the optimization term's vacuity at quick/full.

**Control** (``variant="vanilla"``): untruncated vanilla SGD at its theorem step size (THEORY
§6.6, first row), same instance, T, checkpoints and analysis: its burn-in is ∝ H, so rule 1
fails.

**Measured** (--quick, 8 seeds): burn-ins (T·avg Cov) of 1581, 1776, 2182 steps at H = 8, 16, 64
(Cov_4 = 0 at every sampled iterate after t ≈ 3000; both averages are burn-in / T), slope
0.154 [0.145, 0.164] ≤ 0.3: holds; T/2 → T difference 0.0121 [0.0118, 0.0124] > 0: holds.
Control (vanilla at its step): burn-ins 31, 44, 152 steps, slope 0.78 [0.74, 0.82]: fails.
≈ 85 s of CPU each for the check and its control.

**Pipeline**: ``covsim.fit.sgd.train`` (method ``truncated``; the control ``vanilla``) vmapped
over seeds, one run of T_max per cell; Cov_N by Monte Carlo (``covsim.sample``,
``covsim.log_prob``; per seed one set of responses y ~ π_D shared by its checkpoints, ties
counted) at checkpoints stratified on dyadic blocks [2^j, 2^{j+1}) (4 equal strata each, one
uniform iterate per stratum, weighted by the stratum length: unbiased for the iterate
average, and fine where the burn-in ends), plus the iterates T_max/2 and T_max. Checkpoint positions are
drawn once per (T, variant), shared by every H (paired, ``paired_over=("H",)``).
Only --full reaches H = 1024, T = 2²⁰ and 256 seeds (8 at quick: the trajectories are
nearly deterministic at this η, the CIs are narrow).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim.exact import TIE_TOLERANCE
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.stats import loglog_slope
from theory_checks._pivotal import pivotal_config, pivotal_setup, train_seeds

K_PIVOTS, VOCAB, THRESHOLD, B_SCALE = 2, 8, 4.0, 16.0
STRATA_PER_BLOCK = 4
BASE_H = 8
POWER_SLOPE = 0.3
"""Above the largest log–log slope of the burn-in threshold θ_0^*(H) = log((H−k)(V−1)/log N)/B on the grids (0.28)."""
SIZES = {
    "tiny": dict(H=[8, 32], T=2048, mc=16),
    "quick": dict(H=[8, 16, 64], T=131072, mc=32),
    "full": dict(H=[8, 16, 64, 256, 1024], T=1048576, mc=256),
}

RULES = (
    Rule("cov_no_power_growth_in_H", "cap",
         "log–log slope in H of the seed-mean iterate average (1/T)Σ_{t≤T} Cov_4(π_{θ_t}) at T = T_max", POWER_SLOPE,
         regime="H grid at T = T_max (quick 2^17, full 2^20: optimization term ‖θ⋆−θ_1‖²/(ηT log N) = 0.41, 0.05 "
                "< 1; tiny 2^12 is a smoke size)",
         theory="§6.5 Thm 6.2: (1/T) Σ_t E Cov_N(π_{θ_t}) ≲ √(σ⋆²/(T log N)) + B²/T (no H); §9: 'no growth with H' "
                "— allowing the log H burn-in (slope ≤ 0.28 on the grids)"),
    Rule("cov_decreasing_in_T", "paired",
         "per-seed (average over t ≤ T_max/2) − (average over t ≤ T_max) of Cov_4(π_{θ_t}), same runs", 0.0,
         regime=f"H = {BASE_H}; T_max/2 and T_max both past the optimization term's vacuity at quick/full",
         theory="§6.5 Thm 6.2 bound √(σ⋆²/(T log N)) + B²/T decreases in T; §9 row 6.5 'same shape as Thm 4.2'"),
)


def _cells(size: str, variant: str) -> list[dict]:
    spec = SIZES[size]
    return [dict(H=H, k=K_PIVOTS, V=VOCAB, N=THRESHOLD, T=spec["T"], mc=spec["mc"], variant=variant)
            for H in spec["H"]]


def grid(size: str) -> list[dict]:
    return _cells(size, "truncated")


def control_grid(size: str) -> list[dict]:
    return _cells(size, "vanilla")


def dyadic_strata(T: int, per_block: int, seed: int):
    """Stratified iterate sample for prefix averages over t ≤ T and t ≤ T/2 (T a power of 2).

    Blocks [2^j, 2^{j+1}) for j < log2 T, each cut into `per_block` equal strata (fewer when
    the block is shorter); one uniform iterate per stratum. Returns ``(checkpoints, picks)``:
    sorted unique iterate indices (the points T/2 and T included) and a list of
    ``(block j, checkpoint index, weight = stratum length)``. Then
    (1/T')Σ_{t≤T'} f(θ_t) is estimated without bias by
    [Σ_{strata in blocks j < log2 T'} weight·f + f(θ_{T'})]/T' for T' ∈ {T/2, T}."""
    J = int(round(math.log2(T)))
    if 2**J != T or J < 2:
        raise ValueError(f"T must be a power of 2 >= 4, got {T}")
    rng = np.random.default_rng(seed)
    strata = []
    for j in range(J):
        lo, hi = 2**j, 2 ** (j + 1)  # [lo, hi)
        edges = np.unique(np.linspace(lo, hi, min(per_block, hi - lo) + 1).round().astype(int))
        for a, b in zip(edges[:-1], edges[1:]):
            strata.append((j, int(rng.integers(a, b)), int(b - a)))
    points = sorted({t for _, t, _ in strata} | {T // 2, T})
    index = {t: i for i, t in enumerate(points)}
    return tuple(points), [(j, index[t], w) for j, t, w in strata]


def prefix_averages(values, T: int, picks, points):
    """Estimates of (1/T')Σ_{t≤T'} f(θ_t) for T' = T/2 and T, from values (S, C) at `points`;
    and per-block stratified means (S, J). Returns (avg_half (S,), avg_full (S,), blocks (S, J))."""
    values = np.asarray(values, dtype=float)
    J = int(round(math.log2(T)))
    sums = np.zeros((values.shape[0], J))
    lengths = np.zeros(J)
    for j, i, w in picks:
        sums[:, j] += w * values[:, i]
        lengths[j] += w
    index = {t: i for i, t in enumerate(points)}
    half = (sums[:, : J - 1].sum(axis=1) + values[:, index[T // 2]]) / (T // 2)
    full = (sums.sum(axis=1) + values[:, index[T]]) / T
    return half, full, sums / lengths


@functools.partial(jax.jit, static_argnames=("num_samples",))
def _mc_coverage(truth, learner, mu, thetas, key, N, *, num_samples):
    """Cov_N(π_D‖π_θ) for thetas (S, C, d) by Monte Carlo: per seed, ``num_samples`` responses
    y ~ π_D (``covsim.sample``) shared by that seed's checkpoints (unbiased at each checkpoint),
    the fraction with log π_D(y) − log π_θ(y) ≥ log N (ties counted, THEORY §0). The models are
    jit arguments (no constant folding of the features). Returns (S, C)."""
    S = thetas.shape[0]
    log_level = jnp.log(N) - TIE_TOLERANCE

    def per_seed(args):
        theta_s, k = args
        x, y = covsim.sample(truth, mu, num_samples, key=k)
        log_p = jax.vmap(lambda xx, yy: covsim.log_prob(truth, xx, yy))(x, y)

        def at(theta):
            model = eqx.tree_at(lambda m: m.theta, learner, theta)
            log_q = jax.vmap(lambda xx, yy: covsim.log_prob(model, xx, yy))(x, y)
            return jnp.mean(log_p - log_q >= log_level)

        return jax.lax.map(at, theta_s)

    # sequential over seeds and checkpoints: memory O(num_samples·H·V·d) at --full
    return jax.lax.map(per_seed, (thetas, jax.random.split(key, S)))


def optimization_term(H: int, T: int, method: str = "truncated") -> float:
    """‖θ⋆ − θ_1‖²/(ηT log N) at the cell's step size (θ_1 = 0)."""
    inst, _, _, _ = pivotal_setup(H, K_PIVOTS, VOCAB)
    config = pivotal_config(method, H=H, k=K_PIVOTS, V=VOCAB, T=T, N=THRESHOLD)
    dist2 = float(np.sum(np.asarray(inst.info["theta_star"]) ** 2))
    return dist2 / (float(config.learning_rate) * T * math.log(THRESHOLD))


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    H, k, V, T, N = int(cell["H"]), int(cell["k"]), int(cell["V"]), int(cell["T"]), float(cell["N"])
    method = cell.get("variant", "truncated")
    config = pivotal_config(method, H=H, k=k, V=V, T=T, N=N)
    points, picks = dyadic_strata(T, STRATA_PER_BLOCK, seed=T + (1 if method == "vanilla" else 0))
    k_train, k_cov = jax.random.split(key)
    res = train_seeds(config, H=H, k=k, V=V, T=T, key=k_train, num_seeds=num_seeds, checkpoints=points)
    inst, learner, _, _ = pivotal_setup(H, k, V)
    cov = np.asarray(_mc_coverage(inst.truth, learner, inst.mu, res.checkpoint_thetas, k_cov, N,
                                  num_samples=int(cell["mc"])))
    half, full, blocks = prefix_averages(cov, T, picks, points)
    _, _, _, sigma2 = pivotal_setup(H, k, V)
    ones = np.ones(num_seeds)
    out = {"cov_avg": full, "cov_avg_half": half, "cov_last": cov[:, -1],
           "opt_term": optimization_term(H, T, method) * ones,
           "opt_term_half": optimization_term(H, T // 2, method) * ones,
           "eta": float(config.learning_rate) * ones, "sigma2": sigma2 * ones}
    for j in range(blocks.shape[1]):
        out[f"cov_block{j}"] = blocks[:, j]
    return out


def analyze(table, size: str) -> Analysis:
    evidence, observations, details = {}, [], {}
    H, _, _, ys = table.group_mean("H", "cov_avg")
    fit = loglog_slope(H, ys)
    details["cov_slope_H"] = fit.to_dict()
    evidence["cov_no_power_growth_in_H"] = Evidence.from_fit(
        fit, seeds=ys.shape[1], cells=[int(h) for h in H],
        details={"opt_term_at_T": [float(table.select(H=h).column("opt_term")[0]) for h in H]})
    base = table.select(H=BASE_H)
    if base.rows:
        evidence["cov_decreasing_in_T"] = Evidence.paired(
            base.column("cov_avg_half"), base.column("cov_avg"), cells=[BASE_H],
            details={"opt_term": [float(base.column("opt_term_half")[0]), float(base.column("opt_term")[0])]})
    else:
        evidence["cov_decreasing_in_T"] = Evidence.invalid(f"no cell at H = {BASE_H}", seeds=0)
    _, _, _, ys_half = table.group_mean("H", "cov_avg_half")
    details["cov_half_slope_H"] = loglog_slope(H, ys_half).to_dict()
    for h in H:
        rows = table.select(H=h)
        T = int(rows.column("T")[0])
        observations.append(Observation(
            f"H{int(h)}", {"T": T, "cov_avg": float(np.mean(rows.column("cov_avg"))),
                           "cov_avg_half": float(np.mean(rows.column("cov_avg_half"))),
                           "burn_in_steps": float(np.mean(rows.column("cov_avg"))) * T,
                           "cov_last": float(np.mean(rows.column("cov_last"))),
                           "opt_term": float(rows.column("opt_term")[0]),
                           "opt_term_half": float(rows.column("opt_term_half")[0]),
                           "eta": float(rows.column("eta")[0]), "sigma2": float(rows.column("sigma2")[0])},
            "seed means; burn_in_steps = T·avg Cov (Cov ≈ 1 during the burn-in, ≈ 0 after)"))
    observations.append(Observation("cov_half_slope_H", details["cov_half_slope_H"],
                                    "slope in H of the average over t ≤ T_max/2 (reported only)"))
    return Analysis(evidence, observations, details)


def plot(table, summary, out):
    from matplotlib.figure import Figure

    from covsim.plotting import _save

    H = np.asarray(table.unique("H"), float)
    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for metric, label in (("cov_avg", "T = T_max"), ("cov_avg_half", "T = T_max/2")):
        _, mean, _, ys = table.group_mean("H", metric)
        lo, hi = np.quantile(ys, [1 / 16, 15 / 16], axis=1)
        fit = summary.details.get("cov_slope_H" if metric == "cov_avg" else "cov_half_slope_H")
        text = f" (slope {fit['slope']:.2f})" if fit and fit.get("valid") else ""
        line, = ax.plot(H, mean, "o-", label=f"iterate average, {label}{text}")
        ax.fill_between(H, np.maximum(lo, mean / 1000), np.maximum(hi, mean / 1000), color=line.get_color(), alpha=0.2)
    h0 = H[0]
    ax.plot(H, np.mean(table.select(H=h0).column("cov_avg")) * (H / h0) ** POWER_SLOPE, "k--",
            label=f"slope {POWER_SLOPE} (the cap)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="horizon H", ylabel="(1/T) Σ Cov_4(π_θt)", title="iterate-averaged Cov vs H (band: 1/16–15/16 seeds)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    blocks = sorted(int(c[len("cov_block"):]) for c in table.columns if c.startswith("cov_block"))
    mid = np.asarray([1.5 * 2**j for j in blocks])
    for h in table.unique("H"):
        rows = table.select(H=h)
        vals = np.asarray([rows.column(f"cov_block{j}") for j in blocks])  # (J, S)
        mean = vals.mean(axis=1)
        lo, hi = np.quantile(vals, [1 / 16, 15 / 16], axis=1)
        line, = ax2.plot(mid, mean, "o-", ms=3, label=f"H = {h}")
        ax2.fill_between(mid, lo, hi, color=line.get_color(), alpha=0.2)
    T = int(table.rows[0]["T"])
    ax2.axvline(T // 2, color="gray", ls=":", label="T_max/2")
    ax2.set_xscale("log")
    ax2.set(xlabel="iterate t (dyadic block mid-points)", ylabel="Cov_4(π_θt), block mean",
            title=f"burn-in: Cov ≈ 1 until θ_0 passes θ_0*(H) ∝ log H ({table.rows[0].get('variant', '')})")
    ax2.title.set_fontsize(9)
    ax2.legend(fontsize=7)
    ax2.grid(True, which="both", alpha=0.3)
    return [_save(fig, out / "cov_avg_vs_H.png")]


CHECK = Check(
    name="distillation",
    claim="Truncated (distillation) SGD on pivotal_tokens, past the optimization term's vacuity (T ≥ 2^16): the "
          "iterate-averaged Cov_4 grows at most like the log H burn-in (slope ≤ 0.3 in H) and decreases in T.",
    reference="arXiv 2510.15020 v2, Thm 6.2, Eqs. 24-26, App. I.7 (ICLR Thm G.2)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("untruncated vanilla SGD at its own theorem step η = min{1/(2HB²), √(2/(σ⋆²T))} (THEORY §6.6): "
                    "its burn-in lasts ≈ 2H/log N steps, so the averaged Cov_4 grows ∝ H (the B²H/T term) and the "
                    "slope cap fails", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 8, "full": 256},
    paired_over=("H",),
)
