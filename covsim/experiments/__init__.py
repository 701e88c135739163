"""Theory-check machinery: the Check data model, the resumable grid runner,
results I/O and the statistics (log–log slopes with bootstrap CIs, assertions)."""

from covsim.experiments.check import Assertion, Check, Summary, Verdict
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
    "Assertion", "Check", "Summary", "Verdict",
    "ResultTable", "atomic_write_json", "atomic_write_text",
    "ConfigMismatchError", "load_check", "plot_check", "run_check", "run_checks",
    "SlopeFit", "bootstrap_ci", "flat_assertion", "growth_assertion", "loglog_slope",
    "mean_ci", "monotone_assertion", "no_growth_assertion", "slope_assertion",
    "zero_violation_assertion",
]
