r"""Declared rules: what a theory check asserts, stated as data before any run.

A :class:`Rule` names one statistic, the kind of test applied to it, the band or
threshold, the regime (which cells it uses) and the THEORY.md result it tests. A
check's ``analyze`` computes one :class:`Evidence` per rule (and, apart, any number
of :class:`Observation`\ s); :func:`judge` applies the rule to its evidence. Nothing in
a rule depends on the data, so a rule change is a visible diff of the check module.

Kinds (``Rule.kind``):

- ``"band"``: the statistic's CI lies inside ``[lo, hi]`` → *holds*; disjoint → *fails*.
- ``"cap"``: the statistic is at most ``threshold``: CI upper end ≤ threshold → *holds*;
  CI lower end > threshold → *fails*.
- ``"floor"``: the statistic is at least ``threshold`` (mirror of ``cap``).
- ``"paired"``: a paired comparison on the same data — the mean paired difference
  (a − b) is at least ``threshold`` (a Student-t CI, as ``floor``).
- ``"zero_violations"``: an exact inequality checked item by item: 0 violations among
  > 0 checked → *holds*; any violation → *fails*.
- ``"probability_at_least"``: P[event] ≥ ``threshold`` by an exact one-sided binomial
  test at level (1 − ``level``)/2 each way: the data reject P ≥ p → *fails*; they reject
  P ≤ p → *holds*; else *inconclusive*.

Gates applied before the kind's test, in order (each gives *inconclusive*):

1. **power floor** — evidence from fewer than ``Rule.min_seeds`` seeds (default 8);
   evidence marked ``exact`` (a closed-form or enumerated number, no seeds) is exempt;
2. **vacuity** — a rule with ``bound`` set compares a metric with a bound; an upper
   bound (``bound_side="upper"``) at or above ``Rule.trivial`` (1 for coverage) in every
   cell the rule uses, or a lower bound (``bound_side="lower"``) at or below it (0 for a
   non-negative metric), cannot bite there;
3. **invalid evidence** — the statistic could not be computed (``Evidence.why``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from covsim.experiments.check import Assertion, Verdict, to_jsonable

__all__ = [
    "KINDS",
    "Rule",
    "Evidence",
    "Observation",
    "judge",
    "t_quantile",
    "MIN_SEEDS",
]

KINDS = ("band", "cap", "floor", "paired", "zero_violations", "probability_at_least")
MIN_SEEDS = 8


@dataclass(frozen=True)
class Rule:
    """One declared assertion of a theory check.

    **Fields**

    - `name`: short unique name within the check (the key of its evidence).
    - `kind`: one of :data:`KINDS`.
    - `statistic`: what is measured, in words (e.g. "log–log slope of mean Cov_16 in H").
    - `threshold`: a float (cap, floor, paired, probability_at_least) or a pair
      ``(lo, hi)`` (band); ``None`` for zero_violations.
    - `regime`: which cells the rule uses, in words (the regime gate).
    - `theory`: the THEORY.md line it tests, quoted (e.g. "§5.2: Cov_N ≤ 1/(2n)").
    - `bound`: the bound the metric is compared with, in words, or ``None``; when set,
      the vacuity gate applies and the evidence must carry `bound_values`.
    - `bound_side`: ``"upper"`` (the metric is claimed below the bound) or ``"lower"``.
    - `trivial`: the value at which the bound says nothing: an upper bound at or above it,
      or a lower bound at or below it, is vacuous (default 1 for upper bounds, as for
      coverage; 0 for lower bounds).
    - `level`: confidence level of intervals and tests. `min_seeds`: the power floor.
    """

    name: str
    kind: str
    statistic: str
    threshold: float | tuple[float, float] | None
    regime: str
    theory: str
    bound: str | None = None
    trivial: float | None = None
    level: float = 0.95
    min_seeds: int = MIN_SEEDS
    bound_side: str = "upper"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Rule {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "band":
            ok = (isinstance(self.threshold, (tuple, list)) and len(self.threshold) == 2
                  and float(self.threshold[0]) <= float(self.threshold[1]))
            if not ok:
                raise ValueError(f"Rule {self.name!r}: a band needs threshold=(lo, hi) with lo <= hi, "
                                 f"got {self.threshold!r}")
            object.__setattr__(self, "threshold", (float(self.threshold[0]), float(self.threshold[1])))
        elif self.kind == "zero_violations":
            if self.threshold is not None:
                raise ValueError(f"Rule {self.name!r}: zero_violations takes threshold=None, "
                                 f"got {self.threshold!r}")
        else:
            if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
                raise ValueError(f"Rule {self.name!r}: kind {self.kind!r} needs a finite float "
                                 f"threshold, got {self.threshold!r}")
            if self.kind == "probability_at_least" and not 0.0 < self.threshold < 1.0:
                raise ValueError(f"Rule {self.name!r}: a probability threshold must be in (0, 1), "
                                 f"got {self.threshold!r}")
            object.__setattr__(self, "threshold", float(self.threshold))
        if self.bound_side not in ("upper", "lower"):
            raise ValueError(f"Rule {self.name!r}: bound_side must be 'upper' or 'lower', "
                             f"got {self.bound_side!r}")
        if self.trivial is None:
            object.__setattr__(self, "trivial", 1.0 if self.bound_side == "upper" else 0.0)
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"Rule {self.name!r}: level must be in (0, 1), got {self.level!r}")
        for attr in ("name", "statistic", "regime", "theory"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                raise ValueError(f"Rule {self.name!r}: {attr} must be a non-empty string")

    def describe(self) -> str:
        """One line: kind, threshold, statistic, regime and THEORY line."""
        if self.kind == "band":
            test = f"in [{self.threshold[0]:g}, {self.threshold[1]:g}]"
        elif self.kind == "cap":
            test = f"<= {self.threshold:g}"
        elif self.kind in ("floor", "paired"):
            test = f">= {self.threshold:g}"
        elif self.kind == "probability_at_least":
            test = f"P >= {self.threshold:g} (binomial test)"
        else:
            test = "0 violations"
        op = ">=" if self.bound_side == "upper" else "<="
        bound = (f"; vs {self.bound_side} bound {self.bound} (vacuous if {op} {self.trivial:g})"
                 if self.bound else "")
        return (f"[{self.kind}] {self.statistic} {test}; cells: {self.regime}{bound}; "
                f"tests {self.theory}")

    def to_json(self) -> dict:
        return to_jsonable({
            "name": self.name, "kind": self.kind, "statistic": self.statistic,
            "threshold": self.threshold, "regime": self.regime, "theory": self.theory,
            "bound": self.bound, "bound_side": self.bound_side, "trivial": self.trivial,
            "level": self.level,
            "min_seeds": self.min_seeds,
        })


@dataclass
class Evidence:
    """The statistic a rule is judged on, as computed by a check's ``analyze``.

    Use the constructors: :meth:`interval`, :meth:`from_fit`, :meth:`paired`,
    :meth:`count`, :meth:`trials`, :meth:`exact_value`, :meth:`invalid`.

    - `estimate`, `lo`, `hi`: point value and CI (band, cap, floor, paired).
    - `violations`, `checked`: for zero_violations. `successes`, `trials`: for
      probability_at_least.
    - `seeds`: seeds behind the statistic (power floor); ``exact=True`` exempts it.
    - `bound_values`: the bound's value in each cell the rule uses (vacuity gate).
    - `cells`: the cells used, for the record. `details`: anything else (JSON-able).
    """

    estimate: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    violations: int | None = None
    checked: int | None = None
    successes: int | None = None
    num_trials: int | None = None
    seeds: int = 0
    exact: bool = False
    bound_values: Sequence[float] | None = None
    cells: Any = None
    valid: bool = True
    why: str = ""
    details: dict = field(default_factory=dict)

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def interval(cls, estimate, lo, hi, *, seeds: int, **kw) -> "Evidence":
        """A point estimate with its CI, from `seeds` seeds."""
        vals = [float(estimate), float(lo), float(hi)]
        if not all(math.isfinite(v) for v in vals):
            return cls.invalid(f"non-finite estimate or CI {vals}", seeds=seeds, **kw)
        return cls(estimate=vals[0], lo=vals[1], hi=vals[2], seeds=int(seeds), **kw)

    @classmethod
    def from_fit(cls, fit, *, seeds: int, **kw) -> "Evidence":
        """From a :class:`~covsim.experiments.stats.SlopeFit` (its bootstrap CI)."""
        details = {**kw.pop("details", {}), "fit": fit.to_dict()}
        if not fit.valid:
            return cls.invalid(fit.why, seeds=seeds, details=details, **kw)
        return cls.interval(fit.slope, fit.lo, fit.hi, seeds=seeds, details=details, **kw)

    @classmethod
    def mean(cls, values, *, level: float = 0.95, **kw) -> "Evidence":
        """Mean of per-seed `values` (shape (S,)) with a Student-t CI at `level`."""
        v = np.asarray(values, dtype=float).ravel()
        if v.size == 0 or not np.all(np.isfinite(v)):
            return cls.invalid(f"need finite per-seed values, got {v.size} value(s) "
                               f"({int(np.sum(~np.isfinite(v)))} non-finite)", seeds=v.size, **kw)
        m = float(v.mean())
        if v.size < 2:
            return cls(estimate=m, lo=m, hi=m, seeds=1, **kw)
        half = t_quantile(0.5 + level / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
        return cls(estimate=m, lo=m - half, hi=m + half, seeds=int(v.size), **kw)

    @classmethod
    def paired(cls, a, b, *, level: float = 0.95, **kw) -> "Evidence":
        """Paired differences a − b (same seeds, same data) with a Student-t CI."""
        a = np.asarray(a, dtype=float).ravel()
        b = np.asarray(b, dtype=float).ravel()
        if a.shape != b.shape:
            return cls.invalid(f"paired arrays differ in shape: {a.shape} vs {b.shape}", seeds=0, **kw)
        return cls.mean(a - b, level=level, **kw)

    @classmethod
    def count(cls, violations, checked, *, seeds: int, **kw) -> "Evidence":
        """An exact inequality checked `checked` times with `violations` violations."""
        return cls(violations=int(violations), checked=int(checked), seeds=int(seeds), **kw)

    @classmethod
    def trials(cls, successes, trials, *, seeds: int | None = None, **kw) -> "Evidence":
        """`successes` of `trials` independent trials had the event."""
        trials = int(trials)
        return cls(successes=int(successes), num_trials=trials,
                   seeds=trials if seeds is None else int(seeds), **kw)

    @classmethod
    def exact_value(cls, value, **kw) -> "Evidence":
        """A number computed exactly (closed form, enumeration): no CI, no power floor."""
        v = float(value)
        if not math.isfinite(v):
            return cls.invalid(f"exact value is not finite: {v}", exact=True, **kw)
        return cls(estimate=v, lo=v, hi=v, exact=True, **kw)

    @classmethod
    def invalid(cls, why: str, **kw) -> "Evidence":
        """No statistic could be computed, with the reason."""
        return cls(valid=False, why=str(why), **kw)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in (
            "estimate", "lo", "hi", "violations", "checked", "successes", "num_trials",
            "seeds", "exact", "bound_values", "cells", "valid", "why", "details")}
        return to_jsonable({k: v for k, v in out.items() if v is not None})


@dataclass
class Observation:
    """A number reported for information: never part of a verdict."""

    name: str
    value: Any
    note: str = ""

    def to_json(self) -> dict:
        return to_jsonable({"name": self.name, "value": self.value, "note": self.note})

    @classmethod
    def from_json(cls, obj: Mapping) -> "Observation":
        return cls(obj["name"], obj.get("value"), obj.get("note", ""))


# -- statistics helpers -----------------------------------------------------------------
def t_quantile(p: float, df: int) -> float:
    r"""Quantile of Student's t with `df` degrees of freedom (Cornish–Fisher, 4 terms).

    Accurate to about 1e-3 for df ≥ 5 at the usual levels; for df ≤ 4 the exact closed
    forms are used for df = 1, 2 and the expansion is refined by bisection on the CDF.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        a = 4 * p * (1 - p)
        return (2 * p - 1) * math.sqrt(2 / a)
    z = NormalDist().inv_cdf(p)
    v = float(df)
    t = (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
         + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
         + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))
    return t


def _binom_cdf(k: int, n: int, p: float) -> float:
    from covsim.experiments.stats import binom_cdf

    return binom_cdf(k, n, p)


# -- the judge --------------------------------------------------------------------------
def _inconclusive(rule: Rule, why: str, ev: Evidence | None) -> Assertion:
    return Assertion(rule.name, Verdict.INCONCLUSIVE, why, _details(rule, ev))


def _details(rule: Rule, ev: Evidence | None) -> dict:
    return {"rule": rule.to_json(), "evidence": ev.to_json() if ev is not None else None}


def _interval_text(ev: Evidence, level: float) -> str:
    if ev.exact:
        return f"exact value {ev.estimate:.4g}"
    return f"{ev.estimate:.4g}, {level:.0%} CI [{ev.lo:.4g}, {ev.hi:.4g}] from {ev.seeds} seeds"


def judge(rule: Rule, ev: Evidence | None) -> Assertion:
    """Apply `rule` to its evidence: power floor, vacuity gate, then the kind's test."""
    if ev is None:
        return _inconclusive(rule, "no evidence was computed for this rule", None)
    if not ev.exact and ev.seeds < rule.min_seeds:
        return _inconclusive(rule, f"power floor: {ev.seeds} seed(s) < {rule.min_seeds}; "
                                   "no interval is read from so few", ev)
    if rule.bound is not None:
        if ev.bound_values is None:
            raise ValueError(f"rule {rule.name!r} compares with a bound; its evidence must "
                             "carry bound_values (the bound in each cell it uses)")
        bv = np.asarray(ev.bound_values, dtype=float).ravel()
        if bv.size == 0:
            return _inconclusive(rule, "no cell inside the rule's regime", ev)
        if rule.bound_side == "upper" and np.all(bv >= rule.trivial):
            return _inconclusive(rule, f"vacuous: the bound ({rule.bound}) is >= {rule.trivial:g} "
                                       f"in every cell it uses (min {bv.min():.3g})", ev)
        if rule.bound_side == "lower" and np.all(bv <= rule.trivial):
            return _inconclusive(rule, f"vacuous: the lower bound ({rule.bound}) is <= "
                                       f"{rule.trivial:g} in every cell it uses (max {bv.max():.3g})", ev)
    if not ev.valid:
        return _inconclusive(rule, f"no valid statistic: {ev.why}", ev)
    det = _details(rule, ev)
    kind, thr = rule.kind, rule.threshold

    if kind == "zero_violations":
        if ev.violations is None or ev.checked is None:
            raise ValueError(f"rule {rule.name!r}: zero_violations needs Evidence.count")
        if ev.violations > 0:
            return Assertion(rule.name, Verdict.FAILS,
                             f"{ev.violations} violation(s) in {ev.checked} checks", det)
        if ev.checked <= 0:
            return Assertion(rule.name, Verdict.INCONCLUSIVE, "nothing was checked", det)
        return Assertion(rule.name, Verdict.HOLDS, f"0 violations in {ev.checked} checks", det)

    if kind == "probability_at_least":
        if ev.successes is None or ev.num_trials is None:
            raise ValueError(f"rule {rule.name!r}: probability_at_least needs Evidence.trials")
        k, n = ev.successes, ev.num_trials
        alpha = (1 - rule.level) / 2
        p_low = _binom_cdf(k, n, thr)          # P[X <= k | p = thr]: small → P < thr
        p_high = 1.0 - _binom_cdf(k - 1, n, thr)  # P[X >= k | p = thr]: small → P > thr
        text = f"{k}/{n} = {k / max(n, 1):.3f} against P >= {thr:g}"
        det["evidence"]["p_values"] = {"reject_at_least": p_low, "reject_at_most": p_high}
        if n <= 0:
            return Assertion(rule.name, Verdict.INCONCLUSIVE, "no trials", det)
        if p_low < alpha:
            return Assertion(rule.name, Verdict.FAILS,
                             f"{text}: P[X <= {k}] = {p_low:.2g} < {alpha:g} at P = {thr:g}", det)
        if p_high < alpha:
            return Assertion(rule.name, Verdict.HOLDS,
                             f"{text}: P[X >= {k}] = {p_high:.2g} < {alpha:g} at P = {thr:g}", det)
        return Assertion(rule.name, Verdict.INCONCLUSIVE, f"{text}: the test cannot tell", det)

    text = f"{rule.statistic}: {_interval_text(ev, rule.level)}"
    if kind == "band":
        lo, hi = thr
        text += f", band [{lo:g}, {hi:g}]"
        if lo <= ev.lo and ev.hi <= hi:
            return Assertion(rule.name, Verdict.HOLDS, f"{text}: inside", det)
        if ev.hi < lo or ev.lo > hi:
            return Assertion(rule.name, Verdict.FAILS, f"{text}: disjoint", det)
        return Assertion(rule.name, Verdict.INCONCLUSIVE, f"{text}: overlaps only partly", det)
    if kind == "cap":
        text += f", at most {thr:g}"
        if ev.hi <= thr:
            return Assertion(rule.name, Verdict.HOLDS, f"{text}: below", det)
        if ev.lo > thr:
            return Assertion(rule.name, Verdict.FAILS, f"{text}: entirely above", det)
        return Assertion(rule.name, Verdict.INCONCLUSIVE, f"{text}: straddles the cap", det)
    # floor, paired
    text += f", at least {thr:g}"
    if ev.lo >= thr:
        return Assertion(rule.name, Verdict.HOLDS, f"{text}: above", det)
    if ev.hi < thr:
        return Assertion(rule.name, Verdict.FAILS, f"{text}: entirely below", det)
    return Assertion(rule.name, Verdict.INCONCLUSIVE, f"{text}: straddles the floor", det)
