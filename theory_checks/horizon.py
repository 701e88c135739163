r"""The headline: sequence KL of the MLE grows linearly in H, coverage does not.

Claim (arXiv 2510.15020 v2, Prop. 3.2 and Figure 2; THEORY.md §5.2, §9): for a proper learner
(the MLE), the sequence KL to the data law grows linearly with the horizon H at fixed n —
P[KL ≥ κ(B)·H/(2n)] ≥ ¼ ([correction] of the paper's H/(4n)) — while the coverage Cov_N is
capped by 1/(2n) with no H (EXACT), so it cannot grow with H; hence KL/Cov_N ∝ H.

Instance: ``kl_horizon_lower_bound`` (CONSTRUCTIONS §3), n = 100, B = 1 (κ(1) = 0.3278): d = 1,
a rare prompt of mass 1/(2n), θ⋆ = ±1 drawn per seed. Per seed: ``covsim.sample`` draws n
responses once at H_max (the largest H of the grid) and the cell at H uses their first H tokens;
the MLE on those tokens is the closed form of ``kl_horizon_mle`` (``prefix_mle``), KL the exact
μ(1)·H·KL(Ber(s)‖Ber(q̂)) and Cov_N (N = 2, 16, 256) the exact binomial sum of
``kl_horizon_coverage`` with a traced H (``rare_prompt_coverage``). tests/test_checks_horizon.py
checks all three against the generic ``covsim.fit_mle`` (box [−1, 1]), ``covsim.kl`` and
``kl_horizon_coverage``. One compilation serves every H. Seeds are **paired across H**
(``paired_over=("H",)``; the same key split in every H cell): a seed has the same θ⋆, prompts —
hence the same count m of rare-prompt samples — and token prefixes at every H. Each cell also
records the exact E KL and E Cov_N, finite sums over m and the token count
(``kl_horizon_expected_kl`` / ``kl_horizon_expected_coverage``).

Rules (declared before any run):

- ``kl_slope_in_H`` — band [0.8, 1.2] on the log–log slope of the seed-mean KL against H,
  all H; bootstrap resampling seeds jointly across H (paired). THEORY §9: E KL ∝ H/n.
- ``kl_lower_bound_w_p_quarter`` — probability_at_least ¼ (exact binomial test): a seed is a
  success when KL ≥ κ(B)·H/(2n) (relative tolerance 1e-9) in *every* H cell (a stronger event
  than any one cell's, so the per-H statement follows). THEORY §5.2 [correction].
- ``cov_cap_exact`` — zero_violations: Cov_N ≤ 1/(2n) (+1e-12) for every seed, H and N; bound
  1/(2n) = 0.005 (vacuity gate). THEORY §5.2 (EXACT, N > 1).
- ``cov_no_growth_in_H`` — cap 0.1 on the largest (over N) log–log slope in H of the exact
  E Cov_N, over the cells where the construction puts the unseen prompt's log-ratio past the
  threshold, H·κ(B) ≥ 2 log N (N = 256: H ≥ 64). THEORY §9: an H-independent cap allows
  decrease, so the rule is one-sided (no growth).
- ``ratio_slope_in_H`` — band [0.8, 1.2] on the log–log slope in H of (mean KL)/(mean Cov_16)
  over the regime cells of N = 16 (H ≥ 32); paired bootstrap. THEORY §9 / Fig. 2: KL/Cov_N ∝ H.

Observations: simulated vs exact E KL and E Cov_N (z-scores), the paired slope of the
simulated mean Cov_N over each regime, the fraction of seeds with m = 0 (exact 0.606), and
whether m is the same in every H cell (the pairing).

Control (``variant="biased"``): a learner with a fixed, data-independent bias — the MLE on the
rare prompt, but Ber(½ + b), b = 0.1, for every token of the common prompt (where π_D is
uniform). It is outside the class; its log-ratio on the common prompt drifts by
H·KL(Ber(½)‖Ber(½ + b)), so Cov_N grows with H toward 1 — ``cov_no_growth_in_H`` and
``cov_cap_exact`` must fail.

Measured (``--quick``, 64 seeds, 2 shared CPU cores under load ≈ 15: 66 s wall, 19 s CPU): holds —
KL slope 0.980 [0.961, 0.992]; 30/64 seeds with KL ≥ κ(B)H/(2n) at every H (binomial p = 1.2e-4
against ¼); 0 of 1344 cap violations; exact E Cov_N slopes 0.046 (N = 2), ≈ 0.01, ≈ 0.002; ratio
slope 0.979 [0.965, 0.988]. Control: fails — 996/1344 cap violations, exact E Cov_N slope 2.31,
ratio slope −0.22.

Only ``--full`` reaches H = 1024 and 512 seeds. The Figure-2 analogue ``horizon_mixture``
(CONSTRUCTIONS §10) is not run here: its fits cost minutes per cell on a CPU.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
import numpy as np

import covsim
from covsim import bounds
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.stats import SlopeFit
from covsim.exact import TIE_TOLERANCE
from covsim.instances import statistical as inst
from covsim.experiments.sharding import shard_seeds

N_VALUES = (2.0, 16.0, 256.0)
RATIO_N = 16.0
N_SAMPLES = 100
B_SCALE = 1.0
BIAS = 0.1
EVENT_RTOL = 1e-9
CAP_TOL = 1e-12

RULES = (
    Rule("kl_slope_in_H", "band", "log-log slope of seed-mean sequence KL against H (paired seeds)",
         (0.8, 1.2), regime="all H cells",
         theory="THEORY §9 / §5.2 (Prop. 3.2): E KL ∝ H/n, slope +1 in H"),
    Rule("kl_lower_bound_w_p_quarter", "probability_at_least",
         "fraction of seeds with KL >= kappa(B)·H/(2n) in every H cell", 0.25,
         regime="all H cells (event per seed over all H)",
         theory="THEORY §5.2 [correction]: P[KL >= kappa(B)·H/(2n)] >= 1/4",
         bound="kappa(B)·H/(2n)", bound_side="lower"),
    Rule("cov_cap_exact", "zero_violations", "per seed, H and N: Cov_N <= 1/(2n) (exact binomial sum)",
         None, regime="all cells, N in {2, 16, 256}",
         theory="THEORY §5.2: Cov_N(pi_hat) <= mu(rare prompt) = 1/(2n) for every N > 1 (EXACT)",
         bound="1/(2n)"),
    Rule("cov_no_growth_in_H", "cap", "max over N of the log-log slope in H of the exact E Cov_N", 0.1,
         regime="H·kappa(B) >= 2 log N (N = 2: H >= 8; 16: H >= 32; 256: H >= 64)",
         theory="THEORY §5.2 + §9: Cov_N <= 1/(2n) with no H; no systematic increase with H"),
    Rule("ratio_slope_in_H", "band", "log-log slope in H of mean KL / mean Cov_16 (paired seeds)",
         (0.8, 1.2), regime="H·kappa(B) >= 2 log 16 (H >= 32)",
         theory="THEORY §9 / Fig. 2: KL/Cov_N ∝ H"),
)


# ---------------------------------------------------------------------------
# grid and simulation


def _horizons(size: str) -> list[int]:
    return {"tiny": [16, 64, 256], "quick": [8, 16, 32, 64, 128, 256, 512],
            "full": [8, 16, 32, 64, 128, 256, 512, 1024]}[size]


def grid(size: str) -> list[dict]:
    hs = _horizons(size)
    return [dict(variant="mle", H=H, H_max=max(hs), n=N_SAMPLES, B=B_SCALE) for H in hs]


def control_grid(size: str) -> list[dict]:
    hs = _horizons(size)
    return [dict(variant="biased", H=H, H_max=max(hs), n=N_SAMPLES, B=B_SCALE) for H in hs]


def biased_prompt0_coverage(H: int, N, b: float = BIAS) -> np.ndarray:
    """P_{k∼Bin(H, ½)}[Λ₀ ≥ log N] with Λ₀ = k log(½/(½+b)) + (H−k) log(½/(½−b)): the coverage of the
    biased control learner on the common prompt (k = number of +1 tokens). Exact binomial sum."""
    from scipy.stats import binom

    ks = np.arange(H + 1)
    lam = ks * math.log(0.5 / (0.5 + b)) + (H - ks) * math.log(0.5 / (0.5 - b))
    pmf = binom.pmf(ks, H, 0.5)
    log_n = np.log(np.asarray(N, dtype=float))[..., None]
    return np.sum(pmf * (lam >= log_n - TIE_TOLERANCE), axis=-1)


def prefix_mle(x, y, H, B):
    """θ̂ of ``kl_horizon_mle`` on the first ``H`` tokens of each response (``H`` may be traced).

    m = #{x_i = 1}; θ̂ = 0 if m = 0, else clip(atanh(ȳ)/B, −1, 1), ȳ the mean of the m·H signed tokens.
    """
    on_rare = (x == 1)[:, None] & (jnp.arange(y.shape[-1]) < H)[None, :]
    count = jnp.sum(on_rare)
    signed = jnp.sum(jnp.where(on_rare, 2 * y - 1, 0)).astype(jnp.result_type(float))
    theta = jnp.clip(jnp.arctanh(signed / jnp.maximum(count, 1)) / B, -1.0, 1.0)
    return jnp.where(count > 0, theta, 0.0)


def rare_prompt_coverage(theta_star, theta_hat, H, h_max: int, B, Ns):
    """P_{k∼Bin(H,s)}[Λ_k ≥ log N] on the rare prompt (= 2n·``kl_horizon_coverage``), ``H`` traced ≤ h_max."""
    z_s, z_q = 2.0 * B * theta_star, 2.0 * B * theta_hat
    ls, l1s = jax.nn.log_sigmoid(z_s), jax.nn.log_sigmoid(-z_s)
    lq, l1q = jax.nn.log_sigmoid(z_q), jax.nn.log_sigmoid(-z_q)
    ks = jnp.arange(h_max + 1, dtype=ls.dtype)
    Hf = jnp.asarray(H, dtype=ls.dtype)
    valid = ks <= Hf
    kk = jnp.minimum(ks, Hf)
    log_pmf = gammaln(Hf + 1) - gammaln(kk + 1) - gammaln(Hf - kk + 1) + kk * ls + (Hf - kk) * l1s
    lam = kk * (ls - lq) + (Hf - kk) * (l1s - l1q)
    hit = lam[None, :] >= jnp.log(Ns)[:, None] - TIE_TOLERANCE
    return jnp.sum(jnp.where(valid[None, :] & hit, jnp.exp(log_pmf)[None, :], 0.0), axis=-1)


@partial(jax.jit, static_argnames=("n", "h_max", "num_seeds"))
def _run_seeds(key, features, mu, H, B, bias, prompt0_cov, *, n, h_max, num_seeds):
    """All seeds of one cell. Responses are drawn once at ``h_max`` and the first H tokens are
    used, so cells that differ only in H see the same θ⋆, prompts and token prefixes."""
    Ns = jnp.asarray(N_VALUES, dtype=features.dtype)
    mu1 = 1.0 / (2 * n)
    dtype = features.dtype

    def one(k):
        k_theta, k_data = jax.random.split(k)  # the same split in every H cell (paired seeds)
        # θ⋆ = ±1 uniform, as kl_horizon_lower_bound(n, H, B=B, key=k_theta) draws it
        theta_star = jnp.where(jax.random.bernoulli(k_theta, 0.5), 1.0, -1.0).astype(dtype)
        truth = covsim.LinearModel(features, theta_star.reshape(1), horizon=h_max)
        x, y = covsim.sample(truth, mu, n, key=k_data)
        theta_hat = prefix_mle(x, y, H, B)
        z_s, z_q = 2.0 * B * theta_star, 2.0 * B * theta_hat
        s = jax.nn.sigmoid(z_s)
        kl_token = (s * (jax.nn.log_sigmoid(z_s) - jax.nn.log_sigmoid(z_q))
                    + (1 - s) * (jax.nn.log_sigmoid(-z_s) - jax.nn.log_sigmoid(-z_q)))
        kl_common = (1.0 - mu1) * H * 0.5 * (jnp.log(0.5 / (0.5 + bias)) + jnp.log(0.5 / (0.5 - bias)))
        cov = (1.0 - mu1) * prompt0_cov + mu1 * rare_prompt_coverage(theta_star, theta_hat, H, h_max, B, Ns)
        return {
            "kl": mu1 * H * kl_token + kl_common,
            "m": jnp.sum(x == 1).astype(dtype),
            "theta_star": theta_star,
            "theta_hat": theta_hat,
            **{f"cov_{N:g}": cov[j] for j, N in enumerate(N_VALUES)},
        }

    return jax.vmap(one)(shard_seeds(jax.random.split(key, num_seeds)))


def expected_values(n: int, H: int, B: float, biased: bool) -> tuple[float, np.ndarray]:
    """Exact (E KL, E Cov_N for N in N_VALUES) of the cell's learner (finite sums over m, k)."""
    ekl = float(inst.kl_horizon_expected_kl(n, H, B=B))
    ecov = np.asarray(inst.kl_horizon_expected_coverage(n, H, jnp.asarray(N_VALUES), B=B), dtype=float)
    if biased:
        mu1 = 1.0 / (2 * n)
        ekl += (1.0 - mu1) * H * 0.5 * (math.log(0.5 / (0.5 + BIAS)) + math.log(0.5 / (0.5 - BIAS)))
        ecov = ecov + (1.0 - mu1) * biased_prompt0_coverage(H, N_VALUES)
    return ekl, ecov


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    n, H, B, h_max = int(cell["n"]), int(cell["H"]), float(cell["B"]), int(cell["H_max"])
    if not 1 <= H <= h_max:
        raise ValueError(f"horizon: need 1 <= H <= H_max, got H={H}, H_max={h_max}")
    biased = cell["variant"] == "biased"
    prompt0 = biased_prompt0_coverage(H, N_VALUES) if biased else np.zeros(len(N_VALUES))
    base = inst.kl_horizon_lower_bound(n, h_max, B=B, key=jax.random.PRNGKey(0))  # θ⋆ is redrawn per seed
    dtype = base.features.dtype
    out = _run_seeds(key, base.features, base.mu, jnp.asarray(H, dtype), jnp.asarray(B, dtype),
                     jnp.asarray(BIAS if biased else 0.0, dtype), jnp.asarray(prompt0, dtype),
                     n=n, h_max=h_max, num_seeds=num_seeds)
    out = {k: np.asarray(v, dtype=float) for k, v in out.items()}
    ekl, ecov = expected_values(n, H, B, biased)
    out["exact_kl"] = np.full(num_seeds, ekl)
    for j, N in enumerate(N_VALUES):
        out[f"exact_cov_{N:g}"] = np.full(num_seeds, ecov[j])
    return out


# ---------------------------------------------------------------------------
# statistics


def _kappa(B: float) -> float:
    return float(bounds.kappa(B))


def in_regime(H, N: float, B: float) -> bool:
    """H·κ(B) ≥ 2 log N: the unseen prompt's mean log-ratio is at least twice log N (a priori)."""
    return H * _kappa(B) >= 2 * math.log(N)


def _ls_slope(lx, ly):
    dx = lx - lx.mean()
    return (ly - ly.mean(axis=-1, keepdims=True)) @ dx / (dx @ dx)


def paired_ratio_slope(x, num, den=None, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> SlopeFit:
    """Log–log slope of mean(num)/mean(den) (den = 1 when None) against x, seeds paired across x.

    ``num``, ``den``: (k, S), row i at x[i], column s = seed s in every row. The bootstrap
    resamples seed indices once per replicate and uses them in every row and in both
    numerator and denominator (common random numbers stay paired).
    """
    nan = math.nan
    x = np.asarray(x, dtype=float)
    num = np.asarray(num, dtype=float)
    den = np.ones_like(num) if den is None else np.asarray(den, dtype=float)
    if num.ndim != 2 or num.shape != den.shape or num.shape[0] != x.size or np.unique(x).size < 2:
        return SlopeFit(nan, nan, nan, nan, 0, ci, False, f"bad shapes {num.shape}, {den.shape}, x {x.shape}")
    a, b = num.mean(1), den.mean(1)
    if not np.all(np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)):
        return SlopeFit(nan, nan, nan, nan, 0, ci, False, "a mean of the numerator or denominator is <= 0")
    lx = np.log(x)
    point = float(_ls_slope(lx, np.log(a) - np.log(b)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.shape[1], size=(n_boot, num.shape[1]))
    ba, bb = num[:, idx].mean(-1).T, den[:, idx].mean(-1).T  # (n_boot, k)
    ok = np.all((ba > 0) & (bb > 0), axis=1)
    if ok.sum() < 0.9 * n_boot:
        return SlopeFit(nan, nan, nan, nan, int(ok.sum()), ci, False,
                        f"{n_boot - ok.sum()} resamples had a mean <= 0")
    slopes = _ls_slope(lx, np.log(ba[ok]) - np.log(bb[ok]))
    lo, hi = np.quantile(slopes, [(1 - ci) / 2, (1 + ci) / 2])
    intercept = float(np.mean(np.log(a) - np.log(b) - point * lx))
    return SlopeFit(point, float(lo), float(hi), intercept, int(ok.sum()), ci)


def paired_ratio_band(num, den, *, n_boot: int = 2000, q=(0.025, 0.975), seed: int = 0):
    """Per-x bootstrap band of mean(num)/mean(den) with paired seeds: (lo, hi) arrays."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.shape[1], size=(n_boot, num.shape[1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num[:, idx].mean(-1) / den[:, idx].mean(-1)  # (k, n_boot)
    return np.nanquantile(r, q[0], axis=1), np.nanquantile(r, q[1], axis=1)


def _exact_slope(H, values) -> float:
    H = np.asarray(H, float)
    v = np.asarray(values, float)
    if H.size < 2 or np.any(v <= 0):
        return math.nan
    return float(_ls_slope(np.log(H), np.log(v)))


def analyze(table, size: str) -> Analysis:
    ev, obs, det = {}, [], {}
    H, _, _, kl = table.group_mean("H", "kl")
    n = int(table.unique("n")[0])
    B = float(table.unique("B")[0])
    S = kl.shape[1]
    kappa = _kappa(B)
    kl_bound = kappa * H / (2.0 * n)
    det["H"] = H.tolist()
    det["kl_bound"] = kl_bound.tolist()

    # KL slope (paired bootstrap)
    fit = paired_ratio_slope(H, kl)
    det["kl_slope"] = fit.to_dict()
    ev["kl_slope_in_H"] = Evidence.from_fit(fit, seeds=S, cells=H.tolist())

    # P[KL >= κH/(2n)] >= 1/4, event over all H per seed
    hit = kl >= kl_bound[:, None] * (1 - EVENT_RTOL)
    all_h = np.all(hit, axis=0)
    ev["kl_lower_bound_w_p_quarter"] = Evidence.trials(
        int(all_h.sum()), S, bound_values=kl_bound.tolist(), cells=H.tolist(),
        details={"per_H_fraction": hit.mean(axis=1).tolist()})
    det["kl_event_fraction"] = hit.mean(axis=1).tolist()

    # exact cap Cov_N <= 1/(2n)
    cap = 1.0 / (2 * n)
    covs = {N: table.group_mean("H", f"cov_{N:g}")[3] for N in N_VALUES}
    viol = sum(int(np.sum(c > cap + CAP_TOL)) for c in covs.values())
    checked = sum(c.size for c in covs.values())
    ev["cov_cap_exact"] = Evidence.count(viol, checked, seeds=S, bound_values=[cap] * len(H),
                                         details={"max_cov": max(float(c.max()) for c in covs.values())})

    # no growth of the exact E Cov_N in the regime
    slopes, rows = {}, []
    for N in N_VALUES:
        keep = np.array([in_regime(h, N, B) for h in H])
        exact = table.group_mean("H", f"exact_cov_{N:g}")[1]
        slopes[f"{N:g}"] = _exact_slope(H[keep], exact[keep]) if keep.sum() >= 2 else math.nan
        rows.append({"N": N, "regime_H": H[keep].tolist(), "exact_cov": exact.tolist()})
        det[f"exact_cov_{N:g}"] = exact.tolist()
        det[f"regime_{N:g}"] = keep.tolist()
        sim_fit = paired_ratio_slope(H[keep], covs[N][keep]) if keep.sum() >= 2 else None
        if sim_fit is not None:
            det[f"sim_cov_slope_{N:g}"] = sim_fit.to_dict()
            obs.append(Observation(f"sim_cov{N:g}_slope_in_H", sim_fit.describe(),
                                   "paired slope of the simulated mean Cov_N over the regime cells"))
    finite = [s for s in slopes.values() if math.isfinite(s)]
    if finite:
        ev["cov_no_growth_in_H"] = Evidence.exact_value(max(finite), details={"slopes": slopes, "cells": rows})
    else:
        ev["cov_no_growth_in_H"] = Evidence.invalid("fewer than 2 regime cells for every N", exact=True)

    # KL / Cov_16 slope over the regime of N = 16
    keep = np.array([in_regime(h, RATIO_N, B) for h in H])
    if keep.sum() >= 2:
        fit_r = paired_ratio_slope(H[keep], kl[keep], covs[RATIO_N][keep])
        ev["ratio_slope_in_H"] = Evidence.from_fit(fit_r, seeds=S, cells=H[keep].tolist())
    else:
        fit_r = SlopeFit(math.nan, math.nan, math.nan, math.nan, 0, valid=False, why="fewer than 2 regime cells")
        ev["ratio_slope_in_H"] = Evidence.invalid(fit_r.why, seeds=S)
    det["ratio_slope"] = fit_r.to_dict()
    det["ratio_regime"] = keep.tolist()

    # observations: simulation vs exact sums, cross-checks
    exact_kl = table.group_mean("H", "exact_kl")[1]
    z_kl = (kl.mean(1) - exact_kl) / np.maximum(kl.std(1, ddof=1) / math.sqrt(S), 1e-300)
    obs.append(Observation("kl_sim_vs_exact_max_abs_z", float(np.max(np.abs(z_kl))),
                           "simulated mean KL against the exact finite sum, per H"))
    for N in N_VALUES:
        exact = np.asarray(det[f"exact_cov_{N:g}"])
        c = covs[N]
        se = c.std(1, ddof=1) / math.sqrt(S)
        z = np.abs(c.mean(1) - exact)[se > 0] / se[se > 0]
        obs.append(Observation(f"cov{N:g}_sim_vs_exact_max_abs_z", float(z.max()) if z.size else math.nan,
                               "simulated mean Cov_N against the exact finite sum, per H (cells with spread)"))
    m = table.group_mean("H", "m")[3]
    obs.append(Observation("fraction_m_zero", float(np.mean(m[0] == 0)),
                           f"seeds with no rare-prompt sample; exact {float(inst.kl_horizon_prob_unseen(n)):.4f}"))
    obs.append(Observation("m_paired_across_H", bool(np.all(m == m[:1])), "same rare-prompt count in every H cell"))
    det["exact_kl"] = exact_kl.tolist()
    det["n"], det["B"], det["kappa"], det["variant"] = n, B, kappa, str(table.unique("variant")[0])
    return Analysis(ev, obs, det)


# ---------------------------------------------------------------------------
# figures


def _quantile_series(H, per_seed, label, fit=None):
    from covsim.plotting import Series

    lo, hi = np.quantile(per_seed, [1 / 16, 15 / 16], axis=1)
    return Series(H, per_seed.mean(1), lo, hi, label=f"{label} (band: 1/16-15/16 seed quantiles)", fit=fit)


def plot(table, summary, out):
    from covsim.plotting import Curve, Series, loglog_figure

    d = summary.details
    H, _, _, kl = table.group_mean("H", "kl")
    n, B = int(d["n"]), float(d["B"])
    tag = d.get("variant", "mle")
    paths = []
    q75 = np.quantile(kl, 0.75, axis=1)
    series = [_quantile_series(H, kl, "mean KL", fit=d.get("kl_slope")),
              Series(H, q75, label="75% quantile of KL (rule: q_3/4 >= bound <=> P[KL >= bound] >= 1/4)")]
    curves = [Curve(H, np.asarray(d["kl_bound"]), label="kappa(B) H/(2n) (w.p. >= 1/4 lower bound)"),
              Curve(H, np.asarray(d["exact_kl"]), label="exact E KL (finite sum)")]
    paths.append(loglog_figure(out / "kl_vs_H.png", series, xlabel="H", ylabel="sequence KL", bounds=curves,
                               title=f"kl_horizon ({tag}): KL against H (n={n}, B={B:g})"))
    series, curves = [], [Curve(H, np.full(H.shape, 1.0 / (2 * n)), label="1/(2n) (exact cap)")]
    for N in N_VALUES:
        c = table.group_mean("H", f"cov_{N:g}")[3]
        keep = np.asarray(d[f"regime_{N:g}"], bool)
        first = H[keep].min() if keep.any() else float("nan")
        series.append(_quantile_series(H, c, f"Cov_{N:g} (regime H >= {first:g})", fit=d.get(f"sim_cov_slope_{N:g}")))
        curves.append(Curve(H, np.asarray(d[f"exact_cov_{N:g}"]), label=f"exact E Cov_{N:g}"))
    paths.append(loglog_figure(out / "coverage_vs_H.png", series, xlabel="H", ylabel="Cov_N", bounds=curves,
                               title=f"kl_horizon ({tag}): coverage against H (n={n})"))
    c16 = table.group_mean("H", f"cov_{RATIO_N:g}")[3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = kl.mean(1) / c16.mean(1)
        exact_ratio = np.asarray(d["exact_kl"]) / np.asarray(d[f"exact_cov_{RATIO_N:g}"])
    lo, hi = paired_ratio_band(kl, c16)
    keep = np.asarray(d["ratio_regime"], bool)
    series = [Series(H, ratio, lo, hi, label="mean KL / mean Cov_16 (band: paired bootstrap 95%)",
                     fit=d.get("ratio_slope"))]
    if keep.any():
        series.append(Series(H[keep], ratio[keep], label="cells of the ratio rule (H kappa >= 2 log 16)"))
    paths.append(loglog_figure(out / "ratio_vs_H.png", series, xlabel="H", ylabel="KL / Cov_16",
                               bounds=[Curve(H, exact_ratio, label="exact E KL / E Cov_16")],
                               title=f"kl_horizon ({tag}): ratio of means against H"))
    return paths


CHECK = Check(
    name="horizon",
    claim="On kl_horizon_lower_bound the MLE's sequence KL grows linearly in H (P[KL >= kappa(B)H/(2n)] >= 1/4) "
          "while Cov_N <= 1/(2n) with no growth in H, so KL/Cov_N grows like H.",
    reference="arXiv 2510.15020 v2, Prop. 3.2 and Figure 2 (App. G, C.3)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("biased learner: MLE on the rare prompt, Ber(1/2 + 0.1) tokens on the common prompt "
                    "(a fixed, data-independent bias outside the class); its log-ratio drifts linearly in H, "
                    "so Cov_N grows with H and exceeds 1/(2n)", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 64, "full": 512},
    paired_over=("H",),
)
