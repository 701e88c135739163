r"""Simple tournament (v2 Thm 6.3): the pick's coverage, on adversarial classes and on Figure 1 checkpoints.

Claim (arXiv 2510.15020 v2, Eqs. 28–29, Thm 6.3 (ICLR: Thm 6.2); THEORY.md §7.1): for any
finite class Π and N ≥ 1, a ∈ [0, 1], w.p. ≥ 1 − δ the simple tournament's pick π̂ has
Cov_{N^{1+a}}(π̂) ≲ min_π Cov_{N^a}(π) + N^{a−1} + log(|Π|/δ)/n.

Part 1 — Thm 6.3 itself, on coverage, exact ([project] adversarial class, one prompt, H = 1,
15 tokens; tournament level N = 1024, N′ = N^a = 2, so a = 0.1 and the pick's level is
N·N′ = 2048). Tokens: 0 bulk, 1 f (π_D-mass q_f = 0.9/(2N)), 2 b (ε_b = q_f/3), 3.. rare
tokens j (ε_j = 0.03·2^{−j}, j < 12). Candidates (|Π| = 15):

- π⋆ — π_D with every non-bulk token ×1.5 (Cov_2(π⋆) = 0, so min_π Cov_{N′}(π) = 0);
- π′ — a far-off rival with mass 0.999 on f: π′/π⋆ ≥ N and π′/π_j ≥ N on f, so it covers them on
  a π_D-mass q_f (the source of the N^{a−1} term, THEORY §7.1);
- π_b — π_D with b divided by 1e4 and f raised to 0.05 (immune to π′): Cov_2048(π_b) = ε_b;
- π_j — π_D with rare token j divided by 1e4: Cov_2048(π_j) = ε_j (missing-mass candidates).

While f is unseen (n ≲ 1/q_f ≈ 2300) every candidate whose token is unseen scores 0 and the
tie-break (held-out likelihood) takes the largest unseen ε_j: excess coverage ≈ c/n. Later
π_b wins (score ≈ ε_b < q_f): a floor ε_b = 1.5e-4 ≤ N^{a−1} = 2e-3. Coverage of every
candidate is exact (:func:`covsim.coverage`); held-out samples are nested across n (paired).

Part 2 — Figure 1 checkpoints (``theory_checks._figure1``: the continuum ``mode_tradeoff``,
CONSTRUCTIONS.md §11): the tournament at level N/2 (Pass@N is paired with Cov_{N/2}, THEORY
§4.3) against the min-KL (oracle) and min-CE (held-out likelihood) picks, 2048 held-out samples.
Thm 6.3 bounds coverage, not Pass@N: these rules test the Figure 1 picture (the pick's
Pass@8 ≈ 1.00 against ≈ 0.96 for min-KL), a project reading of it.

Declared rules:

- ``explicit_bound_n{n}`` [probability_at_least 1 − δ = 0.9], n ∈ {256, 1024, 4096, 16384}:
  the explicit finite-class form ([project], THEORY §7.1)
  Cov_{N·N′}(π̂) ≤ 5·min_π Cov_{N′}(π) + 4N′/N + 32·log(4|Π|/δ)/n holds, one trial per
  independent held-out sample (bound 0.81, 0.21, 0.058, 0.020 < 1: it bites);
- ``excess_slope`` [band (−1.35, −0.65)]: log–log slope in n of the mean excess
  Cov_{N^{1+a}}(π̂) − min_π Cov_{N^a}(π) over n ∈ [32, 512] (before the floor; ≲ form);
- ``pass{N}_tour_vs_minkl`` / ``pass{N}_tour_vs_mince`` [paired ≥ 0], N ∈ {4, 8, 12}:
  Pass@N(tournament at level N/2) − Pass@N(min-KL pick / min-CE pick), paired by seed.

Control (``variant="scrambled"``): the tournament's scores dealt to the candidates in a random
order before the argmin — a selection rule that ignores what the scores say — on the same
cells; it picks far-off or early candidates, so the slope and the Pass@N rules fail.

Finding (quick, 16 seeds; measured): Part 1 holds — the explicit bound holds on 128/128 samples
at each n (actual/bound ≤ 0.019: the constants 5, 4, 32 leave ≥ 50× slack even on this
adversarial class), the excess falls with slope −0.98 [−1.06, −0.91] on n ∈ [32, 512] and
stops at the π_b floor 1.4e-4 ≤ N^{a−1} = 2e-3. Part 2 *fails* at N = 4 and N = 8:

- N = 4: Pass@4 rises along the whole trajectory (reference 0.80 at t = 50 → 0.92 at t = 5e3),
  so the last checkpoint — the min-KL and min-CE pick — is also the Pass@4-best one; the
  level-2 tournament picks t ≈ 300 (its Cov_2 is 0.45 against 0.09 at the end: at level 2 the
  guarantee's N^{a−1} ≥ ½ term leaves it unconstrained), Pass@4 0.881 against 0.919.
- N = 8: the level-4 tournament picks t ≈ 30 (Pass@8 0.932) rather than t ≈ 300 (0.970, the
  best checkpoint, which the level-2 tournament does pick); min-KL ends at 0.947, so the gap is
  −0.014. The pick's Cov_4 is 0.18 against 0.08 for min-KL: Thm 6.3 at level N^{1+a} = 4 only
  gives Cov_4(π̂) ≲ min_π Cov_{4^a}(π) + 4^{a−1}, and 4^{a−1} ≥ ¼ exceeds every coverage
  difference at stake (≤ 0.1), so the theorem does not force this pick; the loss is consistent
  with it. Thm 6.3 bounds coverage, not Pass@N, and nothing in THEORY implies these two rules.
- N = 12 holds: the level-6 tournament picks t ≈ 50, Pass@12 0.983 against 0.957 for min-KL
  (+0.026) — the Figure 1 picture (≈ 1.00 against ≈ 0.96). The fixed level 8 (CONSTRUCTIONS
  §11) picks t ≈ 50 too: Pass@8 0.946 ≈ min-KL's 0.947 (observation ``pass8_means``).

``--full``: 20 000 SGD steps, n up to 65 536, 64 seeds.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim import bounds
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.stats import loglog_slope
from covsim.experiments.sharding import shard_seeds
from theory_checks import _figure1 as f1

PASS_N = f1.PASS_N
FIXED_LEVEL = 8.0
"""Also recorded: the tournament at the fixed level 8 of CONSTRUCTIONS.md §11 (observation)."""

N_LEVEL, N_PRIME, DELTA = 1024.0, 2.0, 0.1
A = math.log(N_PRIME) / math.log(N_LEVEL)
NUM_RARE, SUPPRESS = 12, 1e4
REPS = 8
"""Independent held-out samples per seed row in the adversarial cells."""

SLOPE_REGIME = (32, 512)
EXPLICIT_N = (256, 1024, 4096, 16384)
SIZES = {
    "tiny": dict(num_steps=300, n=(32, 128, 512, 1024)),
    "quick": dict(num_steps=5000, n=(32, 64, 128, 256, 512, 1024, 4096, 16384)),
    "full": dict(num_steps=20000, n=(32, 64, 128, 256, 512, 1024, 2048, 4096, 16384, 65536)),
}

_THM = "THEORY §7.1 (v2 Thm 6.3)"
RULES = (
    *(Rule(f"explicit_bound_n{n}", "probability_at_least",
           f"fraction of independent held-out samples (n = {n}) on which Cov_{{N·N'}}(pick) <= the "
           "explicit finite-class bound", 1 - DELTA,
           regime=f"adversarial class, N = {N_LEVEL:g}, N' = {N_PRIME:g}, |Π| = 15, n = {n}",
           theory=f"{_THM} [project] explicit form: w.p. >= 1 - δ, Cov_{{N·N'}}(π̂) <= "
                  "5·min_π Cov_{N'}(π) + 4N'/N + 32·log(4|Π|/δ)/n",
           bound="5·min_π Cov_{N'}(π) + 4N'/N + 32·log(4|Π|/δ)/n")
      for n in EXPLICIT_N),
    Rule("excess_slope", "band",
         "log-log slope in n of the mean excess Cov_{N^{1+a}}(pick) - min_π Cov_{N^a}(π)",
         (-1.35, -0.65), regime=f"adversarial class, n in [{SLOPE_REGIME[0]}, {SLOPE_REGIME[1]}] "
                                "(before the floor)",
         theory=f"{_THM}: Cov_{{N^{{1+a}}}}(π̂) ≲ min_π Cov_{{N^a}}(π) + N^{{a-1}} + log(|Π|/δ)/n"),
    *(Rule(f"pass{n:g}_tour_vs_{base}", "paired",
           f"Pass@{n:g}(tournament at level {n / 2:g}) - Pass@{n:g}({label} pick), paired by seed", 0.0,
           regime="Figure 1 checkpoints (continuum mode_tradeoff), 2048 held-out samples",
           theory="THEORY §9 row '7.1': 'tournament pick has Pass@N >= the min-KL pick' (Fig. 1)")
      for n in PASS_N for base, label in (("minkl", "min-KL"), ("mince", "min-CE"))),
)


# ---------------------------------------------------------------------------
# the adversarial class


def _normalized(weights):
    weights = np.asarray(weights, float)
    return weights / weights.sum()


@lru_cache(maxsize=1)
def candidate_laws():
    """(π_D log-probs (V,), candidates' log-probs (15, V), names) of the adversarial class."""
    q_f = 0.9 / (2 * N_LEVEL)
    eps_b = q_f / 3
    rare = 0.03 * 2.0 ** -np.arange(NUM_RARE)
    probs = np.concatenate([[0.0, q_f, eps_b], rare])
    probs[0] = 1.0 - probs.sum()
    star = probs.copy()
    star[1:] *= 1.5
    far = probs * 0.001 / (1 - q_f)
    far[1] = 0.999
    pi_b = probs.copy()
    pi_b[2] /= SUPPRESS
    pi_b[1] = 0.05
    laws = [_normalized(star), _normalized(far), _normalized(pi_b)]
    names = ["pi_star", "pi_far", "pi_b"]
    for j in range(NUM_RARE):
        w = probs.copy()
        w[3 + j] /= SUPPRESS
        laws.append(_normalized(w))
        names.append(f"pi_rare{j}")
    return np.log(probs), np.log(np.stack(laws)), tuple(names)


@lru_cache(maxsize=1)
def exact_coverages():
    """(Cov_{N·N′}, Cov_{N′}) of every candidate, exact (:func:`covsim.coverage`)."""
    truth_lp, cand_lp, _ = candidate_laws()
    truth = covsim.TabularModel(jnp.asarray(truth_lp)[None, None, None, :], 1)
    mu = jnp.ones(1)
    levels = jnp.asarray([N_LEVEL * N_PRIME, N_PRIME])
    covs = np.stack([np.asarray(covsim.coverage(truth, covsim.TabularModel(jnp.asarray(lp)[None, None, None, :], 1),
                                                mu, levels)) for lp in cand_lp])
    return covs[:, 0], covs[:, 1]


def explicit_bound(n):
    """The explicit finite-class bound at sample size n (THEORY §7.1, [project])."""
    _, cov_prime = exact_coverages()
    return float(bounds.simple_tournament_explicit(float(cov_prime.min()), N_LEVEL, N_PRIME,
                                                   len(cov_prime), float(n), DELTA))


def count_tournament(counts, cand_lp, level):
    r"""The simple tournament (THEORY §7.1) on a one-prompt, H = 1 class, from token counts.

    With one prompt and H = 1 a held-out sample is its token counts c_y, and
    score_j = max_k (1/n) Σ_y c_y 1{log π_k(y) − log π_j(y) ≥ log N} — the same numbers
    :func:`covsim.selection.tournament` computes from the (m, n) log-likelihoods (ties within
    1e-9 nats counted; score ties → highest held-out log-likelihood, then lowest index; the
    tests check the two agree). Counts make n a traced value: one compiled function for all n.
    Returns ``(index, scores)``.
    """
    n = jnp.sum(counts)
    diff = cand_lp[:, None, :] - cand_lp[None, :, :]  # [k, j, y]
    covers = diff >= jnp.log(level) - 1e-9
    scores = jnp.max(jnp.einsum("kjy,y->kj", covers.astype(counts.dtype), counts), axis=0) / n
    mean_ll = jnp.einsum("jy,y->j", jnp.where(counts > 0, cand_lp, 0.0), counts) / n
    tied = scores == jnp.min(scores)
    best = jnp.max(jnp.where(tied, mean_ll, -jnp.inf))
    return jnp.argmax(tied & (mean_ll == best)), scores


@partial(jax.jit, static_argnames=("n_max", "scramble"))
def _adversarial_picks(key, truth_lp, cand_lp, n, *, n_max, scramble):
    """Picks for REPS samples of size n, each the first n of n_max tokens drawn from π_D (nested in n)."""
    def one(k):
        k_data, k_perm = jax.random.split(k)
        cdf = jnp.cumsum(jnp.exp(truth_lp))
        y = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(k_data, (n_max,)), side="right"),
                        truth_lp.shape[0] - 1)  # inverse-CDF draws from π_D
        counts = jnp.zeros(truth_lp.shape[0]).at[y].add((jnp.arange(n_max) < n).astype(truth_lp.dtype))
        index, scores = count_tournament(counts, cand_lp, N_LEVEL)
        if scramble:
            index = jax.random.permutation(k_perm, scores.shape[0])[jnp.argmin(scores)]
        return index

    return jax.vmap(one)(jax.random.split(key, REPS))


def _adversarial_cell(cell, key, num_seeds):
    truth_lp, cand_lp, _ = candidate_laws()
    cov_pick_level, cov_prime = exact_coverages()
    n_max = int(cell["n_max"])
    keys = shard_seeds(jax.random.split(key, num_seeds))
    idx = np.asarray(jax.vmap(lambda k: _adversarial_picks(
        k, jnp.asarray(truth_lp), jnp.asarray(cand_lp), jnp.asarray(int(cell["n"])), n_max=n_max,
        scramble=cell["variant"] == "scrambled"))(keys))  # (S, REPS)
    cov = cov_pick_level[idx]
    bound = explicit_bound(cell["n"])
    out = {"excess_mean": (cov - cov_prime.min()).mean(axis=1),
           "held": (cov <= bound + 1e-12).sum(axis=1).astype(float),
           "reps": np.full(num_seeds, float(REPS)),
           "bound": np.full(num_seeds, bound),
           "max_ratio": (cov / bound).max(axis=1)}
    for c in range(len(cov_prime)):
        out[f"picked{c}"] = (idx == c).sum(axis=1).astype(float)
    return out


# ---------------------------------------------------------------------------
# Figure 1 checkpoints


def _levels():
    return tuple(sorted({n / 2 for n in PASS_N} | {FIXED_LEVEL}))


def _checkpoint_cell(cell, key, num_seeds):
    checkpoints = f1.checkpoints_for(int(cell["num_steps"]))
    key_train, key_heldout = jax.random.split(key)
    thetas = f1.trajectories(key_train, num_seeds, num_steps=cell["num_steps"], checkpoints=checkpoints)
    metrics = f1.checkpoint_metrics(thetas)
    passes = np.asarray(metrics["pass"])  # (S, C, len(PASS_N))
    covs = np.asarray(metrics["cov"])
    chosen = f1.picks(thetas, jax.random.split(key_heldout, num_seeds), levels=_levels(),
                      scramble=cell["variant"] == "scrambled")
    steps = np.asarray(checkpoints)
    seeds = np.arange(num_seeds)
    out = {}
    for rule, idx in chosen.items():
        out[f"step_{rule}"] = steps[idx].astype(float)
        for j, n in enumerate(PASS_N):
            out[f"pass{n:g}_{rule}"] = passes[seeds, idx, j]
        for j, level in enumerate(f1.COV_N):
            out[f"cov{level:g}_{rule}"] = covs[seeds, idx, j]
    for j, n in enumerate(PASS_N):
        out[f"pass{n:g}_best"] = passes[:, :, j].max(axis=1)
    return out


# ---------------------------------------------------------------------------
# the check


def grid(size: str, variant: str = "main") -> list[dict]:
    n_max = max(SIZES[size]["n"])
    cells = [dict(kind="adversarial", n=int(n), n_max=n_max, num_steps=0, variant=variant) for n in SIZES[size]["n"]]
    if size != "tiny":  # tiny (the test suite) runs the adversarial class only: no SGD trajectories
        cells.append(dict(kind="checkpoints", n=f1.HELDOUT, n_max=0, num_steps=SIZES[size]["num_steps"],
                          variant=variant))
    return cells


def control_grid(size: str) -> list[dict]:
    return grid(size, "scrambled")


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    if cell["kind"] == "checkpoints":
        return _checkpoint_cell(cell, key, num_seeds)
    return _adversarial_cell(cell, key, num_seeds)


def analyze(table, size: str) -> Analysis:
    evidence, obs, details = {}, [], {}
    adv = table.select(kind="adversarial")
    if len(adv):
        ns = sorted(int(n) for n in adv.unique("n"))
        for n in EXPLICIT_N:
            if n not in ns:
                continue
            sub = adv.select(n=n)
            held = int(sub.column("held").astype(float).sum())
            trials = int(sub.column("reps").astype(float).sum())
            bound = float(sub.column("bound").astype(float)[0])
            evidence[f"explicit_bound_n{n}"] = Evidence.trials(
                held, trials, bound_values=[bound],
                details={"max_actual_over_bound": float(sub.column("max_ratio").astype(float).max())})
        in_regime = [n for n in ns if SLOPE_REGIME[0] <= n <= SLOPE_REGIME[1]]
        if len(in_regime) >= 2:
            y = np.stack([adv.select(n=n).column("excess_mean").astype(float) for n in in_regime], axis=0)
            fit = loglog_slope(np.asarray(in_regime, float), y)
            evidence["excess_slope"] = Evidence.from_fit(fit, seeds=y.shape[1], cells=in_regime)
        means = {n: float(np.mean(adv.select(n=n).column("excess_mean").astype(float))) for n in ns}
        details["excess_mean"] = means
        details["bound"] = {n: explicit_bound(n) for n in ns}
        obs.append(Observation("excess_floor", [means[ns[-1]], N_LEVEL ** (A - 1)],
                               f"[mean excess at n = {ns[-1]}, N^(a-1)]: the floor the ≲ form allows"))
        obs.append(Observation("explicit_slack", {n: float(np.max(adv.select(n=n).column("max_ratio").astype(float)))
                                                  for n in ns}, "max over samples of actual / explicit bound"))
    cp = table.select(kind="checkpoints")
    if len(cp):
        for n in PASS_N:
            tour = cp.column(f"pass{n:g}_tour{n / 2:g}").astype(float)
            for base in ("minkl", "mince"):
                evidence[f"pass{n:g}_tour_vs_{base}"] = Evidence.paired(tour, cp.column(f"pass{n:g}_{base}").astype(float))
            obs.append(Observation(f"pass{n:g}_means", {r: float(np.mean(cp.column(f"pass{n:g}_{r}").astype(float)))
                                                       for r in [f"tour{lv:g}" for lv in _levels()] + ["minkl", "mince", "best"]},
                                   f"mean Pass@{n:g} of each pick (and of the best checkpoint)"))
        obs.append(Observation("pick_steps", {r: float(np.median(cp.column(f"step_{r}").astype(float)))
                                              for r in [f"tour{lv:g}" for lv in _levels()] + ["minkl", "mince"]},
                               "median checkpoint picked by each rule"))
    return Analysis(evidence, obs, details)


def plot(table, summary, out):
    from matplotlib.figure import Figure

    from covsim.plotting import _save

    paths = []
    adv = table.select(kind="adversarial")
    if len(adv):
        fig = Figure(figsize=(12.0, 4.2), layout="constrained")
        ax = fig.add_subplot(1, 2, 1)
        ns = np.asarray(sorted(int(n) for n in adv.unique("n")), float)
        y = np.stack([adv.select(n=int(n)).column("excess_mean").astype(float) for n in ns], axis=1)
        q = np.quantile(y, [1 / 16, 15 / 16], axis=0)
        ax.fill_between(ns, np.maximum(q[0], 1e-7), np.maximum(q[1], 1e-7), alpha=0.2, color="tab:blue")
        ax.plot(ns, np.maximum(y.mean(0), 1e-7), "o-", color="tab:blue", label="mean excess (band: 1/16-15/16 of seeds)")
        ax.axvspan(*SLOPE_REGIME, color="gold", alpha=0.15, label="excess_slope regime")
        ax.plot(ns, y.mean(0)[0] * ns[0] / ns, "k--", lw=0.8, label="slope -1")
        ax.axhline(N_LEVEL ** (A - 1), color="gray", ls=":", label="N^(a-1)")
        ax.set(xscale="log", yscale="log", xlabel="held-out n", ylabel="Cov_{N^{1+a}}(pick) - min Cov_{N^a}",
               title="excess_slope (adversarial class)")
        ax.legend(fontsize=7)
        ax = fig.add_subplot(1, 2, 2)
        bnd = np.asarray([float(adv.select(n=int(n)).column("bound").astype(float)[0]) for n in ns])
        frac = np.asarray([adv.select(n=int(n)).column("held").astype(float).sum()
                           / adv.select(n=int(n)).column("reps").astype(float).sum() for n in ns])
        ax.plot(ns, frac, "o-", label="fraction of samples within the explicit bound")
        ax.axhline(1 - DELTA, color="k", ls="--", label="1 - δ (rule)")
        for n in EXPLICIT_N:
            ax.axvline(n, color="gold", alpha=0.5)
        ax2 = ax.twinx()
        ax2.plot(ns, bnd, "s:", color="tab:red", label="explicit bound")
        ax2.set_yscale("log")
        ax2.set_ylabel("explicit bound (red)")
        ax.set(xscale="log", ylim=(0, 1.05), xlabel="held-out n", ylabel="fraction",
               title="explicit_bound_n* (gold: rule cells)")
        ax.legend(fontsize=7, loc="lower right")
        paths.append(_save(fig, out / "adversarial_class.png"))
    cp = table.select(kind="checkpoints")
    if len(cp):
        fig = Figure(figsize=(6.5, 4.2), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        for key, label in (("tour", "tournament (level N/2)"), ("minkl", "min-KL"), ("mince", "min-CE"),
                           (f"tour{FIXED_LEVEL:g}", f"tournament (level {FIXED_LEVEL:g})")):
            vals = [cp.column(f"pass{n:g}_tour{n / 2:g}" if key == "tour" else f"pass{n:g}_{key}").astype(float)
                    for n in PASS_N]
            q = np.quantile(np.stack(vals), [1 / 16, 15 / 16], axis=1)
            ax.errorbar(PASS_N, [v.mean() for v in vals], yerr=[np.mean(vals, 1) - q[0], q[1] - np.mean(vals, 1)],
                        fmt="o-", capsize=3, label=label)
        ax.set(xlabel="N", ylabel="Pass@N of the pick (mean; bars 1/16-15/16)",
               title="pass*_tour_vs_*: Figure 1 checkpoints")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "pass_vs_N.png"))
    return paths


CHECK = Check(
    name="tournament",
    claim="The simple tournament's pick satisfies the explicit finite-class coverage bound w.p. >= 1 - δ "
          "on an adversarial class, its excess coverage falls like 1/n before the floor, and on Figure 1 "
          "checkpoints it has Pass@N >= the min-KL and min-CE picks (N = 4, 8, 12).",
    reference="arXiv 2510.15020 v2, Eqs. 28-29, Thm 6.3 (ICLR: Thm 6.2), App. C.2",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("scrambled selection score: the tournament's scores dealt to the candidates in a "
                    "random order before the argmin, so the pick ignores coverage (slope and Pass@N "
                    "rules fail)", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 16, "full": 64},
    paired_over=("n", "kind", "num_steps", "n_max"),
)
