r"""Figure 1 analogue on ``mode_tradeoff``: KL falls monotonically, mid-range coverage dips then rises.

Claim (arXiv 2510.15020 v2, App. C.2 / Fig. 1; THEORY.md §8 "Figure 1", §9 row "Fig. 1", §4.3):
along a fine-tuning trajectory started from an "early-stopped" θ_1, the KL to π_D decreases
monotonically, while Cov_N for mid-range N first drops to 0 and then rises again once the
minority class is sacrificed; across checkpoints Pass@N follows Cov_{N/2} (rank correlation)
more closely than it follows KL, for the larger N.

Instance: the continuum variant of ``mode_tradeoff`` (CONSTRUCTIONS.md §11, project design;
``theory_checks._figure1``): 64 prompts with 1–2 pivotal positions, per-prompt class margins
σ(8·c(x)), c ∈ [0.3, 1], and shared-mode strengths b(x) ∈ [0.5, 2], so coverage along the
trajectory takes a continuum of values (not only 0, 0.1 and 1), and no mid-training ratio
sits within 0.05 nats of a tested level (no knife edge). Learner: online vanilla SGD,
batch 128, η = 2/(H B_v²), clipping; checkpoints on a log grid; exact KL, Cov_N, Pass@N.

Declared rules (paired over the same seeds; T_MID = 50 is the dip of the noiseless
reference for every tested level, fixed from the instance, not from the data):

- ``kl_monotone`` [zero_violations]: no significant wrong-way step — no consecutive pair of
  checkpoints whose paired 95% t-CI of KL_{t'} − KL_t lies entirely above 0;
- ``cov{N}_dips`` [paired ≥ 0.5], N ∈ {4.6, 5.7, 8, 16}: Cov_N(θ_1) − Cov_N(θ_{T_MID});
- ``cov{N}_rises`` [paired ≥ 0.01]: Cov_N(θ_T) − Cov_N(θ_{T_MID}) (T the last checkpoint);
- ``pass{N}_tracks_cov`` [paired ≥ 0], N ∈ {8, 12}: per seed, Spearman(Pass@N, −Cov_{N/2})
  − Spearman(Pass@N, −KL) over the checkpoints. (N = 4, where Figure 1 itself shows coverage
  and KL alike, is an observation.)

Control (``variant="frozen"``): the same instance and learner with the shared coordinate θ_1
boxed to 0 — a learner that cannot trade the minority mode away, so KL still falls and coverage
still dips, but nothing makes it rise: the ``rises`` rules must fail.

``--full`` runs 20 000 steps (reference: the rise completes by t ≈ 5e3) with 64 seeds.
"""

from __future__ import annotations

import math

import numpy as np

from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from theory_checks import _figure1 as f1

COV_N, U_SHAPE_N, PASS_N, T_MID = f1.COV_N, f1.U_SHAPE_N, f1.PASS_N, f1.T_MID
SIZES = {"tiny": 300, "quick": 5000, "full": 20000}
TRACK_N = (8.0, 12.0)
"""Pass@N levels of the correlation rule (Figure 1: coverage predicts the larger N better)."""

_FIG1 = "THEORY §8 Figure 1 / §9 row 'Fig. 1'"
RULES = (
    Rule("kl_monotone", "zero_violations",
         "consecutive checkpoints whose paired 95% t-CI of KL_{t'} - KL_t lies entirely above 0",
         None, regime="every consecutive checkpoint pair of the trajectory",
         theory=f"{_FIG1}: 'KL falls monotonically' (KL ↓ monotone)"),
    *(Rule(f"cov{n:g}_dips", "paired", f"Cov_{n:g}(θ_1) - Cov_{n:g}(θ_{T_MID}), paired over seeds", 0.5,
           regime=f"t = 1 and t = T_MID = {T_MID} (the reference dip)",
           theory=f"{_FIG1}: 'Cov_N dips' for mid-range N (CONSTRUCTIONS §11: 4 < N < 30)")
      for n in U_SHAPE_N),
    *(Rule(f"cov{n:g}_rises", "paired", f"Cov_{n:g}(θ_T) - Cov_{n:g}(θ_{T_MID}), paired over seeds", 0.01,
           regime=f"t = T_MID = {T_MID} and the last checkpoint T",
           theory=f"{_FIG1}: 'then rises as the minority class is sacrificed'")
      for n in U_SHAPE_N),
    *(Rule(f"pass{n:g}_tracks_cov", "paired",
           f"Spearman(Pass@{n:g}, -Cov_{n / 2:g}) - Spearman(Pass@{n:g}, -KL) over checkpoints, per seed",
           0.0, regime="all checkpoints of each seed's trajectory",
           theory="THEORY §4.3 / §8: 'coverage predicts Pass@N better for large N' (Pass@N paired "
                  "with Cov_{N/2})")
      for n in TRACK_N),
)


def grid(size: str) -> list[dict]:
    return [dict(num_steps=SIZES[size], variant="main")]


def control_grid(size: str) -> list[dict]:
    return [dict(num_steps=SIZES[size], variant="frozen")]


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    checkpoints = f1.checkpoints_for(int(cell["num_steps"]))
    thetas = f1.trajectories(key, num_seeds, num_steps=cell["num_steps"], checkpoints=checkpoints,
                             variant=cell["variant"])
    out = f1.flatten_metrics(f1.checkpoint_metrics(thetas), checkpoints)
    out["theta_shared_end"] = np.asarray(thetas[:, -1, 1], float)
    return out


def analyze(table, size: str) -> Analysis:
    evidence, obs, details = {}, [], {}
    steps, kl = f1.per_checkpoint(table, "kl")
    seeds = kl.shape[1]
    steps_d = np.diff(kl, axis=0)
    mean, lo, hi = f1.paired_t(steps_d)
    wrong = lo > 0
    evidence["kl_monotone"] = Evidence.count(int(wrong.sum()), len(steps_d), seeds=seeds,
                                             details={"step_mean": mean, "step_lo": lo})
    details["steps"] = steps
    details["kl"] = kl
    mid = int(np.flatnonzero(steps == T_MID)[0]) if T_MID in steps else None
    for n in U_SHAPE_N:
        _, cov = f1.per_checkpoint(table, "cov", n)
        details[f"cov{n:g}"] = cov
        if mid is None or mid == len(steps) - 1:
            why = f"the trajectory has no checkpoint T_MID = {T_MID} before its end"
            evidence[f"cov{n:g}_dips"] = Evidence.invalid(why, seeds=seeds)
            evidence[f"cov{n:g}_rises"] = Evidence.invalid(why, seeds=seeds)
            continue
        evidence[f"cov{n:g}_dips"] = Evidence.paired(cov[0], cov[mid])
        evidence[f"cov{n:g}_rises"] = Evidence.paired(cov[-1], cov[mid])
    for n in PASS_N:
        _, pas = f1.per_checkpoint(table, "pass", n)
        _, cov = f1.per_checkpoint(table, "cov", n / 2)
        rho_cov = f1.spearman(pas.T, -cov.T)
        rho_kl = f1.spearman(pas.T, -kl.T)
        details[f"pass{n:g}"] = pas
        details[f"rho_pass{n:g}_cov"] = rho_cov
        details[f"rho_pass{n:g}_kl"] = rho_kl
        if n in TRACK_N:
            evidence[f"pass{n:g}_tracks_cov"] = Evidence.paired(rho_cov, rho_kl)
        else:
            ok = np.isfinite(rho_cov - rho_kl)
            obs.append(Observation(f"pass{n:g}_rho_difference",
                                   float(np.mean((rho_cov - rho_kl)[ok])) if ok.any() else math.nan,
                                   f"Spearman(Pass@{n:g}, -Cov_{n / 2:g}) - Spearman(Pass@{n:g}, -KL), "
                                   "mean over seeds (Figure 1 shows no preference at N = 4)"))
        peak = int(np.argmax(pas.mean(axis=1)))
        obs.append(Observation(f"pass{n:g}_peak_vs_end",
                               [int(steps[peak]), float(pas[peak].mean()), float(pas[-1].mean())],
                               f"[checkpoint of the highest mean Pass@{n:g}, its mean, mean at the last]"))
    obs.append(Observation("kl_start_mid_end", [float(kl[0].mean()),
                                                float(kl[mid].mean()) if mid is not None else math.nan,
                                                float(kl[-1].mean())], "mean KL at t = 1, T_MID, T"))
    if "theta_shared_end" in table.columns:
        obs.append(Observation("theta_shared_end", float(np.mean(table.column("theta_shared_end").astype(float))),
                               "mean shared-mode coordinate θ_1 at the end (0 = no mode trade-off)"))
    return Analysis(evidence, obs, details)


def plot(table, summary, out):
    from matplotlib.figure import Figure

    from covsim.plotting import _save

    steps, kl = f1.per_checkpoint(table, "kl")

    def band(ax, values, color, label, marker="o"):
        q = np.quantile(values, [1 / 16, 15 / 16], axis=1)
        ax.fill_between(steps, q[0], q[1], color=color, alpha=0.2)
        ax.plot(steps, values.mean(axis=1), "-" + marker, ms=3, color=color, label=label)

    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    band(ax, kl, "k", "KL (mean; band 1/16-15/16 of seeds)")
    ax.set(xscale="log", yscale="log", xlabel="SGD iteration t", ylabel="KL(π_D‖π_t)",
           title="kl_monotone: KL along fine-tuning")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for n, color in zip(U_SHAPE_N, colors):
        band(ax, f1.per_checkpoint(table, "cov", n)[1], color, f"Cov_{n:g}")
    ax.axvline(T_MID, ls=":", color="gray", label=f"T_MID = {T_MID} (dip of the reference)")
    ax.axvline(steps[0], ls="--", color="gray", lw=0.8)
    ax.axvline(steps[-1], ls="--", color="gray", lw=0.8, label="t = 1 and T (dips / rises rules)")
    ax.set(xscale="log", xlabel="SGD iteration t", ylabel="Cov_N(π_D‖π_t)",
           title="cov*_dips / cov*_rises: mid-range coverage")
    ax.legend(fontsize=7)
    paths = [_save(fig, out / "metrics_vs_iteration.png")]

    fig = Figure(figsize=(12.0, 4.0), layout="constrained")
    for j, n in enumerate(PASS_N):
        ax = fig.add_subplot(1, len(PASS_N), j + 1)
        pas = f1.per_checkpoint(table, "pass", n)[1]
        cov = f1.per_checkpoint(table, "cov", n / 2)[1]
        tcol = np.broadcast_to(np.log10(steps)[:, None], pas.shape)
        sc = ax.scatter(cov.ravel(), pas.ravel(), c=tcol.ravel(), cmap="viridis", s=8, alpha=0.6)
        ax.set(xlabel=f"Cov_{n / 2:g} (all seeds x checkpoints)", ylabel=f"Pass@{n:g}",
               title=f"Pass@{n:g} vs Cov_{n / 2:g}" + (" (rule)" if n in TRACK_N else " (observation)"))
        top = ax.twiny()
        top.plot(kl.mean(1), pas.mean(1), "x", color="gray", ms=4)
        top.set_xscale("log")
        top.set_xlabel("KL (gray x: seed means)")
        if j == len(PASS_N) - 1:
            fig.colorbar(sc, ax=ax, label="log10 t")
    paths.append(_save(fig, out / "pass_vs_cov.png"))

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    details = summary.details
    for n, color in zip(TRACK_N, ("tab:blue", "tab:red")):
        if f"rho_pass{n:g}_cov" in details:
            d = np.asarray(details[f"rho_pass{n:g}_cov"], float) - np.asarray(details[f"rho_pass{n:g}_kl"], float)
            ax.plot(np.sort(d), np.linspace(0, 1, d.size), "-o", ms=3, color=color,
                    label=f"Pass@{n:g}: ρ(−Cov_{n / 2:g}) − ρ(−KL)")
    ax.axvline(0.0, color="k", ls="--", label="rule floor 0")
    ax.set(xlabel="per-seed difference of Spearman correlations", ylabel="empirical CDF over seeds",
           title="pass*_tracks_cov")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "rank_correlation_difference.png"))
    return paths


CHECK = Check(
    name="mode_tradeoff",
    claim="Along mode_tradeoff fine-tuning KL falls monotonically, mid-range Cov_N dips then rises, and "
          "Pass@N (N = 8, 12) ranks checkpoints like Cov_{N/2} better than like KL (Fig. 1).",
    reference="arXiv 2510.15020 v2, App. C.2, Fig. 1 (ICLR: App. D.2)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("θ_1 (the shared mode) boxed to 0: the learner cannot sacrifice the minority "
                    "class, so coverage dips but never rises again (the rises rules fail)", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 16, "full": 64},
)
