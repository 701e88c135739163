"""Estimators: constrained maximum likelihood (arXiv 2510.15020 v2, §2; THEORY.md §6.1)."""

from covsim.fit.mle import (
    MLEDiagnostics,
    fit_mle,
    fit_mle_finite,
    log_likelihoods,
    sufficient_statistics,
)

__all__ = [
    "fit_mle",
    "fit_mle_finite",
    "sufficient_statistics",
    "MLEDiagnostics",
    "log_likelihoods",
]
