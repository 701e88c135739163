"""Theory checks: one module per claim of arXiv 2510.15020, each defining `CHECK`.

Run one with `covsim check NAME` or `python -m theory_checks.NAME`; list them
with `covsim list`. To add a check, write `theory_checks/<name>.py` with a
module-level `CHECK = covsim.experiments.check.Check(...)` and append its name to
`CHECK_NAMES` below.
"""

from __future__ import annotations

import importlib

CHECK_NAMES: list[str] = [
    "inequalities",
    "horizon",
    "mle_rates",
    "variance_lower_bound",
    "missing_mass",
    "tightness",
    "sgd_horizon",
    "sgd_lower_bound",
    "normalized_sgd_rates",
    "ttt",
    "distillation",
    "mode_tradeoff",
    "tournament",
    "offset_tournament",
    "misspecification",
    "best_of_n",
]


def _validate(name: str) -> None:
    if name not in CHECK_NAMES:
        raise ValueError(f"unknown check {name!r}; known checks: {', '.join(CHECK_NAMES)}")


def load(name: str):
    """Import `theory_checks.<name>` and return its `CHECK` (ValueError if unknown)."""
    _validate(name)
    module = importlib.import_module(f"{__name__}.{name}")
    check = getattr(module, "CHECK", None)
    if check is None:
        raise AttributeError(f"theory_checks.{name} defines no CHECK")
    return check


def all_checks() -> list:
    """Every registered check, in `CHECK_NAMES` order (imports them all)."""
    return [load(name) for name in CHECK_NAMES]
