"""covsim — a JAX simulator for the theory of coverage in next-token prediction.

Reference: F. Chen et al., "The Coverage Principle: How Pre-Training Enables
Post-Training", arXiv 2510.15020 (ICLR 2026). Formulas are in docs/THEORY.md.
"""

from covsim import bon, bounds, constraints, decoding, instances, selection
from covsim._validate import runtime_checks
from covsim.constraints import Ball, Box
from covsim.fit import fit_mle, fit_mle_finite
from covsim.fit import sgd
from covsim.fit.sgd import SGDConfig, TrainResult, default_config, make_optimizer, train
from covsim.selection import offset_tournament, tournament
from covsim.exact import (
    Bracket,
    coverage_bracket,
    coverage_independent,
    enumerate_sequences,
    hellinger2,
    inherent_variance,
    kl,
    per_step_hellinger2,
    per_step_kl,
)
from covsim.metrics import MCEstimate, coverage, pass_at_k, pass_at_n, stopped_kl
from covsim.models import (
    LinearModel,
    TabularModel,
    log_prob,
    next_token_log_probs,
    pad_horizon,
    sample,
    token_log_probs,
)

__version__ = "0.1.0"

__all__ = [
    "Ball",
    "Box",
    "constraints",
    "TabularModel",
    "LinearModel",
    "log_prob",
    "token_log_probs",
    "next_token_log_probs",
    "sample",
    "pad_horizon",
    "kl",
    "hellinger2",
    "inherent_variance",
    "per_step_kl",
    "per_step_hellinger2",
    "coverage",
    "coverage_bracket",
    "coverage_independent",
    "Bracket",
    "MCEstimate",
    "enumerate_sequences",
    "stopped_kl",
    "pass_at_n",
    "pass_at_k",
    "bounds",
    "fit_mle",
    "fit_mle_finite",
    "sgd",
    "SGDConfig",
    "TrainResult",
    "make_optimizer",
    "default_config",
    "train",
    "tournament",
    "offset_tournament",
    "selection",
    "bon",
    "decoding",
    "instances",
    "runtime_checks",
]
