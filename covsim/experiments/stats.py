r"""Statistics for theory checks: log–log slopes with bootstrap CIs, and assertions.

Pure numpy. Every random draw uses an explicit `np.random.default_rng(seed)`;
numpy's global RNG is never touched. Nothing here raises on bad data: a fit that
cannot be made returns `SlopeFit(valid=False, why=...)`, and assertions on it are
*inconclusive*.

Conventions: per-seed data is an array `y` of shape `(k, S)` — k grid points
(x values), S seeds. Intervals are two-sided at level `ci` (default 0.95).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

from covsim.experiments.check import Assertion, Verdict

__all__ = [
    "SlopeFit",
    "loglog_slope",
    "slope_assertion",
    "flat_assertion",
    "no_growth_assertion",
    "growth_assertion",
    "monotone_assertion",
    "zero_violation_assertion",
    "bracket_robust_assertion",
    "mean_ci",
    "bootstrap_ci",
]

_MIN_VALID_BOOT_FRACTION = 0.9


@dataclass(frozen=True)
class SlopeFit:
    r"""A log–log fit $\log \bar y = \text{intercept} + \text{slope}\cdot\log x$.

    `lo`, `hi`: bootstrap percentile interval for the slope at level `ci`.
    `n_boot`: bootstrap replicates used. `valid=False` (with `why`) when no fit
    could be made; then slope, lo, hi and intercept are nan.
    """

    slope: float
    lo: float
    hi: float
    intercept: float
    n_boot: int
    ci: float = 0.95
    valid: bool = True
    why: str = ""

    def to_dict(self) -> dict:
        """Plain dict for `Summary.details` / JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> "SlopeFit":
        """Inverse of :meth:`to_dict` (e.g. a fit stored in `Summary.details`)."""
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})

    def label(self, name: str = "") -> str:
        """Legend text, e.g. "Cov_16: slope -0.98 [-1.05, -0.91]"."""
        prefix = f"{name}: " if name else ""
        if not self.valid:
            return f"{prefix}no fit"
        return f"{prefix}slope {self.slope:.2f} [{self.lo:.2f}, {self.hi:.2f}]"

    def describe(self) -> str:
        """Slope and CI as text, for reasons."""
        if not self.valid:
            return f"no valid fit ({self.why})"
        return f"slope {self.slope:.3f}, {self.ci:.0%} CI [{self.lo:.3f}, {self.hi:.3f}]"


def _invalid(why: str, n_boot: int, ci: float) -> SlopeFit:
    nan = math.nan
    return SlopeFit(nan, nan, nan, nan, n_boot=n_boot, ci=ci, valid=False, why=why)


def _ls_slopes(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Least-squares slopes of ly (..., k) against lx (k,), vectorised over leading axes."""
    dx = lx - lx.mean()
    return (ly - ly.mean(axis=-1, keepdims=True)) @ dx / (dx @ dx)


def loglog_slope(
    x, y, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> SlopeFit:
    r"""Fit the slope of $\log \bar y$ against $\log x$ with a seed-bootstrap CI.

    **Arguments**

    - `x`: shape (k,), positive, at least two distinct values.
    - `y`: shape (k, S) per-seed values (or (k,) for one seed); the fitted
      quantity is the seed mean $\bar y_i$, which must be positive and finite.
    - `n_boot`: bootstrap replicates. Each replicate resamples the S seeds with
      replacement *independently within each x* and refits the slope.
    - `ci`: level of the percentile interval. `seed`: seed of the bootstrap RNG.

    **Returns** a :class:`SlopeFit`; never raises on bad data (`valid=False`, `why`).
    Replicates whose resampled mean is ≤ 0 are dropped; if more than 10% are
    dropped the fit is invalid. With S = 1 the interval has zero width.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 1 or y.ndim != 2 or y.shape[0] != x.shape[0]:
        return _invalid(f"need x (k,) and y (k, S); got {x.shape} and {y.shape}", n_boot, ci)
    if not (0 < ci < 1):
        return _invalid(f"ci must be in (0, 1), got {ci}", n_boot, ci)
    if np.unique(x).size < 2:
        return _invalid(f"need at least two distinct x, got {x.tolist()}", n_boot, ci)
    if not np.all(np.isfinite(x) & (x > 0)):
        return _invalid(f"x must be positive and finite, got {x.tolist()}", n_boot, ci)
    with np.errstate(invalid="ignore", over="ignore"):
        means = y.mean(axis=1)
    if not np.all(np.isfinite(means) & (means > 0)):
        return _invalid(
            f"seed means must be positive and finite, got {np.array2string(means, precision=4)}",
            n_boot, ci,
        )
    lx = np.log(x)
    slope = float(_ls_slopes(lx, np.log(means)))
    intercept = float(np.log(means).mean() - slope * lx.mean())

    rng = np.random.default_rng(seed)
    k, s = y.shape
    boot_means = np.empty((n_boot, k))
    for i in range(k):  # resample seeds independently within each x
        idx = rng.integers(0, s, size=(n_boot, s))
        boot_means[:, i] = y[i][idx].mean(axis=1)
    ok = np.all(boot_means > 0, axis=1)
    if ok.sum() < _MIN_VALID_BOOT_FRACTION * n_boot or ok.sum() == 0:
        return _invalid(
            f"{n_boot - ok.sum()} of {n_boot} bootstrap resamples had a mean <= 0 "
            "(too many zero seeds; add seeds or move the grid)", n_boot, ci,
        )
    slopes = _ls_slopes(lx, np.log(boot_means[ok]))
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(slopes, [alpha, 1 - alpha])
    return SlopeFit(slope, float(lo), float(hi), intercept, n_boot=int(ok.sum()), ci=ci)


def _fmt_band(lo: float, hi: float) -> str:
    return f"[{lo:g}, {hi:g}]"


def _fit_details(fit: SlopeFit, **extra) -> dict:
    return {**fit.to_dict(), **extra}


def slope_assertion(name: str, fit: SlopeFit, lo: float, hi: float, *, what: str) -> Assertion:
    """The slope lies in the band [lo, hi].

    *holds* if the whole CI lies inside the band; *fails* if the CI is disjoint
    from it; *inconclusive* if they overlap only partly, or the fit is invalid.
    `what` names the fitted quantity, e.g. "slope of KL in n".
    """
    details = _fit_details(fit, band=[lo, hi], what=what)
    band = _fmt_band(lo, hi)
    if not fit.valid:
        return Assertion(name, Verdict.INCONCLUSIVE, f"{what}: {fit.describe()}", details)
    text = f"{what}: {fit.describe()}, expected band {band}"
    if lo <= fit.lo and fit.hi <= hi:
        return Assertion(name, Verdict.HOLDS, f"{text}: CI inside the band", details)
    if fit.hi < lo or fit.lo > hi:
        return Assertion(name, Verdict.FAILS, f"{text}: CI disjoint from the band", details)
    return Assertion(name, Verdict.INCONCLUSIVE, f"{text}: CI overlaps the band only partly", details)


def flat_assertion(name: str, fit: SlopeFit, band: float, *, what: str = "slope in H") -> Assertion:
    """"Flat": the slope lies in [-band, band] (see :func:`slope_assertion`)."""
    return slope_assertion(name, fit, -band, band, what=what)


def no_growth_assertion(
    name: str, fit: SlopeFit, max_slope: float, *, what: str = "slope in H"
) -> Assertion:
    """"Does not grow": *holds* if CI upper end ≤ max_slope, *fails* if CI lower
    end > max_slope, else *inconclusive* (also for an invalid fit)."""
    details = _fit_details(fit, max_slope=max_slope, what=what)
    if not fit.valid:
        return Assertion(name, Verdict.INCONCLUSIVE, f"{what}: {fit.describe()}", details)
    text = f"{what}: {fit.describe()}, allowed at most {max_slope:g}"
    if fit.hi <= max_slope:
        return Assertion(name, Verdict.HOLDS, f"{text}: CI below", details)
    if fit.lo > max_slope:
        return Assertion(name, Verdict.FAILS, f"{text}: CI entirely above", details)
    return Assertion(name, Verdict.INCONCLUSIVE, f"{text}: CI straddles the limit", details)


def growth_assertion(
    name: str, fit: SlopeFit, min_slope: float, *, what: str = "slope in H"
) -> Assertion:
    """"Grows at least this fast": *holds* if CI lower end ≥ min_slope, *fails* if
    CI upper end < min_slope, else *inconclusive* (also for an invalid fit)."""
    details = _fit_details(fit, min_slope=min_slope, what=what)
    if not fit.valid:
        return Assertion(name, Verdict.INCONCLUSIVE, f"{what}: {fit.describe()}", details)
    text = f"{what}: {fit.describe()}, required at least {min_slope:g}"
    if fit.lo >= min_slope:
        return Assertion(name, Verdict.HOLDS, f"{text}: CI above", details)
    if fit.hi < min_slope:
        return Assertion(name, Verdict.FAILS, f"{text}: CI entirely below", details)
    return Assertion(name, Verdict.INCONCLUSIVE, f"{text}: CI straddles the limit", details)


def _mean_se(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seed means and standard errors of y (k, S) along the last axis."""
    s = y.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = y.mean(axis=-1)
        se = y.std(axis=-1, ddof=1) / math.sqrt(s) if s > 1 else np.zeros(y.shape[:-1])
    return mean, se


def monotone_assertion(
    name: str,
    x,
    y,
    *,
    direction: str = "decreasing",
    tolerance_se: float = 2.0,
    atol: float = 0.0,
    require_change: bool = True,
) -> Assertion:
    r"""The seed mean of y moves monotonically in x.

    Points are sorted by x. For consecutive means $m_i, m_{i+1}$ with standard
    errors $s_i, s_{i+1}$, the *wrong-way move* is $w_i = m_{i+1} - m_i$ for
    "decreasing" ($m_i - m_{i+1}$ for "increasing") and its tolerance is
    $t_i = \text{tolerance\_se}\cdot\sqrt{s_i^2 + s_{i+1}^2} + \text{atol}$.

    - *fails* if some step has $w_i > t_i$ (a significant move the wrong way);
    - else *holds* if `require_change` is False, or the overall move from first
      to last point goes the right way by more than its own tolerance;
    - else *inconclusive* (flat within noise), also for non-finite means or k < 2.

    **Arguments**: `x` shape (k,); `y` shape (k, S) per-seed values.
    """
    if direction not in ("decreasing", "increasing"):
        raise ValueError(f"direction must be 'decreasing' or 'increasing', got {direction!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    order = np.argsort(x)
    x, y = x[order], y[order]
    mean, se = _mean_se(y)
    sign = -1.0 if direction == "decreasing" else 1.0
    details = {"x": x, "mean": mean, "se": se, "direction": direction,
               "tolerance_se": tolerance_se, "atol": atol}
    if len(x) < 2 or not np.all(np.isfinite(mean)):
        return Assertion(name, Verdict.INCONCLUSIVE,
                         f"need >= 2 finite means, got {np.array2string(mean, precision=4)}", details)
    wrong = -sign * np.diff(mean)
    tol = tolerance_se * np.sqrt(se[1:] ** 2 + se[:-1] ** 2) + atol
    bad = np.flatnonzero(wrong > tol)
    details["violations"] = bad.tolist()
    if bad.size:
        i = int(bad[0])
        return Assertion(
            name, Verdict.FAILS,
            f"not {direction}: mean goes {mean[i]:.4g} -> {mean[i + 1]:.4g} from x={x[i]:g} to "
            f"x={x[i + 1]:g}, beyond tolerance {tol[i]:.3g} ({bad.size} such step(s))", details)
    overall = sign * (mean[-1] - mean[0])
    overall_tol = tolerance_se * math.sqrt(se[0] ** 2 + se[-1] ** 2) + atol
    if not require_change or overall > overall_tol:
        return Assertion(name, Verdict.HOLDS,
                         f"{direction} within {tolerance_se:g} SE: {mean[0]:.4g} -> {mean[-1]:.4g}",
                         details)
    return Assertion(name, Verdict.INCONCLUSIVE,
                     f"no significant {direction} trend: {mean[0]:.4g} -> {mean[-1]:.4g} "
                     f"(tolerance {overall_tol:.3g})", details)


def zero_violation_assertion(
    name: str, num_violations: int, num_checked: int, *, what: str = "inequality"
) -> Assertion:
    """An exact inequality: *holds* if 0 violations among > 0 checks, *fails* if
    any violation, *inconclusive* if nothing was checked."""
    num_violations, num_checked = int(num_violations), int(num_checked)
    details = {"num_violations": num_violations, "num_checked": num_checked, "what": what}
    if num_violations > 0:
        return Assertion(name, Verdict.FAILS,
                         f"{what}: {num_violations} violation(s) in {num_checked} checks", details)
    if num_checked <= 0:
        return Assertion(name, Verdict.INCONCLUSIVE, f"{what}: nothing was checked", details)
    return Assertion(name, Verdict.HOLDS, f"{what}: 0 violations in {num_checked} checks", details)


def bracket_robust_assertion(
    name: str, judge: Callable[[object], Assertion], table_at: Callable[[str], object]
) -> Assertion:
    """`judge` applied to the results with coverage at the bracket's midpoint, lower and upper
    ends (``table_at("mid" | "lower" | "upper")``): the midpoint's verdict when all three agree,
    *inconclusive* when they do not (the rigorous bracket is too loose to decide)."""
    verdicts = {end: judge(table_at(end)) for end in ("mid", "lower", "upper")}
    mid = verdicts["mid"]
    if len({a.verdict for a in verdicts.values()}) == 1:
        return mid
    ends = ", ".join(f"{e}: {a.verdict}" for e, a in verdicts.items())
    return Assertion(name, Verdict.INCONCLUSIVE,
                     f"coverage bracket too loose to decide ({ends}); midpoint: {mid.reason}", mid.details)


def mean_ci(y, ci: float = 0.95) -> tuple[float, float, float]:
    r"""Mean and normal-approximation interval $\bar y \pm z_{(1+ci)/2}\, s/\sqrt{S}$.

    `y`: shape (S,). With S = 1 the interval has zero width.
    """
    y = np.asarray(y, dtype=float).ravel()
    mean, se = _mean_se(y)
    z = NormalDist().inv_cdf(0.5 + ci / 2)
    return float(mean), float(mean - z * se), float(mean + z * se)


def bootstrap_ci(
    y, stat: Callable = np.mean, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of `stat` over seeds.

    `y`: shape (S,); `stat(array, axis=-1)` must reduce the last axis (np.mean,
    np.median do). Returns `(stat(y), lo, hi)`.
    """
    y = np.asarray(y, dtype=float).ravel()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, size=(n_boot, y.size))
    reps = np.asarray(stat(y[idx], axis=-1), dtype=float)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return float(stat(y, axis=-1)), float(lo), float(hi)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P[Bin(n, p) <= k], exact by a log-space sum (no SciPy at run time)."""
    k = int(k)
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def binom_sf(k: int, n: int, p: float) -> float:
    """P[Bin(n, p) > k]."""
    return max(0.0, 1.0 - binom_cdf(k, n, p))
