"""Theory-check machinery: the Check data model with declared rules and negative controls,
the judge, the resumable grid runner, results I/O, the statistics (log–log slopes with
bootstrap CIs) and the entry-point registry of checks."""

from covsim.experiments.check import Analysis, Assertion, Check, Control, Summary, Verdict
from covsim.experiments.rules import Evidence, Observation, Rule, judge
from covsim.experiments.results import ResultTable, atomic_write_json, atomic_write_text
from covsim.experiments.runner import (
    ConfigMismatchError,
    load_check,
    plot_check,
    run_check,
    run_checks,
)
from covsim.experiments.stats import (
    SlopeFit,
    bootstrap_ci,
    flat_assertion,
    growth_assertion,
    loglog_slope,
    mean_ci,
    monotone_assertion,
    no_growth_assertion,
    slope_assertion,
    zero_violation_assertion,
)

__all__ = [
    "Analysis", "Assertion", "Check", "Control", "Summary", "Verdict",
    "Evidence", "Observation", "Rule", "judge",
    "ResultTable", "atomic_write_json", "atomic_write_text",
    "ConfigMismatchError", "load_check", "plot_check", "run_check", "run_checks",
    "SlopeFit", "bootstrap_ci", "flat_assertion", "growth_assertion", "loglog_slope",
    "mean_ci", "monotone_assertion", "no_growth_assertion", "slope_assertion",
    "zero_violation_assertion",
]
