"""Parameter sets Θ of the AR-linear class, shared by the constrained MLE and the SGD family.

- :class:`Ball` — Θ = {θ : ‖θ‖₂ ≤ radius}, the paper's Assumption 2.2 (radius 1 there);
- :class:`Box` — Θ = {θ : lower ≤ θ ≤ upper} coordinatewise (a flagged departure from
  Assumption 2.2, used by some constructions).

`covsim.fit_mle(..., constraint=Ball(3.0))` and `covsim.fit.sgd.train(...)` take them; the
older `fit_mle(..., radius=)` / `box=` keywords keep working. Both are NamedTuples, hence
pytrees: a `Box` with array bounds can be vmapped.
"""

from __future__ import annotations

from typing import NamedTuple

from jax import Array

__all__ = ["Ball", "Box"]


class Ball(NamedTuple):
    """Θ = {θ : ‖θ‖₂ ≤ radius} (arXiv 2510.15020 v2, Assumption 2.2 with radius 1)."""

    radius: float


class Box(NamedTuple):
    """Θ = {θ : lower ≤ θ ≤ upper} coordinatewise (a flagged departure from Assumption 2.2)."""

    lower: Array
    upper: Array
