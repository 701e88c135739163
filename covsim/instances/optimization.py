r"""Constructions for the optimization results (CONSTRUCTIONS.md §7; THEORY.md §6.2).

`sgd_horizon_lower_bound` — the lower bound of arXiv 2510.15020 v2 Prop. 5.1 (App. I.4;
ICLR App. K.4): for every constant step size η, vanilla SGD keeps
Cov_N ≥ c·min{1, H/(T log N)} at every iterate. Features are in the hundreds, so every
computation stays in log space; tokens are i.i.d. given the prompt, so coverage is an
exact multinomial sum (:func:`multinomial_coverage`).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import gammaln

from covsim._validate import check_positive_int, check_thresholds
from covsim.exact import TIE_TOLERANCE
from covsim.instances._base import Ball, Instance
from covsim.models import LinearModel

__all__ = ["sgd_horizon_lower_bound", "multinomial_coverage", "TOKEN_VALUES", "C_MU"]

TOKEN_VALUES = (-1.0, 0.0, 1.0)
"""Token index v ∈ {0, 1, 2} stands for the value a = v − 1 ∈ {−1, 0, +1}."""

C_MU = 1.0 / (512.0 * math.e)
"""The paper's constant c_μ of case B (CONSTRUCTIONS.md §7)."""

PROMPTS = ("x_eta", "+", "-")


def _step_direction(alpha: float) -> np.ndarray:
    """w_η(a) for a = −1, 0, +1 as rows ``(3, 2)``: w(0) = (1, 0), w(±1) = (α, ±√(1−α²))."""
    s = math.sqrt(max(0.0, 1.0 - alpha**2))
    return np.array([[alpha, -s], [1.0, 0.0], [alpha, s]])


def sgd_horizon_lower_bound(T: int, H: int, N: float, eta: float, *, b: float | None = None,
                            case: str | None = None, c_mu: float = C_MU) -> Instance:
    r"""Heterogeneous-prompt instance where vanilla SGD is slow for every η (CONSTRUCTIONS.md §7).

    arXiv 2510.15020 v2, Prop. 5.1 lower bound (App. I.4; ICLR App. K.4); THEORY.md §6.2.
    d = 2, Θ = unit ball, V = {−1, 0, +1} (indices 0, 1, 2), feature scales b and
    :math:`\bar B = b^2` (default :math:`b = 2\log(4TH) + 2`). Prompts, in this order:

    - ``x_η``: :math:`\psi(x_\eta, a) = \bar B\,w_\eta(a)`, :math:`w_\eta(0)=(1,0)`,
      :math:`w_\eta(\pm1) = (\alpha, \pm\sqrt{1-\alpha^2})`, :math:`\alpha = \bar\eta/(2(\bar\eta-1))`,
      :math:`\bar\eta = \eta H\bar B`;
    - ``+``: :math:`\psi(+, a) = (b a, 0)`; ``−``: :math:`\psi(-, a) = (0, b a)`.

    Case A (:math:`\eta \ge 8/(H\bar B)`): μ = δ_{x_η}, θ⋆ = (1, 0), θ_1 = w_η(+1); SGD
    oscillates between w_η(±1) and Cov_N ≈ 1. Case B (:math:`\eta < 8/(H\bar B)`):
    :math:`\mu(+) = \min\{1, c_\mu\bar BH/(Tb^2\log N)\}`, μ(−) = 1 − μ(+), θ⋆ = (½, ½),
    :math:`r = \log(H/(4\log N))/b`, θ_1 = (r − 1/b, ¼); Cov_N(θ_t) ≥ μ(+)/2. [project] In
    case B the prompt x_η has mass 0 and α is clipped to [−1, 1] so its features stay finite.

    **Arguments:** `T` steps, `H` horizon, `N` > 1, `eta` > 0, `b` (default above), `case`
    ``"A"``/``"B"``/None (automatic), `c_mu` (default 1/(512e)).

    **Returns:** an :class:`Instance` with ``info``: ``B_bar``, ``b``, ``case``, ``eta``,
    ``eta_bar``, ``alpha``, ``theta_star``, ``theta_init`` (θ_1), ``r`` (case B, else None),
    ``mu_plus``, ``lower_bound`` (case A: P_D(all tokens 0) = p₀^H, on which Cov_N ≈ 1;
    case B: μ(+)/2), ``rate`` = min{1, H/(T log N)}, ``requirements_met`` (the side
    conditions of CONSTRUCTIONS.md §7 for the case), ``sigma2_star``.
    """
    T = check_positive_int(T, "T", "sgd_horizon_lower_bound")
    H = check_positive_int(H, "H", "sgd_horizon_lower_bound")
    N, eta = float(N), float(eta)
    if not N > 1:
        raise ValueError(f"sgd_horizon_lower_bound: N must be > 1, got {N}")
    if not eta > 0:
        raise ValueError(f"sgd_horizon_lower_bound: eta must be > 0, got {eta}")
    b = 2.0 * math.log(4.0 * T * H) + 2.0 if b is None else float(b)
    if not b >= 1:
        raise ValueError(f"sgd_horizon_lower_bound: b must be >= 1, got {b}")
    B_bar = b * b
    log_n = math.log(N)
    eta_bar = eta * H * B_bar
    threshold = 8.0 / (H * B_bar)
    if case is None:
        case = "A" if eta >= threshold else "B"
    if case not in ("A", "B"):
        raise ValueError(f"sgd_horizon_lower_bound: case must be 'A', 'B' or None, got {case!r}")
    if case == "A" and eta_bar < 2:
        raise ValueError(
            f"sgd_horizon_lower_bound: case 'A' needs eta*H*B_bar >= 2 (so that alpha <= 1), got "
            f"{eta_bar} (eta={eta}); the paper's case A is eta >= 8/(H*B_bar) = {threshold}")
    alpha = eta_bar / (2.0 * (eta_bar - 1.0)) if eta_bar != 1 else 1.0
    alpha = min(1.0, max(-1.0, alpha))
    directions = _step_direction(alpha)
    values = np.asarray(TOKEN_VALUES)
    psi = np.zeros((3, 3, 2))
    psi[0] = B_bar * directions
    psi[1, :, 0] = b * values
    psi[2, :, 1] = b * values
    features = jnp.asarray(psi[:, None, None])  # (P=3, 1, 1, V=3, d=2)

    if case == "A":
        theta_star = np.array([1.0, 0.0])
        theta_init = directions[2].copy()
        mu_plus, r = 0.0, None
        mu = np.array([1.0, 0.0, 0.0])
        off_mass = 2.0 * math.exp(-B_bar * (1.0 - alpha))
        p_zero = 1.0 / (1.0 + off_mass)
        lower = math.exp(H * math.log(p_zero))
        requirements = (2 * math.exp(-B_bar / 4) <= min(1 / (4 * T * H), 1 / (5 * H * B_bar**2))
                        and log_n <= H * B_bar / 8)
    else:
        theta_star = np.array([0.5, 0.5])
        r = math.log(H / (4.0 * log_n)) / b if H > 4 * log_n else -math.inf
        if not 0 <= r <= 0.5:
            raise ValueError(
                f"sgd_horizon_lower_bound: case 'B' needs 0 <= r <= 1/2 with r = log(H/(4 log N))/b, "
                f"i.e. H >= 4 log N = {4 * log_n:.3g}; got H={H}, N={N}, b={b} (r={r})")
        theta_init = np.array([r - 1.0 / b, 0.25])
        mu_plus = min(1.0, c_mu * B_bar * H / (T * b * b * log_n))
        mu = np.array([0.0, mu_plus, 1.0 - mu_plus])
        lower = mu_plus / 2.0
        requirements = True

    truth = LinearModel(features, jnp.asarray(theta_star), horizon=H)
    log_p = np.asarray(jax.nn.log_softmax(psi @ theta_star, axis=-1))  # (3, V)
    mean = np.einsum("xv,xvd->xd", np.exp(log_p), psi)
    per_step_var = np.einsum("xv,xv->x", np.exp(log_p), np.sum((psi - mean[:, None]) ** 2, -1))
    info = {
        "B_bar": B_bar, "b": b, "case": case, "eta": eta, "eta_bar": eta_bar, "alpha": alpha,
        "theta_star": jnp.asarray(theta_star), "theta_init": jnp.asarray(theta_init), "r": r,
        "mu_plus": mu_plus, "lower_bound": lower, "rate": min(1.0, H / (T * log_n)),
        "requirements_met": bool(requirements), "log_n": log_n, "prompts": PROMPTS,
        "sigma2_star": float(H * np.dot(mu, per_step_var)),
    }
    return Instance(name="sgd_horizon_lower_bound", truth=truth, mu=jnp.asarray(mu),
                    features=features, constraint=Ball(1.0), info=info)


def _compositions(horizon: int, vocab: int) -> np.ndarray:
    """All count vectors k ∈ N^V with Σ k = H, shape ``(C(H+V−1, V−1), V)``."""
    rows = []
    for cuts in itertools.combinations(range(horizon + vocab - 1), vocab - 1):
        edges = (-1,) + cuts + (horizon + vocab - 1,)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(vocab)])
    return np.asarray(rows, dtype=np.int64)


def multinomial_coverage(truth_log_probs, model_log_probs, mu, horizon: int, N) -> Array:
    r"""Exact Cov_N for laws whose tokens are i.i.d. given the prompt.

    .. math::

        \mathrm{Cov}_N = \sum_x \mu(x)\sum_{k:\,\sum_v k_v = H}
        \binom{H}{k}\prod_v p_x(v)^{k_v}\;
        \mathbb 1\Big\{\sum_v k_v(\log p_x(v) - \log q_x(v)) \ge \log N - \tau\Big\}

    (arXiv 2510.15020 v2, Def. 1.1; CONSTRUCTIONS.md §7 "Exact"), τ = 1e-9; q = 0 where
    p > 0 counts as ratio +∞. O(P·H^{V−1}) terms (O(H²) for V = 3).

    **Arguments:** `truth_log_probs`, `model_log_probs` ``(P, V)`` normalized per prompt,
    `mu` ``(P,)``, `horizon` H (static), `N` ≥ 1 any shape.

    **Returns:** coverage with the shape of `N`.
    """
    horizon = check_positive_int(horizon, "horizon", "multinomial_coverage")
    N = check_thresholds(N, "multinomial_coverage")
    lp = jnp.asarray(truth_log_probs)
    lq = jnp.asarray(model_log_probs, dtype=lp.dtype)
    if lp.ndim != 2 or lq.shape != lp.shape:
        raise ValueError(
            f"multinomial_coverage: truth_log_probs and model_log_probs must both have shape (P, V), "
            f"got {lp.shape} and {lq.shape}")
    levels = jnp.asarray(N, dtype=lp.dtype)
    log_t = jnp.log(levels).reshape(-1) - TIE_TOLERANCE
    counts = jnp.asarray(_compositions(horizon, lp.shape[1]), dtype=lp.dtype)  # (C, V)
    result = _multinomial_coverage_core(lp, lq, jnp.asarray(mu, dtype=lp.dtype), counts, log_t)
    return result.reshape(levels.shape)


@jax.jit
def _multinomial_coverage_core(lp, lq, mu, counts, log_t):
    horizon = jnp.sum(counts[0])
    present = counts[None] > 0  # (1, C, V)
    log_coef = gammaln(horizon + 1.0) - jnp.sum(gammaln(counts + 1.0), axis=-1)  # (C,)
    safe_lp = jnp.where(jnp.isneginf(lp), 0.0, lp)
    log_pmf = log_coef[None] + jnp.sum(jnp.where(present, counts[None] * safe_lp[:, None], 0.0), -1)
    possible = ~jnp.any(present & jnp.isneginf(lp)[:, None], axis=-1)  # (P, C)
    diff = jnp.where(jnp.isneginf(lq) | jnp.isneginf(lp), 0.0, lp - lq)
    ratio = jnp.sum(jnp.where(present, counts[None] * diff[:, None], 0.0), axis=-1)
    infinite = jnp.any(present & jnp.isneginf(lq)[:, None] & ~jnp.isneginf(lp)[:, None], axis=-1)
    ratio = jnp.where(infinite, jnp.inf, ratio)
    mass = jnp.where(possible, jnp.exp(log_pmf), 0.0)  # (P, C)
    covered = ratio[..., None] >= log_t  # (P, C, J)
    per_prompt = jnp.sum(jnp.where(covered, mass[..., None], 0.0), axis=1)  # (P, J)
    return jnp.clip(mu @ per_prompt, 0.0, 1.0)
