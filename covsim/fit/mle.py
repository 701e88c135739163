r"""Maximum-likelihood estimators (arXiv 2510.15020 v2, §2 and Thm 4.1/4.2; THEORY.md §5, §6.1).

The MLE maximizes the sequence log-likelihood of a dataset :math:`\{(x_i, y_i)\}_{i\le n}`,

.. math::

    \hat L_n(\pi) = \sum_{i=1}^n w_i \log \pi(y_i \mid x_i)
                  = \sum_{x,h,u,v} C[x,h,u,v]\, \log\pi(v \mid x,h,u),

where the weighted counts :math:`C` (the *sufficient statistics*, :func:`sufficient_statistics`)
are aggregated to the model's broadcast context shape. Three estimators:

- :func:`fit_mle` on a :class:`~covsim.LinearModel`: the constrained MLE over a Euclidean ball
  or a box, by a second-order method (trust-region-subproblem Newton for the ball,
  Bertsekas' projected Newton for the box) whose every iteration costs
  O(P·H·V²·d + d³) independently of n, with a certified optimality gap;
- :func:`fit_mle` on a :class:`~covsim.TabularModel`: empirical next-token frequencies;
- :func:`fit_mle_finite`: the MLE over a finite list of candidate models.

Everything is jit- and vmap-compatible: ``jax.vmap(lambda x, y: fit_mle(model, x, y))``
fits many seeds in one compiled call, and per-sample ``weights`` (e.g. the mask
``arange(n_max) < n``) let one dataset serve a whole sweep over n without recompiling.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from covsim._validate import check_model, check_tokens, is_concrete, value_check
from covsim.constraints import Ball, Box
from covsim.models import LinearModel, SequenceModel, TabularModel, next_token_log_probs

__all__ = [
    "MLEDiagnostics",
    "sufficient_statistics",
    "fit_mle",
    "log_likelihoods",
    "fit_mle_finite",
]

_ARMIJO = 1e-4
_MAX_HALVINGS = 60
_SECULAR_ITERS = 60
_ACTIVE_BAND = 1e-3


class MLEDiagnostics(NamedTuple):
    """Certificate of a constrained MLE (a NamedTuple of arrays: works under ``vmap``).

    - `iterations`: number of Newton steps taken (int).
    - `kkt_residual`: :math:`\\|\\hat\\theta - \\mathrm{Proj}_\\Theta(\\hat\\theta + \\nabla \\hat L_n(\\hat\\theta)/T)\\|_2`,
      the projected-gradient (KKT stationarity) residual of the *per-token* log-likelihood,
      :math:`T = \\max(1, \\sum_i w_i H)`; it is 0 exactly at a constrained maximizer.
    - `gap`: the Frank–Wolfe gap :math:`\\max_{z\\in\\Theta}\\langle\\nabla\\hat L_n(\\hat\\theta), z-\\hat\\theta\\rangle`,
      a certified upper bound on :math:`\\max_\\Theta \\hat L_n - \\hat L_n(\\hat\\theta)` (concavity);
      ball: ``radius·‖g‖ − ⟨g, θ̂⟩``; box: ``Σ_j max(g_j (u_j − θ̂_j), g_j (l_j − θ̂_j))``.
    - `converged`: the stopping rule: ``kkt_residual <= τ`` and ``gap <= gap_tolerance``,
      with τ = max(tol, 100·eps) (eps of the dtype) and
      gap_tolerance = max(τ·T, 10³·eps·(|L̂_n| + 1)) (see :func:`gap_tolerance`).
    - `log_likelihood`: :math:`\\hat L_n(\\hat\\theta)` (total, weighted).
    - `on_boundary`: θ̂ lies on the boundary of Θ with a non-zero outward gradient of the
      log-likelihood — the unconstrained maximizer lies outside Θ, so the fit is held by the
      constraint (a `radius` or box too small for the truth makes the fit biased however
      large n is; enlarge it).

    For a tabular model the MLE is closed form: 0 iterations, residual and gap 0, converged.
    """

    iterations: Array
    kkt_residual: Array
    gap: Array
    converged: Array
    log_likelihood: Array
    on_boundary: Array


# ---------------------------------------------------------------------------
# validation (runs before compiling)


def _context_shape(model: SequenceModel) -> tuple[int, int, int, int]:
    if isinstance(model, LinearModel):
        return tuple(model.features.shape[:4])
    if isinstance(model, TabularModel):
        return tuple(model.logits.shape)
    raise ValueError(
        f"model must be a covsim.TabularModel or covsim.LinearModel, got {type(model).__name__}"
    )


def _check_data(model: SequenceModel, x, y, weights, where: str, num_prompts: int | None = None):
    """Shapes, dtypes and ranges of (x, y, weights); returns them as arrays."""
    _context_shape(model)  # type check
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    horizon, vocab = model.horizon, model.vocab_size
    prompts = model.num_prompts if num_prompts is None else num_prompts
    if not jnp.issubdtype(x.dtype, jnp.integer) or x.ndim != 1:
        raise ValueError(
            f"{where}: x must be an integer array of shape (n,), got dtype {x.dtype} and shape {x.shape}"
        )
    if not jnp.issubdtype(y.dtype, jnp.integer) or y.shape != (x.shape[0], horizon):
        raise ValueError(
            f"{where}: y must be an integer array of shape (n, H) = ({x.shape[0]}, {horizon}), "
            f"got dtype {y.dtype} and shape {y.shape}"
        )
    if is_concrete(y) and y.size:
        lo, hi = int(np.min(np.asarray(y))), int(np.max(np.asarray(y)))
        if lo < 0 or hi >= vocab:
            raise ValueError(f"{where}: y must hold tokens in [0, {vocab}) (V = {vocab}), got range [{lo}, {hi}]")
    if is_concrete(x) and x.size:
        lo, hi = int(np.min(np.asarray(x))), int(np.max(np.asarray(x)))
        if lo < 0 or (prompts > 1 and hi >= prompts):
            allowed = f"[0, {prompts})" if prompts > 1 else "[0, inf) (the model has one prompt)"
            raise ValueError(f"{where}: x prompts must lie in {allowed}, got range [{lo}, {hi}]")
    if not is_concrete(y):  # inside jit / vmap: the same checks, at run time
        y = check_tokens(y, vocab, where)
    if not is_concrete(x):
        x = value_check(x, (x < 0) | ((x >= prompts) if prompts > 1 else False),
                        f"{where}: x prompts must lie in [0, {prompts})" if prompts > 1
                        else f"{where}: x prompts must be >= 0")
    if weights is not None:
        weights = jnp.asarray(weights)
        if weights.shape != x.shape:
            raise ValueError(
                f"{where}: weights must have shape (n,) = {x.shape}, got shape {weights.shape}"
            )
        if jnp.issubdtype(weights.dtype, jnp.complexfloating):
            raise ValueError(f"{where}: weights must be real, got dtype {weights.dtype}")
        if is_concrete(weights) and weights.size:
            w = np.asarray(weights, dtype=float)
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                bad = w[~(np.isfinite(w) & (w >= 0))][0]
                raise ValueError(f"{where}: weights must be finite and >= 0, got an entry {bad!r}")
        elif not is_concrete(weights):
            weights = value_check(weights, ~jnp.isfinite(weights) | (weights < 0),
                                  f"{where}: weights must be finite and >= 0")
    return x, y, weights


def _check_positive_float(value, name: str, where: str, *, allow_zero: bool = False) -> None:
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.shape != () or not np.isreal(arr) or not np.isfinite(arr) or arr < 0 or (arr == 0 and not allow_zero):
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{where}: {name} must be {allowed}, got {value!r}")


def _check_box(box, dim: int, where: str):
    try:
        lower, upper = box
    except (TypeError, ValueError):
        raise ValueError(f"{where}: box must be a pair (lower, upper), got {box!r}") from None
    lower = jnp.asarray(lower)
    upper = jnp.asarray(upper)
    for name, arr in (("lower", lower), ("upper", upper)):
        if arr.shape not in ((), (dim,)):
            raise ValueError(
                f"{where}: box {name} bound must be a scalar or have shape (d,) = ({dim},), "
                f"got shape {arr.shape}"
            )
    if is_concrete(lower, upper):
        lo = np.broadcast_to(np.asarray(lower, dtype=float), (dim,))
        hi = np.broadcast_to(np.asarray(upper, dtype=float), (dim,))
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
            raise ValueError(f"{where}: box bounds must not be NaN, got lower={lo}, upper={hi}")
        if np.any(lo > hi):
            j = int(np.argmax(lo > hi))
            raise ValueError(
                f"{where}: box needs lower <= upper coordinatewise, got lower[{j}]={lo[j]} > upper[{j}]={hi[j]}"
            )
        if np.any(lo == np.inf) or np.any(hi == -np.inf):
            raise ValueError(f"{where}: box bounds must allow a finite point, got lower={lo}, upper={hi}")
    return lower, upper


def _check_data_horizon(horizon, model_horizon: int, where: str):
    """`horizon` (data positions): None, or an integer scalar in [0, H]; returned as an array."""
    if horizon is None:
        return None
    arr = jnp.asarray(horizon)
    if arr.shape != () or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"{where}: horizon must be an integer scalar, got {horizon!r}")
    if is_concrete(arr):
        if not 0 <= int(arr) <= model_horizon:
            raise ValueError(f"{where}: horizon must lie in [0, H] = [0, {model_horizon}], got {int(arr)}")
        return arr
    return value_check(arr, (arr < 0) | (arr > model_horizon),
                       f"{where}: horizon must lie in [0, H] = [0, {model_horizon}]")


def _check_iteration_args(max_iter, tol, where: str) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"{where}: max_iter must be a Python int >= 1, got {max_iter!r}")
    _check_positive_float(tol, "tol", where, allow_zero=True)


# ---------------------------------------------------------------------------
# sufficient statistics


def _token_cells(ctx_shape, x: Array, y: Array) -> Array:
    """Flat index of the cell (x, h, u, v) of every token, shape (n, H), broadcast axes -> 0."""
    prompts, positions, prevs, vocab = ctx_shape
    n, horizon = y.shape
    y = y.astype(jnp.int32)
    prev = jnp.concatenate([jnp.full((n, 1), vocab, dtype=jnp.int32), y[:, :-1]], axis=1)
    h_idx = jnp.arange(horizon, dtype=jnp.int32)[None, :] if positions > 1 else 0
    u_idx = prev if prevs > 1 else 0
    x_idx = x.astype(jnp.int32)[:, None] if prompts > 1 else 0
    return ((x_idx * positions + h_idx) * prevs + u_idx) * vocab + y


@functools.partial(jax.jit, static_argnums=(0, 4))
def _counts(ctx_shape, x, y, weights, dtype, data_horizon=None) -> Array:
    cells = _token_cells(ctx_shape, x, y)
    n, horizon = y.shape
    if weights is None:
        mass = jnp.ones((n, horizon), dtype)
    else:
        mass = jnp.broadcast_to(weights.astype(dtype)[:, None], (n, horizon))
    if data_horizon is not None:  # tokens at positions >= data_horizon carry no weight
        mass = jnp.where(jnp.arange(horizon)[None, :] < data_horizon, mass, jnp.zeros((), dtype))
    size = math.prod(ctx_shape)
    flat = jax.ops.segment_sum(mass.reshape(-1), cells.reshape(-1), num_segments=size)
    return flat.reshape(ctx_shape)


def _model_dtype(model: SequenceModel):
    if isinstance(model, LinearModel):
        return jnp.result_type(model.features.dtype, model.theta.dtype)
    return model.logits.dtype


def sufficient_statistics(model: SequenceModel, x, y, weights=None) -> Array:
    r"""Weighted token counts in the model's context cells, in one pass over the data.

    .. math::

        C[x', h', u', v] = \sum_{i=1}^n w_i \sum_{h=1}^H
            \mathbb 1\{\bar x_i = x',\ \bar h = h',\ \bar u_{i,h} = u',\ y_{i,h} = v\},

    where a bar maps an index to 0 along every axis on which the model broadcasts (size 1),
    so contexts that share parameters are pooled. Cost O(n·H) (one scatter-add).
    :math:`\hat L_n(\pi) = \sum C \log\pi` for every model with these broadcast axes
    (arXiv 2510.15020 v2, §2; THEORY.md §1).

    **Arguments:**

    - `model`: a :class:`~covsim.TabularModel` or :class:`~covsim.LinearModel`; only its
      shapes are used.
    - `x`: prompts, integer ``(n,)``; `y`: responses, integer ``(n, H)`` (as from :func:`covsim.sample`).
    - `weights`: optional non-negative per-sample weights ``(n,)`` (default all ones).

    **Returns:** an array of shape ``(P', H', U', V)`` — the model's broadcast context shape
    (``logits.shape`` of a tabular model, ``features.shape[:4]`` of a linear one) — in the
    model's floating dtype. Per-context totals are ``counts.sum(-1)``.
    """
    x, y, weights = _check_data(model, x, y, weights, "sufficient_statistics")
    return _counts(_context_shape(model), x, y, weights, _model_dtype(model))


# ---------------------------------------------------------------------------
# AR-linear likelihood calculus on the sufficient statistics


def _log_likelihood(features: Array, counts: Array, theta: Array) -> Array:
    """Σ C · log softmax(φ θ); features (C, V, d), counts (C, V)."""
    return jnp.sum(counts * jax.nn.log_softmax(features @ theta, axis=-1))


def _derivatives(features: Array, counts: Array, theta: Array):
    r"""Value, gradient Σ_c Σ_v (C_cv − n_c p_cv) φ_cv and A = −∇² = Σ_c n_c Cov_{p_c}(φ)."""
    log_p = jax.nn.log_softmax(features @ theta, axis=-1)
    p = jnp.exp(log_p)
    totals = counts.sum(-1)
    value = jnp.sum(counts * log_p)
    grad = jnp.einsum("cv,cvd->d", counts - totals[:, None] * p, features)
    mean = jnp.einsum("cv,cvd->cd", p, features)
    centered = (features - mean[:, None, :]) * jnp.sqrt(totals[:, None] * p)[..., None]
    flat = centered.reshape(-1, features.shape[-1])
    return value, grad, flat.T @ flat


def _project_ball(theta: Array, radius) -> Array:
    norm = jnp.linalg.norm(theta)
    return theta * jnp.minimum(1.0, radius / jnp.where(norm > 0, norm, 1.0))


def _certificate(grad, theta, lower, upper, radius, token_mass, use_box: bool):
    """(kkt_residual of the per-token gradient, Frank–Wolfe gap of the total) at theta."""
    mean_grad = grad / jnp.maximum(token_mass, 1.0)
    if use_box:
        residual = jnp.linalg.norm(theta - jnp.clip(theta + mean_grad, lower, upper))
        up = jnp.where(grad > 0, grad * (upper - theta), 0.0)
        down = jnp.where(grad < 0, grad * (lower - theta), 0.0)
        gap = jnp.sum(up + down)
    else:
        residual = jnp.linalg.norm(theta - _project_ball(theta + mean_grad, radius))
        gap = radius * jnp.linalg.norm(grad) - grad @ theta
    return residual, jnp.maximum(gap, 0.0)


def gap_tolerance(tol, log_likelihood, token_mass, eps):
    r"""The Frank–Wolfe gap `fit_mle` stops at: :math:`\max(\tau\,T,\ 10^3\,\epsilon\,(|\hat L_n|+1))`,
    the per-token tolerance τ times the token mass T, or the rounding level of :math:`\hat L_n`."""
    return jnp.maximum(tol * jnp.maximum(token_mass, 1.0), 1e3 * eps * (jnp.abs(log_likelihood) + 1.0))


def _certified(residual, gap, value, tol_eff, token_mass, eps):
    """The stopping rule, which is also `converged`: KKT residual and gap both small."""
    return (residual <= tol_eff) & (gap <= gap_tolerance(tol_eff, value, token_mass, eps))


def _outward(grad, theta, lower, upper, radius, token_mass, use_box: bool, tol_eff):
    """True when θ̂ sits on the boundary of Θ and the log-likelihood still increases outward
    (the unconstrained maximizer lies outside Θ: the constraint binds)."""
    mean_grad = grad / jnp.maximum(token_mass, 1.0)
    if use_box:
        at_upper = theta >= upper - 1e-9 * jnp.maximum(jnp.abs(upper), 1.0)
        at_lower = theta <= lower + 1e-9 * jnp.maximum(jnp.abs(lower), 1.0)
        return jnp.any((at_upper & (mean_grad > tol_eff)) | (at_lower & (mean_grad < -tol_eff)))
    norm = jnp.linalg.norm(theta)
    on_sphere = norm >= radius * (1 - 1e-9)
    return on_sphere & (mean_grad @ theta > tol_eff * jnp.maximum(norm, 1.0))


def _spd_solve(matrix: Array, rhs: Array) -> Array:
    """Cholesky solve; keeps exact zeros of decoupled (uninformed) coordinates."""
    factor = jax.scipy.linalg.cho_factor(matrix, lower=True)
    return jax.scipy.linalg.cho_solve(factor, rhs)


def _informative_projector(features: Array, counts: Array):
    r"""Orthogonal projector onto the directions the data inform.

    The likelihood is flat along :math:`N = \{w : \langle w, \phi_{cv} - \phi_{cv'}\rangle = 0`
    for every context c with :math:`n_c > 0`}, whatever θ (softmax has full support). N is the
    null space of :math:`K = \sum_{c: n_c>0} \mathrm{Cov}_{\mathrm{unif}}(\phi_c)`, computed once.
    Coordinates with :math:`K_{kk} = 0` are zeroed exactly (no rounding noise).
    """
    dtype = features.dtype
    informed = (counts.sum(-1) > 0).astype(dtype)
    centered = features - features.mean(axis=1, keepdims=True)
    weighted = centered * jnp.sqrt(informed / features.shape[1])[:, None, None]
    flat = weighted.reshape(-1, features.shape[-1])
    gram = flat.T @ flat
    decoupled = jnp.diagonal(gram) == 0
    gram = jnp.where(decoupled[:, None] | decoupled[None, :], 0.0, gram)
    eigval, eigvec = jnp.linalg.eigh(gram)
    keep = eigval > 1e4 * jnp.finfo(dtype).eps * jnp.maximum(jnp.max(eigval), jnp.finfo(dtype).tiny)
    basis = eigvec * keep[None, :]

    def project(v: Array) -> Array:
        return jnp.where(decoupled, 0.0, basis @ (basis.T @ v))

    return project


def _ball_step(hess, grad, theta, radius, damping, project):
    r"""Exact maximizer z of the quadratic model over the ball ∩ informative subspace; returns z − θ.

    z(λ) = θ + P(A + (τ+λ)I)^{-1}P(g − λθ) with λ = 0 when ‖z(0)‖ ≤ radius, else the root of
    ‖z(λ)‖ = radius (Newton on the secular equation 1/‖z(λ)‖ − 1/radius, monotone from λ=0).
    P projects onto the informed directions, so iterates keep minimum norm.

    One symmetric eigendecomposition serves both the interior and the boundary solve, and
    both are computed without `lax.cond`: under `vmap` a cond becomes a select that runs both
    branches, and two independent batched LAPACK calls in one program can starve the XLA
    CPU thread pool (observed as a deadlock with jaxlib 0.10 on 2 cores).
    """
    shifted = hess + damping * jnp.eye(theta.shape[0], dtype=theta.dtype)
    eigval, eigvec = jnp.linalg.eigh(shifted)
    eigval = jnp.maximum(eigval, damping)
    tiny = jnp.finfo(theta.dtype).tiny
    grad = project(grad)

    def solve(lam, rhs):
        return project(eigvec @ ((eigvec.T @ rhs) / (eigval + lam)))

    free_step = solve(0.0, grad)
    coef2 = (eigvec.T @ project(shifted @ theta + grad)) ** 2

    def newton(_, lam):
        inv = 1.0 / (eigval + lam)
        sq_norm = jnp.maximum(jnp.sum(coef2 * inv**2), tiny)
        slope = jnp.maximum(sq_norm**-1.5 * jnp.sum(coef2 * inv**3), tiny)
        psi = sq_norm**-0.5 - 1.0 / radius
        return jnp.maximum(lam - psi / slope, 0.0)

    lam = jax.lax.fori_loop(0, _SECULAR_ITERS, newton, jnp.zeros((), theta.dtype))
    boundary_step = solve(lam, grad - lam * theta)
    inside = jnp.linalg.norm(theta + free_step) <= radius
    step = jnp.where(inside, free_step, boundary_step)
    target = _project_ball(theta + step, radius)
    return target - theta


def _box_step(hess, grad, theta, lower, upper, damping, token_mass):
    """Bertsekas projected-Newton direction and the ε-active mask."""
    scaled = grad / jnp.maximum(token_mass, 1.0)
    band = jnp.minimum(_ACTIVE_BAND, jnp.linalg.norm(theta - jnp.clip(theta + scaled, lower, upper)))
    active = ((theta - lower <= band) & (grad < 0)) | ((upper - theta <= band) & (grad > 0))
    free = ~active
    diag = jnp.diagonal(hess)
    reduced = jnp.where(free[:, None] & free[None, :], hess, 0.0)
    reduced = reduced + jnp.diag(jnp.where(active, diag, 0.0)) + damping * jnp.eye(theta.shape[0], dtype=theta.dtype)
    return _spd_solve(reduced, grad), active


class _State(NamedTuple):
    theta: Array
    iterations: Array
    done: Array


def _fit_linear(features, counts, theta0, lower, upper, radius, tol, *, use_box: bool, max_iter: int):
    """Second-order constrained MLE on the sufficient statistics (one compiled program)."""
    dtype = theta0.dtype
    eps = jnp.finfo(dtype).eps
    token_mass = counts.sum()
    tol_eff = jnp.maximum(tol, 100 * eps)
    project = None if use_box else _informative_projector(features, counts)

    def trial_point(theta, direction, alpha):
        if use_box:
            return jnp.clip(theta + alpha * direction, lower, upper)
        return theta + alpha * direction

    def predicted(theta, grad, direction, active, alpha, point):
        if use_box:
            free_part = alpha * jnp.sum(jnp.where(active, 0.0, grad * direction))
            active_part = jnp.sum(jnp.where(active, grad * (point - theta), 0.0))
            return free_part + active_part
        return alpha * (grad @ direction)

    def body(state: _State) -> _State:
        theta = state.theta
        value, grad, hess = _derivatives(features, counts, theta)
        noise = 1e3 * eps * (jnp.abs(value) + 1.0)
        residual, gap = _certificate(grad, theta, lower, upper, radius, token_mass, use_box)
        certified = _certified(residual, gap, value, tol_eff, token_mass, eps)
        damping = eps**0.75 * jnp.maximum(jnp.max(jnp.diagonal(hess)), 1.0)
        if use_box:
            direction, active = _box_step(hess, grad, theta, lower, upper, damping, token_mass)
        else:
            direction = _ball_step(hess, grad, theta, radius, damping, project)
            active = jnp.zeros_like(theta, dtype=bool)

        def search_cond(carry):
            _, halvings, accepted = carry
            return (~accepted) & (halvings < _MAX_HALVINGS)

        def search_body(carry):
            alpha, halvings, _ = carry
            point = trial_point(theta, direction, alpha)
            gain = predicted(theta, grad, direction, active, alpha, point)
            increase = _log_likelihood(features, counts, point) - value
            armijo = increase >= _ARMIJO * gain
            # below the rounding level of L the Armijo test is noise: take the Newton step
            # as long as L does not measurably decrease
            unresolved = (gain <= noise) & (increase >= -noise)
            ok = (gain > 0) & (armijo | unresolved)
            return jnp.where(ok, alpha, alpha * 0.5), halvings + 1, ok

        alpha, _, accepted = jax.lax.while_loop(
            search_cond, search_body, (jnp.ones((), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
        )
        finished = certified | ~accepted
        new_theta = jnp.where(finished, theta, trial_point(theta, direction, alpha))
        return _State(new_theta, state.iterations + jnp.where(finished, 0, 1), finished)

    def cond(state: _State):
        return (~state.done) & (state.iterations < max_iter)

    start = jnp.clip(theta0, lower, upper) if use_box else theta0
    final = jax.lax.while_loop(cond, body, _State(start, jnp.zeros((), jnp.int32), jnp.zeros((), bool)))
    value, grad, _ = _derivatives(features, counts, final.theta)
    residual, gap = _certificate(grad, final.theta, lower, upper, radius, token_mass, use_box)
    certified = _certified(residual, gap, value, tol_eff, token_mass, eps)
    outward = _outward(grad, final.theta, lower, upper, radius, token_mass, use_box, tol_eff)
    diagnostics = MLEDiagnostics(final.iterations, residual, gap, certified, value, outward)
    return final.theta, diagnostics


@jax.jit
def _fit_tabular(model: TabularModel, counts, smoothing):
    pseudo = counts + jnp.asarray(smoothing, counts.dtype)
    totals = pseudo.sum(-1, keepdims=True)
    safe = jnp.where(pseudo > 0, pseudo, 1.0)
    log_freq = jnp.where(pseudo > 0, jnp.log(safe) - jnp.log(jnp.where(totals > 0, totals, 1.0)), -jnp.inf)
    uniform = -jnp.log(jnp.asarray(counts.shape[-1], counts.dtype))
    log_freq = jnp.where(totals > 0, log_freq, uniform)
    value = jnp.sum(jnp.where(counts > 0, counts * log_freq, 0.0))
    zero = jnp.zeros((), counts.dtype)
    fitted = eqx.tree_at(lambda m: m.logits, model, log_freq.astype(model.logits.dtype))
    return fitted, MLEDiagnostics(jnp.zeros((), jnp.int32), zero, zero, jnp.ones((), bool), value,
                                  jnp.zeros((), bool))


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit_linear_model(model: LinearModel, counts, bounds, radius, tol, *, max_iter: int):
    """Reshape to (contexts, V, d), run the solver, put θ̂ back into the model."""
    dtype = counts.dtype
    dim, vocab = model.dim, model.vocab_size
    if bounds is None:
        lower = jnp.full((dim,), -jnp.inf, dtype)
        upper = jnp.full((dim,), jnp.inf, dtype)
    else:
        lower = jnp.broadcast_to(jnp.asarray(bounds[0], dtype), (dim,))
        upper = jnp.broadcast_to(jnp.asarray(bounds[1], dtype), (dim,))
    theta, diagnostics = _fit_linear(
        model.features.astype(dtype).reshape(-1, vocab, dim),
        counts.reshape(-1, vocab),
        jnp.zeros((dim,), dtype),
        lower,
        upper,
        jnp.asarray(radius, dtype),
        jnp.asarray(tol, dtype),
        use_box=bounds is not None,
        max_iter=max_iter,
    )
    return eqx.tree_at(lambda m: m.theta, model, theta.astype(model.theta.dtype)), diagnostics


def fit_mle(
    model: SequenceModel,
    x,
    y,
    *,
    radius=1.0,
    box=None,
    weights=None,
    smoothing=0.0,
    max_iter: int = 100,
    tol=1e-10,
    return_diagnostics: bool = False,
    constraint=None,
    horizon=None,
):
    r"""Maximum-likelihood estimate within the model's class (arXiv 2510.15020 v2, §2, Thm 4.1/4.2; THEORY.md §6.1).

    .. math::

        \hat\pi \in \arg\max_{\pi\in\Pi} \sum_{i=1}^n w_i \log\pi(y_i\mid x_i).

    **AR-linear class** (`model` a :class:`~covsim.LinearModel`; its ``theta`` is ignored
    except for its dtype, the features define the class). Maximizes the concave
    :math:`\hat L_n(\theta) = \sum C\cdot\log\mathrm{softmax}(\phi\theta)` over
    :math:`\Theta=\{\|\theta\|_2\le\text{radius}\}`, or over the box
    :math:`\{l\le\theta\le u\}` when ``box=(l, u)`` is given (radius is then ignored). The
    data enter once, through :func:`sufficient_statistics`; each iteration then costs
    O(P·H·V²·d + d³) whatever n: gradient :math:`\sum_c\sum_v (C_{cv}-n_c\pi_\theta(v|c))\phi_{cv}`,
    Hessian :math:`-\sum_c n_c\,\mathrm{Cov}_{\pi_\theta(\cdot|c)}(\phi)`. Ball: Newton steps to the
    exact maximizer of the quadratic model over the ball (trust-region subproblem solved
    by the secular equation); box: Bertsekas' projected Newton with an ε-active set; both
    with an Armijo line search, starting from θ = Proj_Θ(0). Where no data inform a
    direction the Hessian and gradient vanish there and the iterates never enter it, so the
    returned θ̂ is the minimum-norm maximizer (for a box: exactly, when the uninformed
    directions are coordinate directions). Stops when the projected per-token gradient
    residual is at most ``max(tol, 100·eps)`` (or when no ascent step is numerically
    possible); the diagnostics also report the Frank–Wolfe gap, a certified bound on
    :math:`\max_\Theta\hat L_n - \hat L_n(\hat\theta)`.

    **Tabular class** (`model` a :class:`~covsim.TabularModel`): the empirical next-token
    frequencies in every context cell of the model's broadcast logit shape (broadcast axes
    pool their contexts), with ``smoothing`` pseudo-counts per token:
    :math:`\hat\pi(v|c) = (C_{cv}+s)/(n_c+Vs)`. A token never seen in a seen context gets
    probability exactly 0 (logit ``-inf``) when s = 0; a context never seen (n_c + Vs = 0)
    gets the uniform law (convention: every law maximizes a zero likelihood; uniform is
    the one of maximal entropy). ``radius``/``box`` are ignored. The returned logits are
    normalized log-probabilities.

    **Arguments:**

    - `model`: a :class:`~covsim.LinearModel` or :class:`~covsim.TabularModel` (defines the class).
    - `x`: prompts, integer ``(n,)``; `y`: responses, integer ``(n, H)`` (:func:`covsim.sample`).
    - `constraint`: Θ as a :class:`covsim.constraints.Ball` or :class:`~covsim.constraints.Box`
      (the objects `covsim.fit.sgd.train` takes); or, equivalently, the keywords below.
    - `radius`: ball radius (> 0), linear models only. Choose it at least ‖θ⋆‖ (the class
      must contain the truth, THEORY Assumption 2.2): too small a radius gives a biased fit
      that does not improve with n — the diagnostics then report ``on_boundary=True``.
    - `box`: ``(lower, upper)``, each a scalar or ``(d,)``, lower ≤ upper; replaces the ball.
    - `weights`: non-negative per-sample weights ``(n,)`` (a 0/1 mask ``arange(n_max) < n``
      fits the first n samples without recompiling).
    - `smoothing`: additive pseudo-count (≥ 0), tabular models only.
    - `max_iter`: maximum number of Newton steps (static); `tol`: tolerance on the
      per-token projected-gradient residual.
    - `return_diagnostics`: also return a :class:`MLEDiagnostics`.
    - `horizon`: only the first `horizon` positions of every sequence are data (an integer
      in [0, H], may be traced; default all H): the tokens after it get weight 0. For a
      model padded with :func:`covsim.pad_horizon`: ``fit_mle(pad_horizon(m, H_max), x, y,
      horizon=H)`` equals ``fit_mle(m, x, y[:, :H])`` (the padded contexts have no
      counts and, for a linear model, zero features), with one compiled program for every H.

    **Returns:** the fitted model (same type, shapes and broadcast axes), or
    ``(model, MLEDiagnostics)`` when ``return_diagnostics=True``.
    """
    where = "fit_mle"
    if constraint is not None:
        if box is not None or (not isinstance(radius, (int, float)) or radius != 1.0):
            raise ValueError(f"{where}: give Θ either as constraint= or as radius=/box=, not both")
        if isinstance(constraint, Ball):
            radius = constraint.radius
        elif isinstance(constraint, Box):
            box = (constraint.lower, constraint.upper)
        else:
            raise ValueError(f"{where}: constraint must be a covsim.constraints.Ball or Box, "
                             f"got {type(constraint).__name__}")
    x, y, weights = _check_data(model, x, y, weights, where)
    if isinstance(model, LinearModel):
        model = check_model(model, where)  # NaN features or theta refused (also under jit/vmap)
    _check_iteration_args(max_iter, tol, where)
    horizon = _check_data_horizon(horizon, model.horizon, where)
    dtype = _model_dtype(model)
    if isinstance(model, TabularModel):
        _check_positive_float(smoothing, "smoothing", where, allow_zero=True)
        counts = _counts(model.logits.shape, x, y, weights, dtype, horizon)
        fitted, diagnostics = _fit_tabular(model, counts, smoothing)
        return (fitted, diagnostics) if return_diagnostics else fitted

    if box is not None:
        lower, upper = _check_box(box, model.dim, where)
        # full (d,) bounds before the jit: scalar and vector bounds share one compilation
        bounds = tuple(
            np.broadcast_to(np.asarray(b, dtype=dtype), (model.dim,)) if is_concrete(b)
            else jnp.broadcast_to(b.astype(dtype), (model.dim,))
            for b in (lower, upper)
        )
    else:
        _check_positive_float(radius, "radius", where)
        bounds = None
    counts = _counts(tuple(model.features.shape[:4]), x, y, weights, dtype, horizon)
    fitted, diagnostics = _fit_linear_model(model, counts, bounds, radius, tol, max_iter=int(max_iter))
    return (fitted, diagnostics) if return_diagnostics else fitted


# ---------------------------------------------------------------------------
# finite classes


def _check_candidates(models, where: str) -> tuple[list, int]:
    if not isinstance(models, (list, tuple)) or len(models) == 0:
        raise ValueError(f"{where}: models must be a non-empty list or tuple of models, got {models!r}")
    for j, m in enumerate(models):
        if not isinstance(m, (TabularModel, LinearModel)):
            raise ValueError(
                f"{where}: models[{j}] must be a covsim.TabularModel or covsim.LinearModel, "
                f"got {type(m).__name__}"
            )
    first = models[0]
    for j, m in enumerate(models):
        if m.horizon != first.horizon or m.vocab_size != first.vocab_size:
            raise ValueError(
                f"{where}: models must share H and V; models[0] has (H, V) = "
                f"({first.horizon}, {first.vocab_size}) but models[{j}] has ({m.horizon}, {m.vocab_size})"
            )
    prompts = {m.num_prompts for m in models} - {1}
    if len(prompts) > 1:
        raise ValueError(f"{where}: models have different numbers of prompts {sorted(prompts)}")
    return list(models), (prompts.pop() if prompts else 1)


def _sequence_log_likelihood(model: SequenceModel, x, y, weights) -> Array:
    table = next_token_log_probs(model)
    counts = _counts(table.shape, x, y, weights, table.dtype)
    return jnp.sum(jnp.where(counts > 0, counts * table, 0.0))


@jax.jit
def _candidate_log_likelihoods(models: tuple, x, y, weights) -> Array:
    values = [_sequence_log_likelihood(m, x, y, weights) for m in models]
    dtype = jnp.result_type(*values)
    return jnp.stack([v.astype(dtype) for v in values])


@jax.jit
def _first_argmax(values: Array) -> Array:
    return jnp.argmax(values)


@jax.jit
def _select_stacked(models: tuple, index: Array):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves)[index], *models)


def log_likelihoods(models, x, y, weights=None) -> Array:
    r"""Total log-likelihood of every candidate: :math:`\ell_j = \sum_i w_i\log\pi_j(y_i|x_i)`.

    Computed from each model's :func:`sufficient_statistics` (O(n·H) per model); a sample of
    probability 0 under π_j with positive weight gives ``-inf``; zero-weight samples are
    ignored (never NaN). (arXiv 2510.15020 v2, §2.)

    **Arguments:** `models` list/tuple of models with the same H and V; `x` ``(n,)``,
    `y` ``(n, H)``; optional `weights` ``(n,)`` ≥ 0.

    **Returns:** an array ``(m,)``.
    """
    models, prompts = _check_candidates(models, "log_likelihoods")
    x, y, weights = _check_data(models[0], x, y, weights, "log_likelihoods", num_prompts=prompts)
    return _candidate_log_likelihoods(tuple(models), x, y, weights)


def _same_structure(models) -> bool:
    leaves0, tree0 = jax.tree_util.tree_flatten(models[0])
    for m in models[1:]:
        leaves, tree = jax.tree_util.tree_flatten(m)
        if tree != tree0 or any(
            jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b)
            for a, b in zip(leaves, leaves0)
        ):
            return False
    return True


def fit_mle_finite(models, x, y, *, weights=None, return_index: bool = False):
    r"""MLE over a finite class :math:`\Pi = \{\pi_1,\dots,\pi_m\}` (arXiv 2510.15020 v2, §2; THEORY.md §5.5(b), §5.9).

    .. math::

        \hat\jmath = \min\arg\max_{j} \sum_{i=1}^n w_i \log\pi_j(y_i\mid x_i),

    ties broken by the lowest index; a candidate with log-likelihood ``-inf`` is never
    preferred over a finite one.

    **Arguments:** `models` list/tuple of candidate models (same H and V); `x` ``(n,)``,
    `y` ``(n, H)``; `weights` optional ``(n,)`` ≥ 0; `return_index` also return ĵ.

    **Returns:** the chosen model (and ĵ as an int array when ``return_index=True``). Under
    ``jit``/``vmap`` the candidates must share one pytree structure and leaf shapes (the
    choice is then a traced selection); otherwise ĵ must be concrete.
    """
    values = log_likelihoods(models, x, y, weights)
    index = _first_argmax(values)
    models = tuple(models)
    if _same_structure(models):
        chosen = _select_stacked(models, index)
    elif is_concrete(index):
        chosen = models[int(index)]
    else:
        raise ValueError(
            "fit_mle_finite: under jit/vmap the candidate models must share one pytree structure "
            "and leaf shapes; got candidates with different shapes"
        )
    return (chosen, index) if return_index else chosen
