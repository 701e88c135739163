r"""Misspecification: MLE and min-KL pick the worse-coverage model, the tournament does not.

Claim (arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2); THEORY.md §5.9, §7, §9 row "5.9 / 7";
CONSTRUCTIONS.md §8): on ``misspecified_pair`` (α = ½, M = 1e4, p = α²/(32 log M) ≈ 8.5e-4) the
MLE over {π₁, π₂} returns π₂ with probability ≥ ¼ at every n, so its Cov_N stays ≥ p/8 (in
fact → p/2: Cov_N(π₂) = p/2 exactly for e^α < N ≤ M, Cov_N(π₁) = 0), and the oracle min-KL
rule always returns π₂; the simple tournament at level N = 4 returns π₁ (Cov_N = 0) as soon as
a (−, 1) sample exists, so its coverage goes to 0 once n ≫ 2/p ≈ 2.4e3.

Data are nested across n: each seed draws n_max samples once and the cell at n uses the first
n (``paired_over = ("n",)``), so the curves in n are paired.

Rules (declared before any run):

1. ``mle_picks_pi2`` [probability ≥ ¼]: P(MLE = π₂), exact one-sided binomial test in the cell
   of the grid where the observed frequency is lowest (the theorem says "for every n").
2. ``mle_coverage_stuck`` [floor ¼]: E Cov_N(MLE)/(p/2) at the largest n (≥ 20/p), Student-t CI:
   the MLE's coverage does not shrink with n (P ≥ ¼ ⇒ E Cov_N ≥ p/8).
3. ``minkl_picks_pi2`` [zero violations]: min-KL picks π₂ with Cov_N = p/2 (to 1e-12) in every seed.
4. ``tournament_picks_pi1`` [zero violations]: every (seed, n) with N(−, 1) ≥ 1 has the tournament
   pick π₁ (CONSTRUCTIONS §8: Ĉov_N(π₂‖π₁) = 0 always, Ĉov_N(π₁‖π₂) = N(−, 1)/n).
5. ``tournament_coverage_vanishes`` [cap 0.05]: E Cov_N(tournament)/(p/2) at the largest n
   (≥ 20/p, where the exact value is at most (1 − p/2)^n ≤ e^{−10}).
6. ``mle_closed_form`` [zero violations]: :func:`covsim.fit.fit_mle_finite` agrees with the
   closed-form count rule of CONSTRUCTIONS §8 in every (seed, n).

Negative control (``variant = "mle_choice"``): the "tournament" slot returns the MLE's choice
(the selection rule the claim says fails). It picks π₂ with probability → 1 although (−, 1)
samples exist, so rules 4 and 5 must fail.

``--full`` adds n = 30, 300 and 1024 seeds.

Pipeline: :func:`covsim.sample`, :func:`covsim.fit.fit_mle_finite` (MLE),
:func:`covsim.selection.heldout_logliks` + :func:`covsim.selection.tournament`,
:func:`covsim.selection.select_min_kl`, exact :func:`covsim.coverage`, the closed-form MLE rule
:func:`covsim.instances.selection.misspecified_mle_prefers_pi2`.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.fit import fit_mle_finite
from covsim.instances.selection import MINUS, PLUS, misspecified_mle_prefers_pi2, misspecified_pair
from covsim.selection import heldout_logliks, select_min_kl, tournament

ALPHA, M = 0.5, 1e4
LEVEL = 4.0  # tournament / coverage level, e^α < N ≤ M
SIZES = {
    "tiny": (10, 1000, 30000),
    "quick": (10, 100, 1000, 3000, 10000, 30000, 100000),
    "full": (10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000),
}
VARIANTS = ("tournament", "mle_choice")
TOUR_CAP = 0.05


@lru_cache(maxsize=1)
def instance():
    return misspecified_pair(alpha=ALPHA, M=M)


@lru_cache(maxsize=1)
def exact_picks():
    """(exact Cov_N of (π₁, π₂), the min-KL index): data-free, computed once."""
    inst = instance()
    covs = jnp.stack([covsim.coverage(inst.truth, c, inst.mu, LEVEL) for c in inst.candidates])
    kl_index, _ = select_min_kl(list(inst.candidates), inst.truth, inst.mu)
    return covs, kl_index


@partial(jax.jit, static_argnames=("n", "n_max", "variant"))
def _one_seed(key, truth, mu, candidates, covs, kl_index, *, n, n_max, variant="tournament"):
    # the instance enters as arguments (not closed-over constants, which XLA would fold)
    x, y = covsim.sample(truth, mu, n_max, key=key)  # nested: the first n
    x, y = x[:n], y[:n]
    _, mle_index = fit_mle_finite(candidates, x, y, return_index=True)
    if variant == "tournament":
        tour_index, _ = tournament(heldout_logliks(list(candidates), x, y), LEVEL)
    else:  # control: the selection slot returns the MLE's choice
        tour_index = mle_index
    counts = jnp.zeros((2, 2)).at[x, y[:, 0]].add(1.0)
    closed_form = misspecified_mle_prefers_pi2(counts, alpha=ALPHA, M=M)
    return {
        "mle_pi2": (mle_index == 1).astype(float),
        "tour_pi2": (tour_index == 1).astype(float),
        "minkl_pi2": (kl_index == 1).astype(float),  # data-free: the oracle rule
        "cov_mle": covs[mle_index],
        "cov_tour": covs[tour_index],
        "cov_minkl": covs[kl_index],
        "mle_closed_form_mismatch": (closed_form != (mle_index == 1)).astype(float),
        "minus_one_count": counts[MINUS, 1],
        "plus_count": counts[PLUS].sum(),
    }


def _cells(size: str, variant: str) -> list[dict]:
    return [dict(n=n, variant=variant, n_max=max(SIZES[size])) for n in SIZES[size]]


def grid(size: str) -> list[dict]:
    return _cells(size, "tournament")


def control_grid(size: str) -> list[dict]:
    return _cells(size, "mle_choice")


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    inst = instance()
    keys = jax.random.split(key, num_seeds)
    run = partial(_one_seed, n=int(cell["n"]), n_max=int(cell.get("n_max", cell["n"])),
                  variant=cell.get("variant", "tournament"))
    args = (inst.truth, inst.mu, tuple(inst.candidates), *exact_picks())
    out = jax.lax.map(lambda k: run(k, *args), keys, batch_size=16)
    return {k: np.asarray(v, float) for k, v in out.items()}


RULES = (
    Rule("mle_picks_pi2", "probability_at_least",
         "P(MLE over {π₁, π₂} = π₂) in the cell where its observed frequency is lowest", 0.25,
         regime="every n of the grid (the lowest-frequency cell)",
         theory="THEORY §5.9 (Prop. E.1): a class {π₁, π₂} ... where the MLE returns π₂ w.p. >= 1/4 for every n"),
    Rule("mle_coverage_stuck", "floor",
         "E Cov_4(MLE pick) / (p/2)", 0.25,
         regime="largest n of the grid (>= 20/p)",
         theory="THEORY §9 row 5.9 / 7: MLE and min-KL pick π₂ (Cov = p/2, not shrinking with n); "
                "§5.9: Cov_N(π₂) = p/2 for e^α < N <= M"),
    Rule("minkl_picks_pi2", "zero_violations",
         "seeds where min-KL does not pick π₂ with Cov_4 = p/2 (to 1e-12)", None,
         regime="every cell",
         theory="THEORY §9 row 5.9 / 7: MLE and min-KL pick π₂ (Cov = p/2, not shrinking with n)"),
    Rule("tournament_picks_pi1", "zero_violations",
         "(seed, n) with N(-, 1) >= 1 where the tournament (N = 4) does not pick π₁", None,
         regime="every cell",
         theory="THEORY §9 row 5.9 / 7: tournament picks π₁ once n ≫ 2/p (CONSTRUCTIONS §8: "
                "it picks π₁ whenever some (-, 1) sample exists)"),
    Rule("tournament_coverage_vanishes", "cap",
         "E Cov_4(tournament pick) / (p/2)", TOUR_CAP,
         regime="largest n of the grid (>= 20/p, where (1 - p/2)^n <= e^-10)",
         theory="THEORY §9 row 5.9 / 7: tournament picks π₁ once n ≫ 2/p; §5.9: Cov_N(π₁) = 0 for N > e^α"),
    Rule("mle_closed_form", "zero_violations",
         "(seed, n) where fit_mle_finite disagrees with the closed-form count rule", None,
         regime="every cell",
         theory="THEORY §5.9 / CONSTRUCTIONS §8: π̂ = π₂ iff L̂(π₂) - L̂(π₁) > 0 (closed form in the counts)"),
)


def analyze(table, size: str) -> Analysis:
    inst = instance()
    p = inst.info["p"]
    target = p / 2
    ns = np.asarray(table.unique("n"), float)
    details = {"p": p, "p_over_2": target, "two_over_p": 2 / p, "n": ns.tolist()}
    evidence = {}
    # 1. P(MLE = π₂) >= 1/4 at every n: the cell with the lowest frequency
    _, freq, _, mle_per = table.group_mean("n", "mle_pi2")
    seeds = mle_per.shape[1]
    worst = int(np.argmin(freq))
    details["mle_pi2_frequency"] = freq.tolist()
    evidence["mle_picks_pi2"] = Evidence.trials(int(mle_per[worst].sum()), seeds, cells={"n": ns[worst]},
                                                details={"frequency_by_n": freq.tolist()})
    # 2. / 5. coverage at the largest n, in units of p/2
    _, cov_mle, _, cov_mle_per = table.group_mean("n", "cov_mle")
    _, cov_tour, _, cov_tour_per = table.group_mean("n", "cov_tour")
    details["cov_mle_mean"], details["cov_tour_mean"] = cov_mle.tolist(), cov_tour.tolist()
    in_regime = ns[-1] >= 20 / p
    for name, per in (("mle_coverage_stuck", cov_mle_per), ("tournament_coverage_vanishes", cov_tour_per)):
        if in_regime:
            evidence[name] = Evidence.mean(per[-1] / target, cells={"n": ns[-1]})
        else:
            evidence[name] = Evidence.invalid(f"largest n = {ns[-1]:g} < 20/p = {20 / p:.0f}", seeds=seeds)
    # 3. min-KL always π₂ with Cov = p/2
    minkl = table.column("minkl_pi2").astype(float)
    cov_minkl = table.column("cov_minkl").astype(float)
    bad = int(np.sum((minkl != 1) | (np.abs(cov_minkl - target) > 1e-12)))
    evidence["minkl_picks_pi2"] = Evidence.count(bad, minkl.size, seeds=seeds)
    # 4. a (−, 1) sample ⇒ the tournament picks π₁
    has_minus_one = table.column("minus_one_count").astype(float) >= 1
    tour_pi2 = table.column("tour_pi2").astype(float) == 1
    evidence["tournament_picks_pi1"] = Evidence.count(int(np.sum(has_minus_one & tour_pi2)),
                                                      int(np.sum(has_minus_one)), seeds=seeds)
    # 6. the MLE against its closed form
    mismatch = int(np.sum(table.column("mle_closed_form_mismatch").astype(float)))
    evidence["mle_closed_form"] = Evidence.count(mismatch, len(table), seeds=seeds)
    observations = [
        Observation("E Cov_4(MLE)/(p/2) by n", (cov_mle / target).tolist()),
        Observation("E Cov_4(tournament)/(p/2) by n", (cov_tour / target).tolist(),
                    "exact: at most (1 - p/2)^n once no tie rule applies"),
        Observation("(1 - p/2)^n by n", ((1 - target) ** ns).tolist()),
        Observation("P̂(tournament = π₂) by n", table.group_mean("n", "tour_pi2")[1].tolist()),
    ]
    return Analysis(evidence=evidence, observations=observations, details=details)


def plot(table, summary, out):
    from matplotlib.figure import Figure

    from covsim.plotting import Curve, loglog_figure, series_from_table

    p = instance().info["p"]
    series = [series_from_table(table, "n", "cov_mle", label="MLE"),
              series_from_table(table, "n", "cov_minkl", label="min-KL"),
              series_from_table(table, "n", "cov_tour", label=f"tournament (N = {LEVEL:g}; 0 points not drawn)")]
    ns = np.asarray(table.unique("n"), float)
    paths = [loglog_figure(out / "cov_vs_n.png", series, xlabel="n", ylabel=f"Cov_{LEVEL:g} of the pick",
                           title="misspecified_pair: MLE stuck at p/2, tournament -> 0",
                           bounds=[Curve(ns, np.full(ns.shape, p / 2), "p/2 (Prop. E.1, exact)"),
                                   Curve(ns, p / 2 * (1 - p / 2) ** ns, "(p/2)(1 - p/2)^n: tournament's exact cap"),
                                   Curve(ns, np.full(ns.shape, TOUR_CAP * p / 2), f"rule cap {TOUR_CAP:g}·p/2")])]
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for col, label in (("mle_pi2", "P̂(MLE = π₂)"), ("tour_pi2", "P̂(tournament = π₂)")):
        _, freq, se, _ = table.group_mean("n", col)
        ax.errorbar(ns, freq, yerr=2 * se, fmt="o-", ms=4, label=label + " (±2 SE)")
    ax.plot(ns, (1 - p / 2) ** ns, "--", label="(1 - p/2)^n = P(no (-, 1) sample)")
    ax.axhline(0.25, color="black", ls=":", label="1/4 (Prop. E.1: MLE at least this, every n)")
    ax.axvline(20 / p, color="gray", ls="-.", lw=0.8, label="20/p (regime of rules 2 and 5)")
    ax.set(xscale="log", xlabel="n", ylabel="fraction of seeds", ylim=(-0.03, 1.03),
           title="With-probability statements: picks as fractions of seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "picks_vs_n.png"
    fig.savefig(path, dpi=120)
    paths.append(path)
    return paths


CHECK = Check(
    name="misspecification",
    claim="On the misspecified pair, the MLE (w.p. >= 1/4 at every n) and min-KL pick π₂ (Cov_N = p/2, not "
          "shrinking with n) while the simple tournament picks π₁ once a (-, 1) sample exists, so its "
          "coverage goes to 0 once n >> 2/p.",
    reference="arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2), Thm 6.3",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("the selection slot returns the MLE's choice instead of the tournament's: it keeps "
                    "picking π₂ although (-, 1) samples exist, so its coverage stays at p/2", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 64, "full": 1024},
    paired_over=("n",),
)
