"""The common container returned by every named construction (docs/CONSTRUCTIONS.md)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import Array

from covsim.constraints import Ball, Box
from covsim.models import LinearModel, SequenceModel

__all__ = ["Ball", "Box", "Instance"]


class Instance(eqx.Module):
    """A named construction: the data law, the prompt law and the learner's class.

    **Fields:**

    - `name`: the construction's name (static).
    - `truth`: the data law π_D (a :class:`~covsim.TabularModel` or :class:`~covsim.LinearModel`).
    - `mu`: prompt distribution ``(P,)``.
    - `features`: the learner's feature tensor ``(P, H, V+1, V, d)`` for AR-linear classes, else None.
    - `constraint`: :class:`Ball` or :class:`Box` (Θ) for AR-linear classes, else None.
    - `candidates`: for finite classes, a tuple of candidate models (π_D may or may not be one).
    - `info`: the quantities the theory needs (B, σ⋆², θ⋆, log N range, closed-form
      predictions, ...), documented by each construction.

    Instances are pytrees (equinox Modules), so a construction with a random truth can
    be built inside ``jax.vmap`` over seed keys.
    """

    name: str = eqx.field(static=True)
    truth: SequenceModel
    mu: Array
    features: Array | None = None
    constraint: Ball | Box | None = None
    candidates: tuple | None = None
    info: dict[str, Any] = eqx.field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return self.truth.horizon

    def model(self, theta) -> LinearModel:
        """The learner's AR-linear model at parameter ``theta``."""
        if self.features is None:
            raise ValueError(f"instance {self.name!r} has no AR-linear class (features is None)")
        return LinearModel(self.features, jnp.asarray(theta, dtype=self.features.dtype), self.truth.horizon)

    def fit_kwargs(self) -> dict:
        """Keyword arguments for :func:`covsim.fit_mle` that encode Θ (``radius=`` or ``box=``)."""
        if isinstance(self.constraint, Ball):
            return {"radius": self.constraint.radius}
        if isinstance(self.constraint, Box):
            return {"box": (self.constraint.lower, self.constraint.upper)}
        return {}
