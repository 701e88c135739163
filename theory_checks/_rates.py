"""Shared helpers of the rate checks (mle_rates, variance_lower_bound): paired slopes, per-cell
caps and floors with a Bonferroni correction, and a per-seed quantile-band figure.

Private to ``theory_checks`` (no check imports another check; both import this).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from covsim.experiments.rules import Evidence, t_quantile
from covsim.experiments.stats import SlopeFit, loglog_slope


def paired_slope(x, per_seed, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> SlopeFit:
    r"""Log–log slope of the seed means of `per_seed` (k, S) against `x` (k,), with a *paired*
    bootstrap: one resample of the S seed indices is shared by every x (common random numbers).

    Falls back to :func:`covsim.experiments.stats.loglog_slope` for its validity checks.
    """
    x = np.asarray(x, float)
    y = np.asarray(per_seed, float)
    base = loglog_slope(x, y, n_boot=10, ci=ci, seed=seed)  # validity checks + point estimate
    if not base.valid:
        return base
    lx = np.log(x)
    dx = lx - lx.mean()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.shape[1], size=(n_boot, y.shape[1]))
    means = y[:, idx].mean(axis=2).T  # (n_boot, k)
    ok = np.all(means > 0, axis=1)
    if ok.sum() < 0.9 * n_boot:
        return SlopeFit(math.nan, math.nan, math.nan, math.nan, n_boot=int(ok.sum()), ci=ci, valid=False,
                        why=f"{n_boot - ok.sum()} of {n_boot} paired resamples had a mean <= 0")
    lm = np.log(means[ok])
    slopes = (lm - lm.mean(axis=1, keepdims=True)) @ dx / (dx @ dx)
    a = (1 - ci) / 2
    lo, hi = np.quantile(slopes, [a, 1 - a])
    return SlopeFit(base.slope, float(lo), float(hi), base.intercept, n_boot=int(ok.sum()), ci=ci)


def per_cell_extreme(values_by_cell, *, worst: str, level: float = 0.95, **kw) -> Evidence:
    r"""Evidence for "every cell's mean is ≤ thr" (`worst="max"`) or "≥ thr" (`worst="min"`).

    Each cell gets a Student-t CI at the Bonferroni level 1 − (1 − level)/C (C cells); the
    evidence is the worst cell's estimate, and the worst lower and upper ends over cells, so a
    cap holds iff every cell's CI is below it and fails iff some cell's CI is entirely above
    (mirror for a floor). ``details['per_cell']`` lists every cell's mean and CI.
    """
    cells = list(values_by_cell)
    if not cells:
        return Evidence.invalid("no cell inside the rule's regime", seeds=0, **kw)
    C = len(cells)
    lev = 1 - (1 - level) / C
    rows = []
    for label, v in cells:
        v = np.asarray(v, float).ravel()
        if v.size < 2 or not np.all(np.isfinite(v)):
            return Evidence.invalid(f"cell {label}: need >= 2 finite per-seed values", seeds=v.size, **kw)
        m = float(v.mean())
        half = t_quantile(0.5 + lev / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
        rows.append({"cell": label, "mean": m, "lo": m - half, "hi": m + half, "seeds": int(v.size)})
    pick = max if worst == "max" else min
    est = pick(r["mean"] for r in rows)
    lo = pick(r["lo"] for r in rows)
    hi = pick(r["hi"] for r in rows)
    details = {**kw.pop("details", {}), "per_cell": rows, "bonferroni_level": lev}
    return Evidence.interval(est, lo, hi, seeds=min(r["seeds"] for r in rows), details=details, **kw)


def band_figure(path, groups, *, xlabel: str, ylabel: str, title: str, curves=(), regime=None,
                hline=None, logy: bool = True) -> pathlib.Path:
    """Seed means (markers) with a per-seed 1/16–15/16 quantile band for each group.

    `groups`: list of ``(label, x (k,), per_seed (k, S))``; `curves`: ``(label, x, y)`` dashed;
    `regime`: x values in the rule's regime (marked with a ring); `hline`: ``(y, label)``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for label, x, per in groups:
        x = np.asarray(x, float)
        per = np.asarray(per, float)
        mean = per.mean(axis=1)
        q_lo, q_hi = np.quantile(per, [1 / 16, 15 / 16], axis=1)
        line, = ax.plot(x, mean, "o-", ms=4, label=f"{label} (seed mean)")
        floor = np.maximum(q_lo, mean / 1e3) if logy else q_lo
        ax.fill_between(x, floor, q_hi, color=line.get_color(), alpha=0.2, label="1/16–15/16 of seeds")
        if regime is not None:
            sel = np.isin(x, np.asarray(regime, float))
            ax.plot(x[sel], mean[sel], "o", mfc="none", mec="black", ms=9)
    for label, x, y in curves:
        ax.plot(np.asarray(x, float), np.asarray(y, float), "--", label=label)
    if hline is not None:
        ax.axhline(hline[0], color="red", ls=":", label=hline[1])
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
