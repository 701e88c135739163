"""Tests of declared rules and their judge: every kind, every gate, and the t quantile."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from covsim.experiments.check import Analysis, Check, Verdict
from covsim.experiments.rules import MIN_SEEDS, Evidence, Rule, judge, t_quantile


def rule(kind, threshold, **kw):
    return Rule("r", kind, "stat", threshold, regime="all cells", theory="§0", **kw)


@pytest.mark.parametrize("df", [1, 2, 3, 5, 7, 8, 15, 31, 100])
@pytest.mark.parametrize("p", [0.9, 0.95, 0.975, 0.995])
def test_t_quantile_matches_scipy(p, df):
    # Cornish–Fisher error shrinks like df^-5; 2% at df = 3, 1e-3 from df = 7 on
    tol = 2e-2 if df < 7 else 1.5e-3
    assert t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=tol)


@pytest.mark.parametrize("kind,thr,lo,hi,expected", [
    ("band", (-1.2, -0.8), -1.1, -0.9, Verdict.HOLDS),
    ("band", (-1.2, -0.8), -0.7, -0.5, Verdict.FAILS),
    ("band", (-1.2, -0.8), -1.0, -0.7, Verdict.INCONCLUSIVE),
    ("cap", 0.1, -0.3, 0.05, Verdict.HOLDS),
    ("cap", 0.1, 0.2, 0.4, Verdict.FAILS),
    ("cap", 0.1, 0.0, 0.2, Verdict.INCONCLUSIVE),
    ("floor", 0.5, 0.6, 0.9, Verdict.HOLDS),
    ("floor", 0.5, 0.1, 0.4, Verdict.FAILS),
    ("floor", 0.5, 0.4, 0.6, Verdict.INCONCLUSIVE),
    ("paired", 0.0, 0.01, 0.02, Verdict.HOLDS),
    ("paired", 0.0, -0.02, -0.01, Verdict.FAILS),
])
def test_interval_kinds(kind, thr, lo, hi, expected):
    ev = Evidence.interval((lo + hi) / 2, lo, hi, seeds=MIN_SEEDS)
    assert judge(rule(kind, thr), ev).verdict == expected


def test_power_floor_makes_few_seeds_inconclusive():
    ev = Evidence.interval(-1.0, -1.0, -1.0, seeds=1)  # a zero-width CI from one seed
    a = judge(rule("band", (-1.2, -0.8)), ev)
    assert a.verdict == Verdict.INCONCLUSIVE and "power floor" in a.reason
    assert judge(rule("band", (-1.2, -0.8)), Evidence.exact_value(-1.0)).verdict == Verdict.HOLDS


def test_vacuity_gate():
    r = rule("cap", 0.5, bound="B^2/n", trivial=1.0)
    ev = Evidence.interval(0.1, 0.0, 0.2, seeds=16, bound_values=[1.0, 2.0])
    a = judge(r, ev)
    assert a.verdict == Verdict.INCONCLUSIVE and "vacuous" in a.reason
    ev = Evidence.interval(0.1, 0.0, 0.2, seeds=16, bound_values=[0.3, 2.0])
    assert judge(r, ev).verdict == Verdict.HOLDS
    with pytest.raises(ValueError, match="bound_values"):
        judge(r, Evidence.interval(0.1, 0.0, 0.2, seeds=16))


def test_vacuity_gate_for_lower_bounds():
    r = rule("probability_at_least", 0.25, bound="kappa H / (2n)", bound_side="lower")
    assert r.trivial == 0.0
    a = judge(r, Evidence.trials(30, 32, bound_values=[0.0, 0.0]))
    assert a.verdict == Verdict.INCONCLUSIVE and "vacuous" in a.reason
    assert judge(r, Evidence.trials(30, 32, bound_values=[0.0, 0.2])).verdict == Verdict.HOLDS
    with pytest.raises(ValueError, match="bound_side"):
        rule("cap", 1.0, bound="b", bound_side="left")


def test_zero_violations_and_invalid_evidence():
    r = rule("zero_violations", None)
    assert judge(r, Evidence.count(0, 100, seeds=16)).verdict == Verdict.HOLDS
    assert judge(r, Evidence.count(1, 100, seeds=16)).verdict == Verdict.FAILS
    assert judge(r, Evidence.count(0, 0, seeds=16)).verdict == Verdict.INCONCLUSIVE
    assert judge(r, None).verdict == Verdict.INCONCLUSIVE
    bad = Evidence.invalid("all seeds zero", seeds=16)
    assert judge(rule("cap", 1.0), bad).verdict == Verdict.INCONCLUSIVE


def test_binomial_test_is_exact_one_sided():
    r = rule("probability_at_least", 0.25)
    assert judge(r, Evidence.trials(20, 32)).verdict == Verdict.HOLDS   # 0.62 >> 0.25
    assert judge(r, Evidence.trials(1, 64)).verdict == Verdict.FAILS    # 0.016 << 0.25
    assert judge(r, Evidence.trials(9, 32)).verdict == Verdict.INCONCLUSIVE
    # the FAILS threshold is the exact binomial tail: P[Bin(64, .25) <= k] < 0.025
    k_fail = max(k for k in range(65) if sps.binom.cdf(k, 64, 0.25) < 0.025)
    assert judge(r, Evidence.trials(k_fail, 64)).verdict == Verdict.FAILS
    assert judge(r, Evidence.trials(k_fail + 1, 64)).verdict != Verdict.FAILS


def test_mean_and_paired_use_student_t():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, size=8)
    ev = Evidence.mean(x)
    half = sps.t.ppf(0.975, 7) * x.std(ddof=1) / math.sqrt(8)
    assert ev.lo == pytest.approx(x.mean() - half, rel=2e-3)
    ev = Evidence.paired(x + 0.5, x)
    assert ev.estimate == pytest.approx(0.5) and ev.hi - ev.lo < 1e-9  # no spread in the difference


def test_rules_are_validated():
    with pytest.raises(ValueError, match="kind"):
        rule("slope", 1.0)
    with pytest.raises(ValueError, match="band"):
        rule("band", 1.0)
    with pytest.raises(ValueError, match="probability"):
        rule("probability_at_least", 1.5)
    with pytest.raises(ValueError, match="non-empty"):
        Rule("r", "cap", "stat", 1.0, regime="", theory="§1")


def test_check_judge_refuses_undeclared_evidence_and_duplicates():
    r = rule("cap", 1.0)
    chk = Check("c", "claim", "ref", grid=lambda s: [{}], run_cell=None, analyze=None, rules=[r])
    with pytest.raises(ValueError, match="undeclared"):
        chk.judge(Analysis({"other": Evidence.exact_value(0.0)}))
    summary = chk.judge(Analysis({}))
    assert summary.verdict == Verdict.INCONCLUSIVE
    with pytest.raises(ValueError, match="unique"):
        Check("c", "claim", "ref", grid=None, run_cell=None, analyze=None, rules=[r, r])
