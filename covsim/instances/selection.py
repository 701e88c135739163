r"""Named constructions for selection and Best-of-N (CONSTRUCTIONS.md §8 and §11).

- :func:`misspecified_pair` — v2 Prop. E.1 (ICLR: Prop. G.2): MLE and min-KL selection
  pick the candidate with the worse coverage; the tournament picks the good one.
- :func:`mode_tradeoff` — project design (Figure 1 analogue): during fine-tuning KL falls
  monotonically while mid-range coverage dips and rises again.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from covsim.exact import TIE_TOLERANCE, kl
from covsim.instances._base import Box, Instance
from covsim.models import LinearModel, TabularModel

__all__ = [
    "PLUS",
    "MINUS",
    "misspecified_pair",
    "misspecified_pair_coverage",
    "misspecified_loglik_gap",
    "misspecified_mle_prefers_pi2",
    "mode_tradeoff",
    "mode_tradeoff_reference_trajectory",
]

PLUS = 0
"""Prompt index of x = + (probability 1 − p) in :func:`misspecified_pair`."""

MINUS = 1
"""Prompt index of x = − (probability p) in :func:`misspecified_pair`."""


# ---------------------------------------------------------------------------
# §8 misspecified_pair


def _check_alpha_m(alpha, M, where: str) -> tuple[float, float]:
    alpha, M = float(alpha), float(M)
    if not (0.0 < alpha <= 1.0):
        raise ValueError(f"{where}: alpha must lie in (0, 1], got {alpha!r}")
    if not (M > math.exp(alpha)):
        raise ValueError(f"{where}: M must exceed e^alpha = {math.exp(alpha):.6g}, got {M!r}")
    return alpha, M


def _bernoulli_logits(prob_one: float) -> list[float]:
    """Normalized log-probabilities ``[log P(0), log P(1)]`` of Ber(prob_one)."""
    return [math.log1p(-prob_one), math.log(prob_one)]


def _kl_half_bernoulli(q: float) -> float:
    r""":math:`\mathrm{KL}(\mathrm{Ber}(\tfrac12)\|\mathrm{Ber}(q)) = -\tfrac12\log(4q(1-q))`."""
    return -0.5 * (math.log(4.0 * q) + math.log1p(-q))


def misspecified_pair(*, alpha: float = 0.5, M: float = 1e4) -> Instance:
    r"""Misspecified pair (CONSTRUCTIONS.md §8; arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2)).

    Prompts X = {+, −} with indices ``PLUS = 0`` and ``MINUS = 1``, μ = (1 − p, p); tokens
    {0, 1}, H = 1. Truth π_D(·|±) = Ber(½) (not in the class). Candidates (Ber(q) puts mass q
    on token 1):

    - π₁(·|+) = Ber(e^{−α}/2), π₁(·|−) = Ber(½)   (sup|log π_D − log π₁| ≤ α);
    - π₂(·|+) = Ber(½),        π₂(·|−) = Ber(1/(2M)).

    p = α²/(32 log M) [correction, THEORY.md §10.3]. Exact facts:
    Cov_N(π₁) = 0 for N > e^α, Cov_N(π₂) = p/2 for 1 < N ≤ M,
    D_KL(π_D‖π₁) = (1 − p)·KL(Ber(½)‖Ber(e^{−α}/2)), D_KL(π_D‖π₂) = p·KL(Ber(½)‖Ber(1/(2M))).

    **Arguments:** `alpha` ∈ (0, 1], `M` > e^α.

    **Returns:** an :class:`~covsim.instances._base.Instance` with ``candidates = (π₁, π₂)``
    (TabularModels of logits shape (2, 1, 1, 2)) and ``info`` keys ``p``, ``alpha``, ``M``,
    ``plus_index``, ``minus_index``, ``kl_pi1``, ``kl_pi2`` (closed forms, floats),
    ``coverage_N`` (the grid (2, 4, 16)) with ``coverage_pi1`` / ``coverage_pi2`` on it
    (closed forms, see :func:`misspecified_pair_coverage`).
    """
    alpha, M = _check_alpha_m(alpha, M, "misspecified_pair")
    p = alpha**2 / (32.0 * math.log(M))
    half = _bernoulli_logits(0.5)
    truth = TabularModel(jnp.asarray([[[half]], [[half]]]), horizon=1)
    pi1 = TabularModel(jnp.asarray([[[_bernoulli_logits(math.exp(-alpha) / 2)]], [[half]]]), horizon=1)
    pi2 = TabularModel(jnp.asarray([[[half]], [[_bernoulli_logits(1.0 / (2.0 * M))]]]), horizon=1)
    mu = jnp.asarray([1.0 - p, p])
    grid = (2.0, 4.0, 16.0)
    cov1, cov2 = misspecified_pair_coverage(np.asarray(grid), alpha=alpha, M=M)
    info = {
        "p": p,
        "alpha": alpha,
        "M": M,
        "plus_index": PLUS,
        "minus_index": MINUS,
        "kl_pi1": (1.0 - p) * _kl_half_bernoulli(math.exp(-alpha) / 2),
        "kl_pi2": p * _kl_half_bernoulli(1.0 / (2.0 * M)),
        "coverage_N": grid,
        "coverage_pi1": tuple(float(c) for c in cov1),
        "coverage_pi2": tuple(float(c) for c in cov2),
    }
    return Instance("misspecified_pair", truth, mu, candidates=(pi1, pi2), info=info)


def misspecified_pair_coverage(N, *, alpha: float = 0.5, M: float = 1e4):
    r"""Closed-form Cov_N(π_D‖π₁) and Cov_N(π_D‖π₂) of :func:`misspecified_pair`, N ≥ 1.

    .. math::

        \mathrm{Cov}_N(\pi_1) = \tfrac{1-p}{2}1\{N\le e^\alpha\} + p\,1\{N \le 1\},\qquad
        \mathrm{Cov}_N(\pi_2) = \tfrac{p}{2}1\{N\le M\} + (1-p)\,1\{N \le 1\}

    (CONSTRUCTIONS.md §8; comparisons with the 1e-9-nat tie tolerance). Returns two NumPy
    arrays with the shape of `N`.
    """
    alpha, M = _check_alpha_m(alpha, M, "misspecified_pair_coverage")
    p = alpha**2 / (32.0 * math.log(M))
    log_n = np.log(np.asarray(N, dtype=float)) - TIE_TOLERANCE
    at_one = (log_n <= 0.0).astype(float)
    cov1 = 0.5 * (1 - p) * (log_n <= alpha) + p * at_one
    cov2 = 0.5 * p * (log_n <= math.log(M)) + (1 - p) * at_one
    return cov1, cov2


def misspecified_loglik_gap(counts, *, alpha: float = 0.5, M: float = 1e4):
    r"""Log-likelihood gap :math:`\hat L(\pi_2) - \hat L(\pi_1)` from counts (CONSTRUCTIONS.md §8).

    .. math::

        N(+,1)\,\alpha + N(+,0)\log\frac{e^\alpha}{2e^\alpha - 1} - N(-,1)\log M + N(-,0)\log(2 - 1/M).

    **Arguments:** `counts` array ``(..., 2, 2)`` with ``counts[..., x, y]`` the number of
    samples with prompt index x (``PLUS = 0``, ``MINUS = 1``) and token y.
    **Returns:** an array of shape ``counts.shape[:-2]``.
    """
    alpha, M = _check_alpha_m(alpha, M, "misspecified_loglik_gap")
    counts = jnp.asarray(counts)
    if counts.ndim < 2 or counts.shape[-2:] != (2, 2):
        raise ValueError(f"misspecified_loglik_gap: counts must have shape (..., 2, 2), got {counts.shape}")
    weights = jnp.asarray([
        [math.log(math.exp(alpha) / (2 * math.exp(alpha) - 1)), alpha],  # (+, 0), (+, 1)
        [math.log(2 - 1 / M), -math.log(M)],  # (−, 0), (−, 1)
    ])
    return jnp.sum(counts * weights, axis=(-2, -1))


def misspecified_mle_prefers_pi2(counts, *, alpha: float = 0.5, M: float = 1e4):
    r"""Whether the MLE over {π₁, π₂} is π₂: :math:`\hat L(\pi_2) - \hat L(\pi_1) > 0` (CONSTRUCTIONS.md §8).

    Same arguments as :func:`misspecified_loglik_gap`; returns a boolean array (ties → π₁).
    """
    return misspecified_loglik_gap(counts, alpha=alpha, M=M) > 0


# ---------------------------------------------------------------------------
# §11 mode_tradeoff


def _mode_tradeoff_structure(R: int, V: int, H: int, k: int, seed: int):
    """Pivotal sets, allowed sets and classes of the 2R prompts (NumPy, deterministic)."""
    rng = np.random.default_rng([seed, R, V, H, k])
    num_prompts = 2 * R
    pivotal = np.zeros((num_prompts, H), dtype=bool)
    allowed = np.zeros((num_prompts, H, V), dtype=bool)
    evens, odds = np.arange(0, V, 2), np.arange(1, V, 2)
    for x in range(num_prompts):
        pivotal[x, rng.choice(H, size=k, replace=False)] = True
        for h in range(H):
            if pivotal[x, h]:
                allowed[x, h, rng.choice(evens)] = True
                allowed[x, h, rng.choice(odds)] = True
            else:
                allowed[x, h, rng.integers(V)] = True
    class_sign = np.where(np.arange(num_prompts) < R, 1.0, -1.0)
    return pivotal, allowed, class_sign


def _mode_tradeoff_continuum(R: int, V: int, H: int, seed: int, pivot_counts, class_scale, avoid_N,
                             B_v: float, B_c: float):
    """Heterogeneous variant: per-prompt pivot counts and class-feature scales (NumPy, deterministic).

    The pivot counts cycle through `pivot_counts` within each class; each prompt's scale c(x)
    is log-uniform on `class_scale`, redrawn until every mid-training log-ratio of the prompt
    (θ = (θ⋆_0, 0, 0): pivots 50/50 against π_D's pivot law σ(160·B_c·c(x))) lies at least
    ``AVOID_MARGIN`` nats from log N for each N in `avoid_N` — no knife edge at a tested level.
    """
    rng = np.random.default_rng([seed, R, V, H, 7919])
    num_prompts = 2 * R
    counts = np.asarray([pivot_counts[i % len(pivot_counts)] for i in range(R)] * 2, dtype=int)
    pivotal = np.zeros((num_prompts, H), dtype=bool)
    allowed = np.zeros((num_prompts, H, V), dtype=bool)
    evens, odds = np.arange(0, V, 2), np.arange(1, V, 2)
    lo, hi = math.log(class_scale[0]), math.log(class_scale[1])
    scale = np.zeros(num_prompts)
    log_avoid = np.log(np.asarray(avoid_N, dtype=float)) if len(avoid_N) else np.zeros(0)
    forced = math.exp(0.6 * B_v)  # θ⋆_0 = 0.6: weight of an allowed token against V − 1 others at 1
    for x in range(num_prompts):
        pivotal[x, rng.choice(H, size=counts[x], replace=False)] = True
        for h in range(H):
            if pivotal[x, h]:
                allowed[x, h, rng.choice(evens)] = True
                allowed[x, h, rng.choice(odds)] = True
            else:
                allowed[x, h, rng.integers(V)] = True
        for _ in range(10_000):
            c = math.exp(rng.uniform(lo, hi))
            margin = 160.0 * B_c * c  # θ⋆_2 = 80, s = ±1 on the two allowed tokens
            z = forced * (math.exp(margin / 2) + math.exp(-margin / 2)) + (V - 2)
            p_right, p_wrong = forced * math.exp(margin / 2) / z, forced * math.exp(-margin / 2) / z
            q = forced / (2 * forced + (V - 2))
            j = np.arange(counts[x] + 1)
            mid = (counts[x] - j) * math.log(p_right / q) + j * math.log(p_wrong / q)
            if not log_avoid.size or np.min(np.abs(mid[:, None] - log_avoid[None, :])) >= AVOID_MARGIN:
                break
        else:  # pragma: no cover - the draw space is continuous
            raise RuntimeError("mode_tradeoff: could not draw class scales avoiding the levels")
        scale[x] = c
    class_sign = np.where(np.arange(num_prompts) < R, 1.0, -1.0)
    return pivotal, allowed, class_sign, scale


AVOID_MARGIN = 0.05
"""Minimum distance (nats) between a mid-training log-ratio of the continuum variant of
:func:`mode_tradeoff` and log N for each avoided level N."""


def mode_tradeoff(*, R: int = 16, seed: int = 0, V: int = 8, H: int = 8, k: int = 2,
                  B_v: float = 16.0, B_s: float = 0.5, B_c: float = 0.05,
                  class_probs: tuple[float, float] = (0.9, 0.1),
                  pivot_counts: tuple[int, ...] | None = None,
                  class_scale: tuple[float, float] | None = None,
                  shared_scale: tuple[float, float] | None = None,
                  avoid_N: tuple[float, ...] = ()) -> Instance:
    r"""Mode trade-off (CONSTRUCTIONS.md §11; project design, Figure 1 analogue of v2 App. C.2).

    Prompts x = 0..2R−1: x < R is class 1 (z = +1, total mass 0.9), x ≥ R is class 2
    (z = −1, mass 0.1), uniform within a class. Per prompt (NumPy ``default_rng`` seeded
    with ``[seed, R, V, H, k]``): a pivotal set I(x) of k positions and allowed sets A_h(x)
    — one random token off I(x), one random even and one random odd token on I(x).
    Positions are numbered h = 1..H in the parity rule (array index h − 1):
    s(h, v) = +1 if v ≡ h (mod 2), else −1. Features (d = 3, independent of the previous
    token; shape (P, H, 1, V, 3)):

    .. math::

        \psi_0 = B_v 1\{v\in A_h(x)\},\quad
        \psi_1 = B_s 1\{h\in I(x), v\in A_h(x)\} s(h,v),\quad
        \psi_2 = B_c z(x) 1\{h\in I(x), v\in A_h(x)\} s(h,v).

    Θ = box [−0.6, 0.6] × [−1.5, 1.5] × [−80, 80] (departure from Assumption 2.2);
    θ⋆ = (0.6, 0, 80): forced positions put margin 9.6 on their allowed token; at pivotal
    positions class 1 prefers parity(v) = parity(h), class 2 the opposite, margin 8.

    **Success** (for Pass@N): reproducing π_D's intended response — every token in its
    allowed set and every pivotal choice following the prompt's class rule. That set is
    the single sequence ``info["target_y"][x]`` (also π_D's most likely response), so
    :func:`covsim.bon.pass_at_n_exact` with ``target_y`` is exact.

    **Returns:** an :class:`~covsim.instances._base.Instance` with ``truth`` =
    LinearModel(features, θ⋆) and ``info`` keys ``theta_star``, ``theta_init`` ((0.05, 0, 0)),
    ``eta`` (2/(H·B_v²)), ``batch_size`` (128), ``num_steps`` (2e4), ``target_y`` (P, H),
    ``pivotal`` (P, H) bool, ``allowed`` (P, H, V) bool, ``class_sign`` (P,), ``R``, ``k``,
    ``B_v``, ``B_s``, ``B_c``, ``N_grid`` (4.6, 5.7, 8, 16).

    **Continuum variant** [project] (used by the Figure 1 checks): with `pivot_counts` (e.g.
    (1, 2, 3)) prompt x gets k(x) pivotal positions (cycling within each class, so both classes
    carry every count) instead of `k`, and with `class_scale` = (lo, hi) the class feature of
    prompt x is multiplied by c(x), log-uniform on [lo, hi], so π_D's pivot law is
    σ(160·B_c·c(x)) rather than one fixed margin 8; with `shared_scale` = (lo, hi) the shared
    feature of prompt x is multiplied by b(x), log-uniform on [lo, hi] (how hard the shared
    mode pulls each prompt). Coverage along a trajectory then takes a
    continuum of values instead of a few steps. c(x) is redrawn until every mid-training
    log-ratio (pivots 50/50) is ≥ ``AVOID_MARGIN`` nats from log N for N in `avoid_N`.
    ``info`` gains ``pivot_count``, ``class_scale`` and ``shared_scale`` (each (P,)). Defaults (None) give the
    original instance exactly.
    """
    for name, value, low in (("R", R, 1), ("V", V, 2), ("H", H, 1), ("k", k, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"mode_tradeoff: {name} must be an integer >= {low}, got {value!r}")
    if V % 2:
        raise ValueError(f"mode_tradeoff: V must be even (even/odd halves), got {V}")
    if k > H:
        raise ValueError(f"mode_tradeoff: k={k} pivotal positions exceed H={H}")
    if len(class_probs) != 2 or min(class_probs) <= 0 or abs(sum(class_probs) - 1) > 1e-9:
        raise ValueError(f"mode_tradeoff: class_probs must be two positive numbers summing to 1, "
                         f"got {class_probs!r}")
    shared = np.ones(2 * R)
    if pivot_counts is None and class_scale is None and shared_scale is None:
        pivotal, allowed, class_sign = _mode_tradeoff_structure(R, V, H, k, seed)
        scale = np.ones(2 * R)
    else:
        pivot_counts = tuple(int(c) for c in (pivot_counts or (k,)))
        if not pivot_counts or min(pivot_counts) < 0 or max(pivot_counts) > H:
            raise ValueError(f"mode_tradeoff: pivot_counts must lie in [0, H], got {pivot_counts!r}")
        class_scale = (1.0, 1.0) if class_scale is None else tuple(float(c) for c in class_scale)
        if len(class_scale) != 2 or not 0 < class_scale[0] <= class_scale[1]:
            raise ValueError(f"mode_tradeoff: class_scale must be (lo, hi) with 0 < lo <= hi, "
                             f"got {class_scale!r}")
        pivotal, allowed, class_sign, scale = _mode_tradeoff_continuum(
            R, V, H, seed, pivot_counts, class_scale, tuple(avoid_N), B_v, B_c)
        if shared_scale is not None:
            if len(shared_scale) != 2 or not 0 < shared_scale[0] <= shared_scale[1]:
                raise ValueError(f"mode_tradeoff: shared_scale must be (lo, hi) with 0 < lo <= hi, "
                                 f"got {shared_scale!r}")
            rng = np.random.default_rng([seed, R, V, H, 104729])
            shared = np.exp(rng.uniform(math.log(shared_scale[0]), math.log(shared_scale[1]), 2 * R))
    positions = np.arange(1, H + 1)
    parity_sign = np.where((np.arange(V)[None, :] % 2) == (positions[:, None] % 2), 1.0, -1.0)  # (H, V)
    on_pivot = pivotal[:, :, None] & allowed  # (P, H, V)
    features = np.stack([
        B_v * allowed,
        B_s * shared[:, None, None] * on_pivot * parity_sign[None],
        B_c * (class_sign * scale)[:, None, None] * on_pivot * parity_sign[None],
    ], axis=-1)[:, :, None, :, :]  # (P, H, 1, V, 3)
    preferred = allowed & (~pivotal[:, :, None] | (class_sign[:, None, None] * parity_sign[None] > 0))
    target_y = np.argmax(preferred, axis=-1)
    mu = np.concatenate([np.full(R, class_probs[0] / R), np.full(R, class_probs[1] / R)])
    theta_star = np.array([0.6, 0.0, 80.0])
    truth = LinearModel(jnp.asarray(features), jnp.asarray(theta_star), horizon=H)
    box = Box(jnp.asarray([-0.6, -1.5, -80.0]), jnp.asarray([0.6, 1.5, 80.0]))
    info = {
        "theta_star": jnp.asarray(theta_star),
        "theta_init": jnp.asarray([0.05, 0.0, 0.0]),
        "eta": 2.0 / (H * B_v**2),
        "batch_size": 128,
        "num_steps": 20_000,
        "target_y": jnp.asarray(target_y),
        "pivotal": jnp.asarray(pivotal),
        "allowed": jnp.asarray(allowed),
        "class_sign": jnp.asarray(class_sign),
        "R": R,
        "k": k,
        "B_v": B_v,
        "B_s": B_s,
        "B_c": B_c,
        "N_grid": (4.6, 5.7, 8.0, 16.0),
        "pivot_count": jnp.asarray(pivotal.sum(axis=1)),
        "class_scale": jnp.asarray(scale),
        "shared_scale": jnp.asarray(shared),
    }
    return Instance("mode_tradeoff", truth, jnp.asarray(mu), features=jnp.asarray(features),
                    constraint=box, info=info)


def mode_tradeoff_reference_trajectory(instance: Instance, checkpoints, *, eta: float | None = None) -> Array:
    r"""Population gradient ascent on :math:`\mathbb{E}_{\pi_D}\log\pi_\theta(y|x)` with clipping to Θ.

    .. math:: \theta_{t+1} = \mathrm{clip}_\Theta\big(\theta_t - \eta\,\nabla_\theta D_{KL}(\pi_D\|\pi_{\theta_t})\big),
              \qquad \theta_1 = \texttt{info["theta\_init"]}

    (CONSTRUCTIONS.md §11, the noiseless reference; ∇ log-likelihood = −∇KL.) Exact
    gradients via :func:`covsim.kl`.

    **Arguments:** `instance` from :func:`mode_tradeoff`; `checkpoints` increasing integers
    t ≥ 1 (static); `eta` defaults to ``info["eta"]``.

    **Returns:** ``(len(checkpoints), 3)``: θ_t at each checkpoint.
    """
    steps = [int(t) for t in checkpoints]
    if not steps or min(steps) < 1 or any(b < a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"mode_tradeoff_reference_trajectory: checkpoints must be increasing "
                         f"integers >= 1, got {checkpoints!r}")
    eta = float(instance.info["eta"] if eta is None else eta)
    lower, upper = instance.constraint
    theta1 = jnp.asarray(instance.info["theta_init"], dtype=instance.features.dtype)

    def loss(theta):
        return kl(instance.truth, instance.model(theta), instance.mu)

    grad = jax.grad(loss)

    def step(theta, _):
        return jnp.clip(theta - eta * grad(theta), lower, upper), theta

    _, thetas = jax.lax.scan(step, theta1, None, length=steps[-1])  # thetas[t-1] = θ_t
    return thetas[jnp.asarray(steps) - 1]
