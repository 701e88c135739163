"""Argument validation at the public boundary (runs before any compilation).

Every check raises ``ValueError`` naming the argument, the value received and what is
allowed. Checks on values are skipped for traced arrays (inside ``jit``/``vmap`` the
caller is trusted; shapes are still checked).
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = [
    "is_concrete",
    "check_key",
    "check_distribution",
    "check_thresholds",
    "check_pair",
    "check_positive_int",
]


def is_concrete(*arrays) -> bool:
    """True when none of the arrays is a JAX tracer (values can be inspected)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_key(key, where: str) -> None:
    if key is None:
        raise ValueError(f"{where}: `key` is required (a jax.random key), got None")


def check_positive_int(value, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_distribution(mu, num_prompts: int | None, where: str, name: str = "mu") -> None:
    """``mu`` must be a probability vector of shape ``(num_prompts,)``."""
    shape = np.shape(mu)
    if len(shape) != 1:
        raise ValueError(f"{where}: {name} must have shape (P,), got shape {shape}")
    if num_prompts is not None and num_prompts != 1 and shape[0] != num_prompts:
        raise ValueError(
            f"{where}: {name} has {shape[0]} prompts but the models have P={num_prompts}"
        )
    if not is_concrete(mu):
        return
    values = np.asarray(mu, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{where}: {name} must be non-negative and finite, got {values}")
    total = values.sum()
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{where}: {name} must sum to 1, got sum {total!r}")


def check_thresholds(N, where: str, *, strict: bool = False):
    """Coverage thresholds: every ``N >= 1`` (``> 1`` when ``strict``), no NaN."""
    if not is_concrete(N):
        return
    values = np.asarray(N, dtype=float)
    bad = np.isnan(values) | ((values <= 1) if strict else (values < 1))
    if np.any(bad):
        allowed = "> 1" if strict else ">= 1"
        raise ValueError(f"{where}: N must be {allowed}, got {float(values[bad].ravel()[0])!r}")


def check_pair(p, q, mu, where: str) -> None:
    """Shapes of a reference ``p``, a model ``q`` and the prompt law ``mu`` must agree."""
    if p.horizon != q.horizon:
        raise ValueError(
            f"{where}: p and q must have the same horizon, got H={p.horizon} and H={q.horizon}"
        )
    if p.vocab_size != q.vocab_size:
        raise ValueError(
            f"{where}: p and q must have the same vocabulary size, got V={p.vocab_size} "
            f"and V={q.vocab_size}"
        )
    prompts = {p.num_prompts, q.num_prompts} - {1}
    if len(prompts) > 1:
        raise ValueError(
            f"{where}: p and q have different numbers of prompts: {p.num_prompts} and "
            f"{q.num_prompts}"
        )
    check_distribution(mu, prompts.pop() if prompts else None, where)
