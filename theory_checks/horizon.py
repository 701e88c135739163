r"""The headline: sequence KL of the MLE grows linearly in H, coverage does not.

Claim (arXiv 2510.15020 v2, Prop. 3.2 and Figure 2; THEORY.md §5.2, §8, §9): for a proper
learner (the MLE), the sequence KL to the data law grows linearly with the horizon H at
fixed n, while the coverage Cov_N stays flat in H for every N; hence KL/Cov_N ∝ H.

Two instances, each through the generic pipeline (``covsim.sample`` → ``covsim.fit_mle`` →
exact ``covsim.kl`` and the rigorous coverage bracket):

- ``kl_horizon_lower_bound`` (CONSTRUCTIONS §3): d = 1, a rare prompt of mass 1/(2n);
  E KL ≈ 0.61·κ(B)·H/(2n) (slope +1), Cov_N ≤ 1/(2n) with no H.
- ``horizon_mixture`` (CONSTRUCTIONS §10, Figure 2 analogue): a rare class whose hidden bit is
  unlearnable when unseen; KL ≈ 0.05·u·(H/2)·log 2, Cov_N ≈ 0.05·u.

Expected signature, stated before running: slope of seed-mean KL against H in
[0.8, 1.2]; coverage flat — slope CI inside [−0.2, 0.2] — over the horizons where the
construction puts the rare responses past the threshold (kl_horizon: H·κ(B) ≥ 2 log N;
mixture: (H/2)·log 2 > log N, strictly, per CONSTRUCTIONS §10); slope of KL/Cov_N in [0.8, 1.2].
Coverage is the midpoint of covsim's rigorous bracket; the bracket width is recorded and
must be small against the coverage (else the verdict is inconclusive).
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
from covsim.experiments.stats import SlopeFit, flat_assertion, loglog_slope, slope_assertion
from covsim.instances import statistical as inst

N_VALUES = (2.0, 16.0, 256.0)
BINS = 512
KL_BAND = (0.8, 1.2)
FLAT_BAND = 0.2
MAX_RELATIVE_WIDTH = 0.1


def _fit_and_measure(instance, key, n, bins=BINS):
    x, y = covsim.sample(instance.truth, instance.mu, n, key=key)
    fitted = covsim.fit_mle(instance.model(jnp.zeros(instance.features.shape[-1])), x, y,
                            **instance.fit_kwargs())
    kl = covsim.kl(instance.truth, fitted, instance.mu)
    lo, hi = covsim.coverage(instance.truth, fitted, instance.mu, jnp.asarray(N_VALUES),
                             method="bracket", bins=bins)
    return kl, lo, hi


@partial(jax.jit, static_argnames=("n", "H", "B", "num_seeds"))
def _run_kl_horizon(key, *, n, H, B, num_seeds):
    def one(k):
        k_theta, k_data = jax.random.split(k)
        instance = inst.kl_horizon_lower_bound(n, H, B=B, key=k_theta)
        return _fit_and_measure(instance, k_data, n, bins=4 * BINS)  # d = 1, V = 2: cheap

    return jax.vmap(one)(jax.random.split(key, num_seeds))


def _run_mixture(key, *, n, H, M, num_seeds):
    instance = inst.horizon_mixture(n, H, M=M)
    return _run_mixture_jit(key, instance, n=n, num_seeds=num_seeds)


@partial(jax.jit, static_argnames=("n", "num_seeds"))
def _run_mixture_jit(key, instance, *, n, num_seeds):
    return jax.vmap(lambda k: _fit_and_measure(instance, k, n))(jax.random.split(key, num_seeds))


def grid(size: str) -> list[dict]:
    horizons = [8, 16, 32, 64, 128, 256] if size == "quick" else [8, 16, 32, 64, 128, 256, 512, 1024]
    cells = [dict(instance="kl_horizon", H=H, n=100, B=1.0, M=0) for H in horizons]
    cells += [dict(instance="mixture", H=H, n=128, B=0.0, M=32) for H in horizons]
    return cells


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    if cell["instance"] == "kl_horizon":
        kl, lo, hi = _run_kl_horizon(key, n=cell["n"], H=cell["H"], B=cell["B"], num_seeds=num_seeds)
    else:
        kl, lo, hi = _run_mixture(key, n=cell["n"], H=cell["H"], M=cell["M"], num_seeds=num_seeds)
    out = {"kl": np.asarray(kl, dtype=float)}
    for j, N in enumerate(N_VALUES):
        tag = f"{N:g}"
        out[f"cov_lo_{tag}"] = np.asarray(lo[:, j], dtype=float)
        out[f"cov_hi_{tag}"] = np.asarray(hi[:, j], dtype=float)
        out[f"cov_{tag}"] = 0.5 * (out[f"cov_lo_{tag}"] + out[f"cov_hi_{tag}"])
    return out


def ratio_slope(x, num, den, *, n_boot=2000, ci=0.95, seed=0) -> SlopeFit:
    """Slope of log(mean num / mean den) against log x, with a bootstrap CI that resamples
    the seeds of numerator and denominator independently within each x."""
    x = np.log(np.asarray(x, dtype=float))
    rng = np.random.default_rng(seed)

    def slope(a, b):
        m_a, m_b = a.mean(1), b.mean(1)
        if np.any(m_a <= 0) or np.any(m_b <= 0):
            return np.nan
        return np.polyfit(x, np.log(m_a) - np.log(m_b), 1)[0]

    point = slope(num, den)
    if not np.isfinite(point):
        return SlopeFit(np.nan, np.nan, np.nan, np.nan, 0, ci=ci, valid=False,
                        why="a mean of the numerator or denominator is <= 0")
    S1, S2 = num.shape[1], den.shape[1]
    draws = []
    for _ in range(n_boot):
        ia = rng.integers(S1, size=num.shape)
        ib = rng.integers(S2, size=den.shape)
        draws.append(slope(np.take_along_axis(num, ia, 1), np.take_along_axis(den, ib, 1)))
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2])
    intercept = float(np.mean(np.log(num.mean(1)) - np.log(den.mean(1)) - point * x))
    return SlopeFit(float(point), float(lo), float(hi), intercept, n_boot, ci=ci)


def _regime(instance: str, H, N: float, B: float) -> bool:
    """Horizons where the rare responses' log-ratio is past log N (stated a priori)."""
    if instance == "kl_horizon":
        return H * bounds.kappa(B) >= 2 * math.log(N)
    return (H // 2) * math.log(2) > math.log(N)


def analyze(table, size: str) -> Summary:
    assertions, details = [], {}
    for name in ("kl_horizon", "mixture"):
        sub = table.select(instance=name)
        B = float(sub.unique("B")[0])
        H, _, _, kl = sub.group_mean("H", "kl")
        fit = loglog_slope(H, kl)
        details[f"{name}_kl_slope"] = fit.to_dict()
        assertions.append(slope_assertion(f"{name}: KL linear in H", fit, *KL_BAND, what="slope of KL in H"))
        for N in N_VALUES:
            tag = f"{N:g}"
            keep = np.array([_regime(name, h, N, B) for h in H])
            if keep.sum() < 3:
                continue
            _, _, _, cov = sub.group_mean("H", f"cov_{tag}")
            _, _, _, width = sub.group_mean("H", f"cov_hi_{tag}")
            _, _, _, lower = sub.group_mean("H", f"cov_lo_{tag}")
            rel_width = float(np.max((width - lower).mean(1)[keep] / np.maximum(cov.mean(1)[keep], 1e-300)))
            fit_cov = loglog_slope(H[keep], cov[keep])
            details[f"{name}_cov{tag}_slope"] = fit_cov.to_dict()
            details[f"{name}_cov{tag}_bracket_rel_width"] = rel_width
            if rel_width > MAX_RELATIVE_WIDTH:
                assertions.append(Assertion(f"{name}: Cov_{tag} flat in H", Verdict.INCONCLUSIVE,
                                            f"coverage bracket too wide (relative width {rel_width:.2f})"))
            else:
                assertions.append(flat_assertion(f"{name}: Cov_{tag} flat in H", fit_cov, FLAT_BAND))
            fit_ratio = ratio_slope(H[keep], kl[keep], cov[keep])
            details[f"{name}_ratio{tag}_slope"] = fit_ratio.to_dict()
            if fit_ratio.valid:
                assertions.append(slope_assertion(f"{name}: KL/Cov_{tag} grows like H", fit_ratio, *KL_BAND,
                                                  what="slope of KL/Cov in H"))
    return Summary(assertions, details)


def plot(table, summary, out):
    from covsim.plotting import Curve, loglog_figure, series_from_table

    paths = []
    for name in ("kl_horizon", "mixture"):
        sub = table.select(instance=name)
        H = np.asarray(sub.unique("H"), dtype=float)
        n = int(sub.unique("n")[0])
        if name == "kl_horizon":
            B = float(sub.unique("B")[0])
            bound = Curve(H, np.asarray(bounds.kl_horizon_lower_bound(H, n, B=B)),
                          label="kappa(B) H/(2n) (Prop. 3.2, corrected)")
            cov_bound = Curve(H, np.full(H.shape, float(bounds.kl_horizon_coverage_upper(n))),
                              label="1/(2n) (exact cap)")
        else:
            M = int(sub.unique("M")[0])
            bound = Curve(H, np.asarray(inst.horizon_mixture_expected_kl(n, H.astype(int), M)),
                          label="0.05 u (H/2) log 2 (prediction)")
            cov_bound = Curve(H, np.full(H.shape, 0.05 * float(inst.horizon_mixture_unseen_share(n, M))),
                              label="0.05 u (prediction)")
        fits = summary.details
        kl_series = series_from_table(sub, "H", "kl", label="KL", fit=fits.get(f"{name}_kl_slope"))
        paths.append(loglog_figure(out / f"kl_vs_H_{name}.png", [kl_series], xlabel="H", ylabel="sequence KL",
                                   title=f"{name}: MLE sequence KL against H (n={n})", bounds=[bound]))
        cov_series = [series_from_table(sub, "H", f"cov_{N:g}", label=f"Cov_{N:g}",
                                        fit=fits.get(f"{name}_cov{N:g}_slope")) for N in N_VALUES]
        paths.append(loglog_figure(out / f"coverage_vs_H_{name}.png", cov_series, xlabel="H", ylabel="Cov_N",
                                   title=f"{name}: MLE coverage against H (n={n})", bounds=[cov_bound]))
        rows = []
        for row in sub.rows:
            r = dict(row)
            r["ratio"] = row["kl"] / row["cov_16"] if row["cov_16"] > 0 else float("nan")
            rows.append(r)
        from covsim.experiments.results import ResultTable

        ratio_series = series_from_table(ResultTable(rows), "H", "ratio", label="KL / Cov_16",
                                         fit=fits.get(f"{name}_ratio16_slope"))
        paths.append(loglog_figure(out / f"ratio_vs_H_{name}.png", [ratio_series], xlabel="H", ylabel="KL / Cov_16",
                                   title=f"{name}: KL/Cov_16 against H"))
    return paths


CHECK = Check(
    name="horizon",
    claim="MLE sequence KL grows linearly in H while Cov_N (N = 2, 16, 256) stays flat in H, so KL/Cov_N grows like H.",
    reference="arXiv 2510.15020 v2, Prop. 3.2 and Figure 2 (App. C.3)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 32, "full": 512},
)
