r"""Misspecification: MLE and min-KL pick the worse-coverage model, the tournament does not.

Claim (arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2); THEORY.md §5.9, §7, §9 row "5.9 / 7";
CONSTRUCTIONS.md §8): on ``misspecified_pair`` (α = ½, M = 1e4, p = α²/(32 log M)) the MLE
over {π₁, π₂} returns π₂ with probability ≥ ¼ at every n, so its Cov_N stays ≥ p/8 and
≈ p/2 for large n (Cov_N(π₂) = p/2 for e^α < N ≤ M), and the oracle min-KL rule always
returns π₂; the simple tournament at level N returns π₁ (Cov_N = 0) once a (−, 1) sample
exists, i.e. its coverage goes to 0 once n ≫ 2/p.

Bands, a priori: P̂(MLE = π₂) must not lie significantly below ¼ (binomial 99% one-sided);
E Cov_N(MLE) ≥ p/8 (within 2 SE) at every n; min-KL picks π₂ and has Cov_N = p/2 exactly;
at n ≥ 10·(2/p) the tournament's mean Cov_N ≤ (p/2)·e^{−n p/2}·(1 + 3/√S) + 1e-15 (it can only pick π₂ when no
(−, 1) sample exists, probability (1 − p/2)^n).

Pipeline: :func:`covsim.sample`, :func:`covsim.fit.fit_mle_finite` (MLE),
:func:`covsim.selection.heldout_logliks` + :func:`covsim.selection.tournament`,
:func:`covsim.selection.select_min_kl`, exact :func:`covsim.coverage`. The closed-form MLE rule
:func:`covsim.instances.selection.misspecified_mle_prefers_pi2` is a per-seed cross-check.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from covsim.experiments.stats import binom_cdf

import covsim
from covsim.experiments.check import Assertion, Check, Summary, Verdict
from covsim.experiments.stats import zero_violation_assertion
from covsim.fit import fit_mle_finite
from covsim.instances.selection import MINUS, PLUS, misspecified_mle_prefers_pi2, misspecified_pair
from covsim.selection import heldout_logliks, select_min_kl, tournament

ALPHA, M = 0.5, 1e4
LEVEL = 4.0  # tournament / coverage level, e^α < N ≤ M
SIZES = {
    "quick": (10, 100, 1000, 3000, 10000, 30000, 100000),
    "full": (10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000),
}


@lru_cache(maxsize=1)
def instance():
    return misspecified_pair(alpha=ALPHA, M=M)


@partial(jax.jit, static_argnames=("n",))
def _one_seed(key, *, n):
    inst = instance()
    candidates = inst.candidates
    x, y = covsim.sample(inst.truth, inst.mu, n, key=key)
    _, mle_index = fit_mle_finite(candidates, x, y, return_index=True)
    tour_index, _ = tournament(heldout_logliks(list(candidates), x, y), LEVEL)
    kl_index, _ = select_min_kl(list(candidates), inst.truth, inst.mu)
    covs = jnp.stack([covsim.coverage(inst.truth, c, inst.mu, LEVEL) for c in candidates])
    counts = jnp.zeros((2, 2)).at[x, y[:, 0]].add(1.0)
    closed_form = misspecified_mle_prefers_pi2(counts, alpha=ALPHA, M=M)
    return {
        "mle_pi2": (mle_index == 1).astype(float),
        "tour_pi2": (tour_index == 1).astype(float),
        "minkl_pi2": (kl_index == 1).astype(float),
        "cov_mle": covs[mle_index],
        "cov_tour": covs[tour_index],
        "cov_minkl": covs[kl_index],
        "mle_closed_form_mismatch": (closed_form != (mle_index == 1)).astype(float),
        "minus_one_count": counts[MINUS, 1],
        "plus_count": counts[PLUS].sum(),
    }


def grid(size: str) -> list[dict]:
    return [dict(n=n) for n in SIZES[size]]


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    instance()
    keys = jax.random.split(key, num_seeds)
    out = jax.lax.map(lambda k: _one_seed(k, n=int(cell["n"])), keys, batch_size=16)
    return {k: np.asarray(v, float) for k, v in out.items()}


def analyze(table, size: str) -> Summary:
    inst = instance()
    p = inst.info["p"]
    target = p / 2
    ns = np.asarray(table.unique("n"), float)
    assertions, details = [], {"p": p, "p_over_2": target, "two_over_p": 2 / p, "n": ns}
    # 1. P(MLE = π₂) >= 1/4 at every n
    worst = 1.0
    freq = []
    for n in ns:
        hits = table.select(n=n).column("mle_pi2").astype(float)
        k, s = int(hits.sum()), hits.size
        freq.append(k / s)
        worst = min(worst, float(binom_cdf(k, s, 0.25)))  # P[Bin(s, 1/4) <= k]
    details["mle_pi2_frequency"] = freq
    verdict = Verdict.FAILS if worst < 0.01 else Verdict.HOLDS
    assertions.append(Assertion("mle_picks_pi2_quarter", verdict,
                                f"P̂(MLE = π₂) over n: {np.round(freq, 3).tolist()} (≥ 1/4 required; "
                                f"smallest binomial p-value {worst:.3g})", {"frequency": freq}))
    # 2. MLE coverage stays >= p/8 and near p/2
    _, cov_mle, se_mle, _ = table.group_mean("n", "cov_mle")
    low = cov_mle + 2 * se_mle < target / 4
    details["cov_mle_mean"] = cov_mle
    verdict = Verdict.FAILS if low.any() else Verdict.HOLDS
    assertions.append(Assertion("mle_coverage_stuck", verdict,
                                f"E Cov_{LEVEL:g}(MLE)/(p/2) over n: {np.round(cov_mle / target, 3).tolist()} "
                                f"(must stay ≥ 1/4; at the largest n {cov_mle[-1] / target:.3f})", {}))
    # 3. min-KL always π₂ with Cov = p/2
    minkl = table.column("minkl_pi2").astype(float)
    cov_minkl = table.column("cov_minkl").astype(float)
    bad = int(np.sum((minkl != 1) | (np.abs(cov_minkl - target) > 1e-12)))
    assertions.append(zero_violation_assertion("minkl_picks_pi2", bad, minkl.size,
                                               what="min-KL picks π₂ with Cov_N = p/2 exactly"))
    # 4. tournament coverage -> 0 once n >> 2/p
    _, cov_tour, se_tour, per = table.group_mean("n", "cov_tour")
    details["cov_tour_mean"] = cov_tour
    large = ns >= 10 * 2 / p
    if not large.any():
        assertions.append(Assertion("tournament_coverage_vanishes", Verdict.INCONCLUSIVE,
                                    f"no n ≥ 10·2/p = {20 / p:.0f} in the grid", {}))
    else:
        s = per.shape[1]
        allowed = target * np.exp(-ns * p / 2) * (1 + 3 / math.sqrt(s)) + 3 * target / s * (ns * p < 40) + 1e-15
        exceed = large & (cov_tour > allowed)
        verdict = Verdict.FAILS if exceed.any() else Verdict.HOLDS
        assertions.append(Assertion(
            "tournament_coverage_vanishes", verdict,
            f"E Cov_{LEVEL:g}(tournament) at n ≥ {20 / p:.0f}: {cov_tour[large].tolist()} "
            f"(allowed ≤ {allowed[large].tolist()}); MLE there {cov_mle[large].tolist()}", {}))
    # 5. cross-check of the MLE against the closed-form rule
    mismatch = int(np.sum(table.column("mle_closed_form_mismatch").astype(float)))
    assertions.append(zero_violation_assertion("mle_closed_form", mismatch, len(table),
                                               what="fit_mle_finite agrees with the closed-form count rule"))
    return Summary(assertions, details)


def plot(table, summary, out):
    from covsim.plotting import Curve, loglog_figure, series_from_table

    p = instance().info["p"]
    series = [series_from_table(table, "n", "cov_mle", label="MLE"),
              series_from_table(table, "n", "cov_minkl", label="min-KL"),
              series_from_table(table, "n", "cov_tour", label=f"tournament (N = {LEVEL:g})")]
    ns = np.asarray(table.unique("n"), float)
    path = loglog_figure(out / "cov_vs_n.png", series, xlabel="n", ylabel=f"Cov_{LEVEL:g} of the pick",
                         title="misspecified_pair: MLE stuck at p/2, tournament -> 0",
                         bounds=[Curve(ns, np.full(ns.shape, p / 2), "p/2 (Prop. E.1, exact)"),
                                 Curve(ns, p / 2 * np.exp(-ns * p / 2), "(p/2)·(1 - p/2)^n ≈ tournament failure")])
    return [path]


CHECK = Check(
    name="misspecification",
    claim="On the misspecified pair, the MLE and min-KL pick π₂ (Cov_N = p/2 at every n, MLE w.p. >= 1/4) "
          "while the simple tournament's coverage goes to 0 once n >> 2/p.",
    reference="arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2), Thm 6.3",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 64, "full": 1024},
)
