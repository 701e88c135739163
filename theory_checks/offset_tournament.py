r"""Offset tournament (v2 Thm 6.4): Cov_{2N^{1+a}} of the pick is capped by log(|Π|/δ)/n, no floor.

Claim (arXiv 2510.15020 v2, Eq. 32, Thm 6.4 (ICLR: Thm G.3); THEORY.md §7.2): if a > 0,
N^{1−2a} ≥ 8 and some candidate has sup|log π_D − log π| ≤ a·log N, the offset tournament
(γ = N^a) returns π̂ with, w.p. ≥ 1 − δ, Cov_{2N^{1+a}}(π̂) ≲ log(|Π|/δ)/n — "No N^{a−1}
floor: useful at constant N", unlike the simple tournament (§7.1, Thm 6.3), whose guarantee
keeps an N^{a−1} term. The bound is a cap (≲, constant unspecified): the pick's coverage may
fall faster than 1/n, never slower.

Instance [project] (one prompt, H = 1; N = 64, a = ¼, so γ = 2√2, N^{1−2a} = 8, level
2N^{1+a} ≈ 362): tokens 0 (bulk), 1 (f, π_D(f) = 0.9/(2N)), 2 (b, ε_b = π_D(f)/3), 3..26
(24 rare tokens j with ε_j = 0.03·2^{−j/2}; the smallest, ≈ 1e-5, stays unobserved at the
largest quick n, so the pick's coverage is never identically 0). The truth is the same in every
cell. Candidates (|Π| = 3 + K, K ∈ {6, 12, 24} rare candidates: every 4th, 2nd or every rare
token):

- π⋆ — π_D with every non-bulk token up-weighted ×1.5 (sup|log ratio| ≤ log 1.5 < a log N);
- π′ — a far-off rival with mass 0.999 on f, so π′/π⋆ ≥ N on f: it out-covers every candidate
  that does not boost f, on a π_D-mass ≈ 1/(2N) — the source of the simple tournament's N^{a−1}
  term (THEORY.md §7.1, last line);
- π_b — π_D with b divided by 1e4 and f boosted to 0.05 (immune to π′), Cov = ε_b;
- π_j — π_D with rare token j divided by 1e4 (missing-mass candidates, Cov = ε_j).

The simple tournament (level N) prefers π_b at every large n: a floor at ε_b ≈ 2.3e-3. The
offset term neutralizes π′ (its on-policy coverage under each candidate is as large as its
held-out coverage), so the offset pick has Cov ≈ the largest unobserved ε_j ≈ c/n.

Data are nested across n: each seed draws n_max held-out samples and n_max·S generations
per candidate once and uses the first n, so cells differing in n or K share the same draws
(``paired_over = ("n", "num_rare")``), and slope CIs come from a bootstrap that resamples
seeds jointly across n.

Rules (declared before any run; every statistic over the cells of the run):

1. ``offset_mean_rate_cap`` [cap −0.75]: for each K, the log–log slope in n of
   E Cov_{2N^{1+a}}(offset pick); the largest over K (CI: largest lower and upper ends), so
   the cap holds only if it holds at every |Π|.
2. ``offset_quantile_rate_cap`` [cap −0.75]: the same for the (1−δ)-quantile over seeds,
   δ ∈ {0.5, 0.25, 0.1}, largest over (K, δ) — the with-probability form of the cap.
3. ``offset_below_simple`` [paired ≥ 0]: at the largest n, the paired difference
   Cov(simple pick) − Cov(offset pick) per seed; smallest over K (no floor vs the N^{a−1} floor).
4. ``simple_explicit_bound`` [probability ≥ 0.9]: THEORY §7.1's explicit finite-class form for
   the simple tournament run alongside, at (N, N′) = (64, 2), δ = 0.1: P[Cov_{128}(π̂_simple) ≤
   5·min_π Cov_2(π) + 4N′/N + 32·log(4|Π|/δ)/n] ≥ 1 − δ, in the cell (largest n, largest K)
   (one cell: cells share draws, so only one cell's seeds are independent trials). The bound
   (0.125 + 32 log(4|Π|/δ)/n ≈ 0.18 there) bites.
5. ``thm_hypotheses`` [zero violations, exact]: N^{1−2a} ≥ 8, and π⋆ ∈ Π has
   sup|log π_D − log π⋆| ≤ a·log N.

Observations: C(K, δ) = max_n n·q_{1−δ}/log(|Π|/δ) (the constant the data imply in the
log(|Π|/δ)/n form; its stability across K and δ is what the log(|Π|/δ) dependence predicts —
the instance's coverage grows with the density of rare candidates, so it is reported, not
ruled), the ratio of E Cov between the largest and smallest K, and the simple tournament's slope.

Negative control (``variant = "no_offset"``): the same pipeline with the on-policy term
removed (γ = 0), i.e. the simple tournament at level N. π′ out-covers every π_j and π⋆ on f,
so it picks π_b: a floor at ε_b, slope ≈ 0 — rules 1–2 must fail.

``--full`` adds n = 8192, 16384, K = 12 and 1024 seeds.

Pipeline: H = 1 and one prompt, so both tournaments are functions of token counts
(:func:`count_space_picks`: held-out counts of the first n draws, generation counts of the first
n·S generations of each candidate, drawn by inverse CDF); the test suite checks that they pick
exactly what :func:`covsim.selection.tournament` and :func:`covsim.selection.offset_tournament`
pick on the same data. Exact :func:`covsim.coverage` of every candidate. Counts make a seed cost
O(|Π|²·V) instead of O(|Π|²·n·S), so quick runs 96 seeds at |Π| = 27 in seconds.
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
from covsim.exact import TIE_TOLERANCE
from covsim.experiments.sharding import shard_seeds

N_LEVEL, A = 64.0, 0.25
COV_LEVEL = 2 * N_LEVEL ** (1 + A)
NUM_RARE_MAX = 24
RARE_TOP, RARE_RATIO = 0.03, 2.0 ** -0.5
SUPPRESS = 1e4
GENERATIONS = 4
DELTAS = (0.5, 0.25, 0.1)
SLOPE_CAP = -0.75
# §7.1 explicit form for the simple tournament: (N, N′) and δ
EXPLICIT_N_PRIME, EXPLICIT_DELTA = 2.0, 0.1
EXPLICIT_LEVEL = N_LEVEL * EXPLICIT_N_PRIME
SIZES = {
    "tiny": dict(n=(64, 512, 4096), num_rare=(6,)),
    "quick": dict(n=(64, 128, 256, 512, 1024, 2048, 4096), num_rare=(6, 24)),
    "full": dict(n=(64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384), num_rare=(6, 12, 24)),
}
N_MAX = {size: max(spec["n"]) for size, spec in SIZES.items()}
VARIANTS = ("offset", "no_offset")


def _truth_probs():
    q_f = 0.9 / (2 * N_LEVEL)
    eps_b = q_f / 3
    rare = RARE_TOP * RARE_RATIO ** np.arange(NUM_RARE_MAX)
    probs = np.concatenate([[0.0, q_f, eps_b], rare])
    probs[0] = 1 - probs.sum()
    return probs


def _normalized(weights):
    return np.log(weights / weights.sum())


def rare_subset(num_rare: int) -> np.ndarray:
    """Indices j (0..23) of the rare tokens that get a missing-mass candidate π_j."""
    step = NUM_RARE_MAX // int(num_rare)
    if step * int(num_rare) != NUM_RARE_MAX:
        raise ValueError(f"num_rare must divide {NUM_RARE_MAX}, got {num_rare}")
    return np.arange(0, NUM_RARE_MAX, step)


@lru_cache(maxsize=4)
def candidate_laws(num_rare: int = NUM_RARE_MAX):
    """(truth log-probs (V,), candidate log-probs (m, V), names, ids) of the instance.

    ids: a fixed identity per candidate (0 π⋆, 1 π′, 2 π_b, 3 + j for π_j), used to key
    its generations so that they are the same draws whatever K.
    """
    q = _truth_probs()
    V = q.size
    star = q * np.where(np.arange(V) == 0, 1.0, 1.5)
    far = 0.001 * q / (1 - q[1])
    far[1] = 0.999
    bad = q.copy()
    bad[2] /= SUPPRESS
    bad[1] = 0.05
    bad[0] = 1 - bad[1:].sum()
    laws, names, ids = [star, far, bad], ["star", "far", "b"], [0, 1, 2]
    for j in rare_subset(num_rare):
        r = q.copy()
        r[3 + j] /= SUPPRESS
        r[0] = 1 - r[1:].sum()
        laws.append(r)
        names.append(f"rare{j}")
        ids.append(3 + int(j))
    return np.log(q), np.stack([_normalized(w) for w in laws]), tuple(names), np.asarray(ids)


def _tabular(logp):
    return covsim.TabularModel(jnp.asarray(logp)[None, None, None, :], horizon=1)


@lru_cache(maxsize=16)
def exact_coverages(num_rare: int = NUM_RARE_MAX, level: float = COV_LEVEL) -> np.ndarray:
    """Exact Cov_level(π_D‖π) of every candidate, shape (m,)."""
    truth_lp, cand_lp, _, _ = candidate_laws(num_rare)
    truth = _tabular(truth_lp)
    return np.asarray([float(covsim.coverage(truth, _tabular(c), jnp.ones((1,)), level)) for c in cand_lp])


def explicit_bound(num_rare: int, n) -> np.ndarray:
    """§7.1 explicit form at (N, N′) = (64, 2), δ = 0.1: 5 min Cov_{N′} + 4N′/N + 32 log(4|Π|/δ)/n."""
    m = 3 + int(num_rare)
    best = float(np.min(exact_coverages(num_rare, EXPLICIT_N_PRIME)))
    return (5 * best + 4 * EXPLICIT_N_PRIME / N_LEVEL
            + 32 * math.log(4 * m / EXPLICIT_DELTA) / np.asarray(n, float))


def _counts(u, cdf, n):
    """Token counts among the first n (last axis) of the uniform stream u, by inverse CDF."""
    tokens = jnp.minimum(jnp.searchsorted(cdf, u.ravel(), side="right"), cdf.size - 1)
    keep = jnp.broadcast_to(jnp.arange(u.shape[-1]) < n, u.shape).ravel()
    return jnp.zeros(cdf.size, cdf.dtype).at[tokens].add(keep.astype(cdf.dtype))


def select(scores, mean_loglik):
    """argmin of scores; ties: highest mean held-out log-likelihood, then lowest index (as covsim.selection)."""
    tied = scores == jnp.min(scores)
    best_ll = jnp.max(jnp.where(tied, mean_loglik, -jnp.inf))
    return jnp.argmax(tied & (mean_loglik == best_ll))


def count_space_picks(lp, heldout_counts, gen_counts, n, *, offset=True):
    r"""(offset pick, simple pick) from token counts — H = 1, one prompt.

    With c[v] the held-out count of token v among n samples and g_j[v] the count among the
    n·S generations of candidate j, the tournaments' quantities are exactly
    Ĉov_N(π_k‖π_j) = Σ_v c[v]·1{lp_k[v] ≥ lp_j[v] + log N − τ}/n and
    Ĉov^{π_j}_N(π_k‖π_j) = Σ_v g_j[v]·1{lp_k[v] − lp_j[v] ≥ log N − τ}/(nS), the mean held-out
    log-likelihood is Σ_v c[v]·lp_j[v]/n; scores, argmin and ties as
    :func:`covsim.selection.tournament` / :func:`covsim.selection.offset_tournament` (the test
    suite checks the picks agree on sampled data). `offset=False`: γ = 0.
    """
    log_level = jnp.log(jnp.asarray(N_LEVEL, lp.dtype)) - TIE_TOLERANCE
    held_cover = lp[None, :, :] >= lp[:, None, :] + log_level  # [j, k, v]
    on_cover = (lp[None, :, :] - lp[:, None, :]) >= log_level
    held = jnp.einsum("jkv,v->jk", held_cover.astype(lp.dtype), heldout_counts) / n
    mean_ll = lp @ heldout_counts / n
    simple = select(jnp.max(held, axis=1), mean_ll)
    if not offset:
        return simple, simple
    S = gen_counts.sum(axis=1, keepdims=True)  # n·S per candidate
    on = jnp.einsum("jkv,jv->jk", on_cover.astype(lp.dtype), gen_counts) / S
    gamma = N_LEVEL ** A
    return select(jnp.max(held - 2.0 * gamma * on, axis=1), mean_ll), simple


@partial(jax.jit, static_argnames=("n_max", "offset"))
def _one_seed(key, n, truth_lp, cand_lp, ids, covs, covs_explicit, *, n_max, offset):
    key_data, key_gen = jax.random.split(key)
    u = jax.random.uniform(key_data, (n_max,), truth_lp.dtype)  # nested: the first n draws
    c = _counts(u, jnp.cumsum(jnp.exp(truth_lp)), n)
    gen_keys = jax.random.split(key_gen, 3 + NUM_RARE_MAX)[ids]  # keyed by identity, not position
    ug = jax.vmap(lambda k: jax.random.uniform(k, (GENERATIONS, n_max), truth_lp.dtype))(gen_keys)
    g = jax.vmap(lambda uu, lp: _counts(uu, jnp.cumsum(jnp.exp(lp)), n))(ug, cand_lp)
    off, simple = count_space_picks(cand_lp, c, g, n, offset=offset)
    return {"cov_offset": covs[off], "cov_simple": covs[simple],
            "cov_simple_explicit": covs_explicit[simple],
            "pick_offset": ids[off].astype(float), "pick_simple": ids[simple].astype(float)}


def _cells(size: str, variant: str) -> list[dict]:
    spec = SIZES[size]
    return [dict(n=int(n), num_rare=int(k), variant=variant, n_max=N_MAX[size])
            for k in spec["num_rare"] for n in spec["n"]]


def grid(size: str) -> list[dict]:
    return _cells(size, "offset")


def control_grid(size: str) -> list[dict]:
    return _cells(size, "no_offset")


@partial(jax.jit, static_argnames=("n_max", "offset"))
def _run_seeds(keys, n, *args, n_max, offset):
    return jax.lax.map(lambda k: _one_seed(k, n, *args, n_max=n_max, offset=offset), keys, batch_size=16)


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    k = int(cell["num_rare"])
    truth_lp, cand_lp, _, ids = candidate_laws(k)
    args = (jnp.asarray(truth_lp), jnp.asarray(cand_lp), jnp.asarray(ids),
            jnp.asarray(exact_coverages(k)), jnp.asarray(exact_coverages(k, EXPLICIT_LEVEL)))
    keys = shard_seeds(jax.random.split(key, num_seeds))
    out = _run_seeds(keys, jnp.asarray(float(cell["n"])), *args, n_max=int(cell["n_max"]),
                     offset=cell["variant"] == "offset")
    return {name: np.asarray(v, float) for name, v in out.items()}


# -- statistics ----------------------------------------------------------------------------
def paired_slope(x, per_seed, stat, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Least-squares slope of log stat(per_seed) against log x, with a bootstrap over seeds.

    `per_seed` (k, S) holds seed s of every x in column s (paired draws), so each replicate
    resamples whole columns. `stat` maps (k, S') to (k,) (seed mean, a quantile). Returns a
    dict slope, lo, hi, values (the statistic at each x), valid, why.
    """
    x = np.asarray(x, float)
    per_seed = np.asarray(per_seed, float)
    values = stat(per_seed)
    out = {"slope": math.nan, "lo": math.nan, "hi": math.nan, "values": values.tolist(),
           "valid": False, "why": ""}
    if not np.all(np.isfinite(values) & (values > 0)):
        out["why"] = f"statistic not positive at every x: {np.array2string(values, precision=3)}"
        return out
    lx = np.log(x)
    dx = lx - lx.mean()

    def fit(v):
        lv = np.log(v)
        return (lv - lv.mean(axis=-1, keepdims=True)) @ dx / (dx @ dx)

    rng = np.random.default_rng(seed)
    s = per_seed.shape[1]
    idx = rng.integers(0, s, size=(n_boot, s))
    boot = np.stack([stat(per_seed[:, row]) for row in idx])  # (n_boot, k)
    ok = np.all(boot > 0, axis=1)
    if ok.sum() < 0.9 * n_boot:
        out["why"] = f"{n_boot - ok.sum()} of {n_boot} resamples had a statistic <= 0"
        return out
    slopes = fit(boot[ok])
    lo, hi = np.quantile(slopes, [(1 - ci) / 2, (1 + ci) / 2])
    out.update(slope=float(fit(values)), lo=float(lo), hi=float(hi), valid=True)
    return out


def _mean(per):
    return per.mean(axis=-1)


def _quantile(q):
    return lambda per: np.quantile(per, q, axis=-1)


def _worst(fits: dict, *, seeds: int, cells) -> Evidence:
    """Largest slope over several fits (CI ends: largest lower, largest upper) as one cap evidence."""
    bad = [k for k, f in fits.items() if not f["valid"]]
    if bad:
        return Evidence.invalid(f"no fit at {bad}: {fits[bad[0]]['why']}", seeds=seeds, cells=cells,
                                details={"fits": fits})
    worst = max(fits, key=lambda k: fits[k]["slope"])
    return Evidence.interval(fits[worst]["slope"], max(f["lo"] for f in fits.values()),
                             max(f["hi"] for f in fits.values()), seeds=seeds, cells=cells,
                             details={"fits": fits, "largest_slope_at": worst})


RULES = (
    Rule("offset_mean_rate_cap", "cap",
         "largest over |Π| of the log-log slope in n of E Cov_{2N^{1+a}}(offset pick) (paired-seed bootstrap CI)",
         SLOPE_CAP,
         regime="every n of the grid, each K (|Π| = 3 + K); N = 64, a = 1/4",
         theory="THEORY §7.2, Thm 6.4: w.p. >= 1-δ, Cov_{2N^{1+a}}(π̂) ≲ log(|Π|/δ)/n ... "
                "No N^{a-1} floor (a cap: slope <= -1, steeper allowed)"),
    Rule("offset_quantile_rate_cap", "cap",
         "largest over (|Π|, δ ∈ {0.5, 0.25, 0.1}) of the log-log slope in n of the (1-δ)-quantile "
         "over seeds of Cov_{2N^{1+a}}(offset pick)",
         SLOPE_CAP,
         regime="every n of the grid, each K and δ",
         theory="THEORY §7.2, Thm 6.4: w.p. >= 1-δ, Cov_{2N^{1+a}}(π̂) ≲ log(|Π|/δ)/n"),
    Rule("offset_below_simple", "paired",
         "smallest over |Π| of the mean paired difference Cov(simple pick) - Cov(offset pick), "
         "Cov at level 2N^{1+a}",
         0.0,
         regime="largest n of the grid",
         theory="THEORY §7.2: No N^{a-1} floor: useful at constant N (vs §7.1: simple tournament "
                "... + N^{a-1} + log(|Π|/δ)/n)"),
    Rule("simple_explicit_bound", "probability_at_least",
         "P[Cov_{N·N'}(simple pick) <= 5·min_π Cov_{N'}(π) + 4N'/N + 32·log(4|Π|/δ)/n], N = 64, N' = 2",
         1 - EXPLICIT_DELTA,
         regime="the cell with the largest n and the largest K (independent seeds)",
         theory="THEORY §7.1 [project] explicit finite-class form: w.p. >= 1-δ, for any N, N' >= 1, "
                "Cov_{N·N'}(π̂) <= 5·min_π Cov_{N'}(π) + 4N'/N + 32·log(4|Π|/δ)/n",
         bound="5·min_π Cov_2(π) + 8/64 + 32·log(4|Π|/0.1)/n"),
    Rule("thm_hypotheses", "zero_violations",
         "violated hypotheses of Thm 6.4 among: N^{1-2a} >= 8; π⋆ ∈ Π with sup|log π_D - log π⋆| <= a·log N",
         None,
         regime="the instance (every cell)",
         theory="THEORY §7.2, Thm 6.4: a > 0 with N^{1-2a} >= 8, and some π ∈ Π with "
                "sup|log π_D - log π| <= a·log N"),
)


def analyze(table, size: str) -> Analysis:
    ks = [int(k) for k in table.unique("num_rare")]
    truth_lp, cand_lp, _, _ = candidate_laws(max(ks))
    closeness = float(np.max(np.abs(cand_lp[0] - truth_lp)))
    condition = bool(np.asarray(bounds.offset_tournament_condition(N_LEVEL, A)))
    details = {"level": COV_LEVEL, "sup_log_ratio_star": closeness, "a_log_N": A * math.log(N_LEVEL),
               "condition_N^(1-2a)>=8": condition, "num_rare": ks, "deltas": list(DELTAS)}
    for k in ks:
        details[f"candidate_coverages_K{k}"] = dict(zip(candidate_laws(k)[2], exact_coverages(k).tolist()))
    evidence, observations = {}, []
    evidence["thm_hypotheses"] = Evidence.count(int(not condition) + int(closeness > A * math.log(N_LEVEL)), 2,
                                                seeds=0, exact=True,
                                                details={"sup_log_ratio_star": closeness,
                                                         "a_log_N": A * math.log(N_LEVEL)})
    mean_fits, quant_fits, paired, seeds = {}, {}, {}, None
    for k in ks:
        ns, _, _, per_off = table.group_mean("n", "cov_offset", num_rare=k)
        _, _, _, per_simple = table.group_mean("n", "cov_simple", num_rare=k)
        seeds = per_off.shape[1]
        mean_fits[f"K={k}"] = paired_slope(ns, per_off, _mean)
        for delta in DELTAS:
            quant_fits[f"K={k}, δ={delta:g}"] = paired_slope(ns, per_off, _quantile(1 - delta))
        paired[k] = (per_simple[-1], per_off[-1])
        details["n"] = ns.tolist()
        details[f"cov_offset_mean_K{k}"] = per_off.mean(axis=1).tolist()
        details[f"cov_simple_mean_K{k}"] = per_simple.mean(axis=1).tolist()
        details[f"simple_fit_K{k}"] = paired_slope(ns, per_simple, _mean)
        m = 3 + k
        for delta in DELTAS:
            q = np.quantile(per_off, 1 - delta, axis=1)
            observations.append(Observation(f"C(K={k}, δ={delta:g})", float(np.max(ns * q / math.log(m / delta))),
                                            "max_n n·q_{1-δ}(Cov)/log(|Π|/δ): the constant of the log(|Π|/δ)/n form"))
    details["mean_fits"], details["quantile_fits"] = mean_fits, quant_fits
    cells = {"n": details["n"], "num_rare": ks}
    evidence["offset_mean_rate_cap"] = _worst(mean_fits, seeds=seeds, cells=cells)
    evidence["offset_quantile_rate_cap"] = _worst(quant_fits, seeds=seeds, cells=cells)
    diffs = {k: Evidence.paired(a, b) for k, (a, b) in paired.items()}
    kmin = min(diffs, key=lambda k: diffs[k].estimate)
    evidence["offset_below_simple"] = Evidence.interval(
        diffs[kmin].estimate, min(d.lo for d in diffs.values()), min(d.hi for d in diffs.values()),
        seeds=seeds, cells={"n": details["n"][-1], "num_rare": ks},
        details={f"K={k}": d.to_json() for k, d in diffs.items()})
    kmax, nmax = max(ks), details["n"][-1]
    sub = table.select(num_rare=kmax, n=nmax)
    bound = float(explicit_bound(kmax, nmax))
    ok = int(np.sum(sub.column("cov_simple_explicit").astype(float) <= bound))
    evidence["simple_explicit_bound"] = Evidence.trials(ok, len(sub), bound_values=[bound],
                                                        cells={"n": nmax, "num_rare": kmax})
    if len(ks) > 1:
        lo_k, hi_k = min(ks), max(ks)
        ratio = np.asarray(details[f"cov_offset_mean_K{hi_k}"]) / np.asarray(details[f"cov_offset_mean_K{lo_k}"])
        observations.append(Observation(f"E Cov ratio K={hi_k} / K={lo_k} over n", ratio.tolist(),
                                        f"log(|Π|/0.1) ratio = {math.log((3 + hi_k) / 0.1) / math.log((3 + lo_k) / 0.1):.3f}"))
    for k in ks:
        f = details[f"simple_fit_K{k}"]
        observations.append(Observation(f"simple tournament slope K={k}", f["slope"],
                                        f"CI [{f['lo']:.3g}, {f['hi']:.3g}]; N^(a-1) = {N_LEVEL ** (A - 1):.3g}, "
                                        f"ε_b = {_truth_probs()[2]:.3g}"))
    return Analysis(evidence=evidence, observations=observations, details=details)


def plot(table, summary, out):
    from covsim.plotting import Curve, loglog_figure

    details = summary.details
    ks = [int(k) for k in table.unique("num_rare")]
    series = []
    for k in ks:
        ns, mean, _, per = table.group_mean("n", "cov_offset", num_rare=k)
        fit = details.get("mean_fits", {}).get(f"K={k}", {})
        label = f"offset pick, |Π| = {3 + k}"
        if fit.get("valid"):
            label += f": slope {fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]"
        series.append(dict(x=ns, mean=mean, lo=np.quantile(per, 1 / 16, axis=1),
                           hi=np.quantile(per, 15 / 16, axis=1), label=label + " (band: 1/16-15/16 of seeds)"))
    ns, mean, _, per = table.group_mean("n", "cov_simple", num_rare=max(ks))
    series.append(dict(x=ns, mean=mean, lo=np.quantile(per, 1 / 16, axis=1), hi=np.quantile(per, 15 / 16, axis=1),
                       label=f"simple tournament, |Π| = {3 + max(ks)}"))
    m = 3 + max(ks)
    curves = [Curve(ns, np.asarray(bounds.offset_tournament_rate(m, ns, 0.1)), f"log(|Π|/δ)/n, δ = 0.1, |Π| = {m}"),
              Curve(ns, np.full(ns.shape, N_LEVEL ** (A - 1)), "N^(a-1) (simple tournament term)")]
    paths = [loglog_figure(out / "cov_vs_n.png", series, xlabel="n (held-out samples)",
                           ylabel=f"Cov_{COV_LEVEL:.0f} of the pick",
                           title=f"Offset vs simple tournament (N = {N_LEVEL:g}, a = {A:g})",
                           bounds=curves)]
    qseries = []
    for k in ks:
        ns, _, _, per = table.group_mean("n", "cov_offset", num_rare=k)
        for delta in DELTAS:
            fit = details.get("quantile_fits", {}).get(f"K={k}, δ={delta:g}", {})
            label = f"(1-δ)-quantile, δ = {delta:g}, |Π| = {3 + k}"
            if fit.get("valid"):
                label += f": slope {fit['slope']:.2f}"
            qseries.append(dict(x=ns, mean=np.quantile(per, 1 - delta, axis=1), label=label))
    qcurves = [Curve(ns, np.asarray(bounds.offset_tournament_rate(3 + k, ns, d)), f"log(|Π|/δ)/n, |Π| = {3 + k}, δ = {d:g}")
               for k in (min(ks), max(ks)) for d in (DELTAS[0], DELTAS[-1])]
    paths.append(loglog_figure(out / "quantiles_vs_n.png", qseries, xlabel="n (held-out samples)",
                               ylabel=f"(1-δ)-quantile of Cov_{COV_LEVEL:.0f}(offset pick)",
                               title="With-probability form: quantiles over seeds", bounds=qcurves))
    return paths


CHECK = Check(
    name="offset_tournament",
    claim="With a candidate log-ratio-close to π_D, the offset tournament's Cov_{2N^{1+a}} is capped by "
          "log(|Π|/δ)/n (slope <= -1 in n, for every |Π| and δ) with no N^{a-1} floor.",
    reference="arXiv 2510.15020 v2, Eq. 32, Thm 6.4 (ICLR: Thm G.3)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("on-policy term removed (γ = 0): the simple tournament at level N, which the far rival π′ "
                    "drives to π_b — a floor at ε_b, so the slope in n is ≈ 0 and the caps fail", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 96, "full": 1024},
    paired_over=("n", "num_rare"),
)
