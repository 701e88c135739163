"""Argument validation for the whole package: one module, one message format.

Every check names the function, the argument, what was wrong and what is allowed:
``"kl: mu must sum to 1, got sum 0.7"``.

- **Eager path** (concrete values): a ``ValueError`` before anything is compiled, with
  the offending value in the message.
- **Traced path** (inside ``jax.jit`` / ``jax.vmap``, where users call everything): the
  same check is attached to the array with equinox's ``eqx.error_if``, so it fires at
  run time with the same message (the value itself is not known while tracing, so the
  message says "(checked at run time)"). ``EQX_ON_ERROR`` controls how it fires
  (``raise`` by default; ``nan`` or ``breakpoint`` per equinox's documentation).

Functions that check values *return* the checked array (or model): callers must use the
returned value, so that the run-time check is part of the computation.

**Run-time checks and the persistent compilation cache.** A run-time check is a host
callback compiled into the program (equinox's ``error_if`` calls back into Python to raise).
JAX (0.10, ``jax/_src/compiler.py``, ``_cache_write``) never writes a program holding a host
callback to its persistent compilation cache ("Not writing persistent cache entry ... because
it uses host callbacks"), so every jitted function of a user that calls covsim on traced
values is compiled again in every new process, however warm the cache. The switch

- ``COVSIM_RUNTIME_CHECKS=0`` in the environment (read at import), or
- ``covsim.runtime_checks(False)`` (a plain call sets it for the process; ``with
  covsim.runtime_checks(False): ...`` sets it for the block),

leaves the traced checks out of programs traced while it is off: no callback, so the program
is cacheable. The trade-off: a bad *traced* value (NaN
logits, tokens out of range, a μ that does not sum to 1 inside ``jit``/``vmap``) then goes
undetected and gives a wrong or NaN result instead of an error. Eager checks (concrete values,
shapes, dtypes, Python arguments) are unaffected: they always raise ``ValueError``. The
default is ON. The switch acts when a function is *traced*: a function jitted earlier keeps
the checks it was traced with (JAX's in-memory jit cache does not see the switch), so set it
before the first call (the environment variable is the safe way). ``EQX_ON_ERROR=nan``
(equinox's own switch, also callback-free) is the alternative that keeps a signal: a failed
check turns the checked float array into NaN (integer arrays into their largest value).
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "runtime_checks",
    "runtime_checks_enabled",
    "is_concrete",
    "value_check",
    "check_key",
    "check_distribution",
    "guard_distribution",
    "check_thresholds",
    "check_pair",
    "check_model",
    "check_finite",
    "check_tokens",
    "check_positive_int",
    "check_real",
    "require",
    "concrete_values",
    "check_values",
]

MU_TOLERANCE = 1e-6
"""|Σ μ − 1| allowed for a prompt distribution."""


def _env_flag(value: str | None) -> bool:
    """``COVSIM_RUNTIME_CHECKS``: unset, ``1``, ``on``, ``true``, ``yes`` -> on; ``0``,
    ``off``, ``false``, ``no`` -> off; anything else is refused."""
    if value is None or value.strip().lower() in ("", "1", "on", "true", "yes"):
        return True
    if value.strip().lower() in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"COVSIM_RUNTIME_CHECKS must be 1/on/true/yes or 0/off/false/no, got {value!r}")


_RUNTIME_CHECKS = [_env_flag(os.environ.get("COVSIM_RUNTIME_CHECKS"))]


def runtime_checks_enabled() -> bool:
    """Whether traced value checks are compiled in (see the module docstring)."""
    return _RUNTIME_CHECKS[0]


class runtime_checks:
    """Turn covsim's run-time (traced) value checks on or off; eager checks always run.

    ``covsim.runtime_checks(False)`` switches them off for the process;
    ``with covsim.runtime_checks(False): ...`` only inside the block (the previous setting is
    restored on exit). Off, programs hold no host callback and JAX's persistent compilation
    cache can store them; a bad traced value then goes undetected (module docstring). It acts
    at trace time: functions jitted before the switch keep their checks.
    """

    def __init__(self, enabled: bool):
        if not isinstance(enabled, bool):
            raise ValueError(f"runtime_checks: enabled must be True or False, got {enabled!r}")
        self._previous = _RUNTIME_CHECKS[0]
        _RUNTIME_CHECKS[0] = enabled

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _RUNTIME_CHECKS[0] = self._previous
        return False


def _error_if(x, pred, message: str):
    """``eqx.error_if(x, pred, message)`` when run-time checks are on, else `x` unchanged."""
    if not _RUNTIME_CHECKS[0]:
        return x
    return eqx.error_if(x, pred, message)


def is_concrete(*arrays) -> bool:
    """True when none of the arrays is a JAX tracer (values can be inspected)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def value_check(x, bad, message: str, detail=None):
    """Refuse `x` where `bad` holds: eagerly ``ValueError(message + detail)``; under tracing,
    ``eqx.error_if(x, bad, message + " (checked at run time)")``. Returns `x` (checked).

    `detail` (a callable giving a string, evaluated only on failure) adds the offending
    value to the eager message, e.g. ``lambda: f", got sum {total}"``.
    """
    if is_concrete(bad):
        if bool(np.any(np.asarray(bad))):
            raise ValueError(message + (detail() if detail is not None else ""))
        return x
    return _error_if(x, jnp.any(bad), message + " (checked at run time)")


def check_key(key, where: str) -> None:
    if key is None:
        raise ValueError(f"{where}: `key` is required (a jax.random key), got None")


def check_positive_int(value, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_distribution(mu, num_prompts: int | None, where: str, name: str = "mu"):
    """``mu`` must be a probability vector of shape ``(num_prompts,)``: finite, non-negative,
    summing to 1 within 1e-6. Returns `mu` (checked; see :func:`value_check`)."""
    shape = np.shape(mu)
    if len(shape) != 1:
        raise ValueError(f"{where}: {name} must have shape (P,), got shape {shape}")
    if num_prompts is not None and num_prompts != 1 and shape[0] != num_prompts:
        raise ValueError(
            f"{where}: {name} has {shape[0]} prompts but the models have P={num_prompts}"
        )
    if is_concrete(mu):
        values = np.asarray(mu, dtype=float)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"{where}: {name} must be non-negative and finite, got {values}")
        total = values.sum()
        if abs(total - 1.0) > MU_TOLERANCE:
            raise ValueError(f"{where}: {name} must sum to 1, got sum {total!r}")
        return mu
    mu = jnp.asarray(mu)
    bad_entry = ~jnp.isfinite(mu) | (mu < 0)
    mu = value_check(mu, bad_entry, f"{where}: {name} must be non-negative and finite")
    return value_check(mu, jnp.abs(jnp.sum(mu) - 1.0) > MU_TOLERANCE, f"{where}: {name} must sum to 1")


def guard_distribution(out, mu, where: str, name: str = "mu"):
    """Attach the run-time checks of :func:`check_distribution` on a traced `mu` to `out`.

    For computations that may not use `mu` at all (one prompt): XLA drops a check whose
    output is unused, so the check is attached to the result instead. Returns `out`.
    """
    if is_concrete(mu) or not _RUNTIME_CHECKS[0]:
        return out
    mu = jnp.asarray(mu)
    bad = jnp.any(~jnp.isfinite(mu) | (mu < 0)) | (jnp.abs(jnp.sum(mu) - 1.0) > MU_TOLERANCE)
    return _error_if(out, bad, f"{where}: {name} must be non-negative, finite and sum to 1 "
                                  "(checked at run time)")


def check_thresholds(N, where: str, *, strict: bool = False):
    """Coverage thresholds: every ``N >= 1`` (``> 1`` when ``strict``), no NaN. Returns `N`."""
    allowed = "> 1" if strict else ">= 1"
    if is_concrete(N):
        values = np.asarray(N, dtype=float)
        bad = np.isnan(values) | ((values <= 1) if strict else (values < 1))
        if np.any(bad):
            raise ValueError(f"{where}: N must be {allowed}, got {float(values[bad].ravel()[0])!r}")
        return N
    N = jnp.asarray(N)
    bad = jnp.isnan(N) | ((N <= 1) if strict else (N < 1))
    return value_check(N, bad, f"{where}: N must be {allowed} and not NaN")


def check_finite(x, name: str, where: str):
    """Every entry of `x` finite (no NaN, no ±inf). Returns `x` (checked)."""
    message = f"{where}: {name} must be finite (no NaN or inf)"
    if is_concrete(x):
        bad = ~np.isfinite(np.asarray(x, dtype=float))
        return value_check(x, bad, message, lambda: f", got {int(bad.sum())} non-finite of {bad.size}")
    return value_check(x, ~jnp.isfinite(x), message)


def check_tokens(y, vocab: int, where: str, name: str = "y"):
    """Integer tokens in ``[0, vocab)``. Returns `y` (checked)."""
    if not jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
        raise ValueError(f"{where}: {name} must be an integer array, got dtype {jnp.asarray(y).dtype}")
    if is_concrete(y):
        values = np.asarray(y)
        bad = (values < 0) | (values >= vocab)
        return value_check(y, bad, f"{where}: {name} must hold tokens in [0, {vocab})",
                           lambda: f", got {values[bad].ravel()[0]}")
    y = jnp.asarray(y)
    return value_check(y, (y < 0) | (y >= vocab), f"{where}: {name} must hold tokens in [0, {vocab})")


@jax.jit
def _logits_refused(a):
    # NaN or +inf logits, or a context whose logits are all -inf (no token possible)
    return jnp.any(jnp.isnan(a) | jnp.isposinf(a)) | jnp.any(jnp.all(jnp.isneginf(a), axis=-1))


@jax.jit
def _any_nonfinite(a):
    return jnp.any(~jnp.isfinite(a))


def _model_bad(arrays: dict, concrete: bool) -> dict:
    """Per-array boolean masks of refused entries of a model's parameters."""
    if concrete:  # one compiled pass over the parameters (NumPy would take several);
        # concrete parameters may meet a jit trace (a model closed over): run them now
        with jax.ensure_compile_time_eval():
            return {name: bool(_logits_refused(a) if name == "logits" else _any_nonfinite(a))
                    for name, a in arrays.items()}
    xp = jnp
    out = {}
    for name, a in arrays.items():
        a = xp.asarray(a)
        if name == "logits":
            # NaN or +inf logits, or a context whose logits are all -inf (no token possible)
            out[name] = xp.any(xp.isnan(a) | xp.isposinf(a)) | xp.any(xp.all(xp.isneginf(a), axis=-1))
        else:
            out[name] = xp.any(~xp.isfinite(a))
    return out


def check_model(model, where: str, name: str = "model"):
    """A model's parameters must be usable: TabularModel logits without NaN or +inf and
    with at least one finite logit per context; LinearModel features and theta finite.
    Returns the model (checked; see :func:`value_check`)."""
    if hasattr(model, "theta"):
        arrays = {"features": model.features, "theta": model.theta}
    else:
        arrays = {"logits": model.logits}
    rules = {"logits": "logits must have no NaN or +inf and at least one finite logit per context",
             "features": "features must be finite (no NaN or inf)",
             "theta": "theta must be finite (no NaN or inf)"}
    concrete = is_concrete(*arrays.values())
    if not concrete and not _RUNTIME_CHECKS[0]:
        return model
    bad = _model_bad(arrays, concrete)
    checked = {}
    for key, a in arrays.items():
        checked[key] = value_check(a, bad[key], f"{where}: {(name + ' ') if name else ''}{rules[key]}")
    if concrete:
        return model
    if "theta" in checked:
        return eqx.tree_at(lambda m: (m.features, m.theta), model, (checked["features"], checked["theta"]))
    return eqx.tree_at(lambda m: m.logits, model, checked["logits"])


def check_pair(p, q, mu, where: str):
    """Shapes of a reference ``p``, a model ``q`` and the prompt law ``mu`` must agree, and
    their values be valid. Returns ``(p, q, mu)`` (checked)."""
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
    mu = check_distribution(mu, prompts.pop() if prompts else None, where)
    p = check_model(p, where, "p")
    q = p if q is p else check_model(q, where, "q")
    return p, q, mu


# --------------------------------------------------------------------------------------
# scalar / closed-form arguments (covsim.bounds, covsim.instances): eager checks only
# --------------------------------------------------------------------------------------


def require(condition: bool, where: str, message: str) -> None:
    """``ValueError(f"{where}: {message}")`` unless `condition` holds (concrete values only)."""
    if not condition:
        raise ValueError(f"{where}: {message}")


def check_real(value, name: str, where: str) -> float:
    """A finite real number, returned as a Python float."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be a real number, got {value!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    return value


def concrete_values(x):
    """`x` as a float NumPy array, or ``None`` when it is traced (not inspectable)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=float)
    except Exception:  # e.g. a tracer hidden in a container
        return None


def check_values(x, ok, allowed: str, where: str, name: str) -> None:
    """Every concrete entry of `x` is not NaN and satisfies ``ok`` (a NumPy predicate), else
    ``ValueError(f"{where}: {name} must be {allowed}, got {first bad value}")``.

    Traced values are not inspected: closed-form bounds trust their traced arguments
    (a bound is arithmetic on numbers the caller computed, not a user-facing sampler)."""
    v = concrete_values(x)
    if v is None:
        return
    with np.errstate(invalid="ignore"):
        bad = np.isnan(v) | ~np.asarray(ok(v), dtype=bool)
    if np.any(bad):
        got = float(np.broadcast_to(v, bad.shape)[bad].ravel()[0])
        raise ValueError(f"{where}: {name} must be {allowed}, got {got!r}")
