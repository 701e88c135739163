"""The named constructions of docs/CONSTRUCTIONS.md.

Each construction is a function returning an :class:`Instance` (data law, prompt law,
the learner's class, and the quantities the theory needs). Closed-form predictions and
closed-form learners live beside them in the submodules:

- :mod:`covsim.instances.statistical` — MLE constructions (§1–6, 9, 10);
- :mod:`covsim.instances.optimization` — the SGD lower-bound construction (§7);
- :mod:`covsim.instances.selection` — misspecification and the mode trade-off (§8, 11).
"""

from covsim.instances import optimization, selection, statistical
from covsim.instances._base import Ball, Box, Instance
from covsim.instances.optimization import sgd_horizon_lower_bound
from covsim.instances.selection import misspecified_pair, mode_tradeoff
from covsim.instances.statistical import (
    bernoulli_missing_mass,
    bernoulli_tightness_pair,
    coarse_tightness,
    fine_tightness,
    horizon_mixture,
    kl_horizon_lower_bound,
    pivotal_tokens,
    variance_lower_bound,
)

__all__ = [
    "Ball",
    "Box",
    "Instance",
    "bernoulli_missing_mass",
    "bernoulli_tightness_pair",
    "kl_horizon_lower_bound",
    "coarse_tightness",
    "fine_tightness",
    "variance_lower_bound",
    "pivotal_tokens",
    "horizon_mixture",
    "sgd_horizon_lower_bound",
    "misspecified_pair",
    "mode_tradeoff",
    "statistical",
    "optimization",
    "selection",
]
