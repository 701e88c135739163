r"""Two classes for the general MLE theorems: a fine ladder and a floored simplex.

- :func:`fine_ladder` (CONSTRUCTIONS §12): J independent blocks, block j a copy of
  ``fine_tightness`` (§5) at level N_j = e^{L_j}; the class is the product of the blocks'
  classes ((2^d + 1)^J models). A rich class whose small-scale covering is large and whose
  coarse covering is 2^J: the MLE's Cov_N over it decays like 1/log N (Thm 4.1's fine term,
  arXiv 2510.15020 v2, Eq. 7; THEORY §5.3).
- :func:`floored_simplex` (CONSTRUCTIONS §13): the convex class of mixtures
  π_w = (1−η)·w + η·u of smoothed point masses, i.e. all laws q on K symbols with q ≥ η/K
  (Assumption E.1; v2 Thm E.1; THEORY §5.8). Exact MLE by water-filling; the best single
  mixture component (a non-convex learner) for contrast.

Every quantity here is exact (closed forms); covering numbers are the stated upper bounds.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from covsim._validate import require
from covsim.exact import TIE_TOLERANCE
from covsim.instances._base import Instance
from covsim.instances.statistical import fine_tightness_mle, fine_tightness_truth
from covsim.models import TabularModel

__all__ = [
    "fine_ladder",
    "fine_ladder_counts",
    "fine_ladder_mle",
    "fine_ladder_plugin",
    "fine_ladder_coverage",
    "fine_ladder_log_covering",
    "floored_simplex",
    "floored_simplex_mle",
    "floored_simplex_vertex_mle",
    "floored_simplex_log_covering",
    "floored_simplex_model",
]


_require = require  # the package's one validation module (covsim._validate)


# ---------------------------------------------------------------------------
# §12 fine_ladder


def fine_ladder(n: int, d: int, log_levels, *, horizon: int = 1, c_eps: float = 0.5,
                c_p: float = 0.5) -> Instance:
    r"""J blocks of ``fine_tightness`` at levels N_j = e^{L_j} (CONSTRUCTIONS §12).

    Prompts: block j has prompts j(d+1) + {0, 1, …, d} (0 = its rare prompt); each block has
    μ-mass 1/J, inside it μ(0_j) = p_j, μ(i_j) = (1 − p_j)/d, with n_j := n/J,
    ε = c_ε√(d/n_j) (all blocks) and p_j = c_p ε²/L_j. Responses have H = `horizon` tokens.
    π_D: all ones on rare prompts, i.i.d. Ber(½) tokens on fine prompts.
    Class: the product over blocks of {π_D-block} ∪ {π_θ-block : θ ∈ {±1}^d}, where π_θ's first
    token on 0_j is Ber(e^{−L_j}) (later tokens 1, as under π_D) and its tokens on i_j are
    i.i.d. Ber((1 + εθ_i)/2). π_D ∈ Π. At H = 1 this is J copies of ``fine_tightness``.

    **Arguments:** `n` with n/J ≥ 2d; `d` ≥ 1; `log_levels` (L_j ≥ log 2), increasing;
    `horizon` H ≥ 1.

    **Returns:** an :class:`Instance` (V = 2); ``info``: ``n``, ``d``, ``J``, ``H``,
    ``log_levels``, ``epsilon``, ``p`` (per block), ``weights`` (masses p_j/J of the rare
    prompts), ``class_size_log`` = J·log(2^d + 1), ``fine_radius`` = H·(−log(1−ε)) (the largest
    fine-prompt log-ratio between π_D and any π_θ).
    """
    where = "fine_ladder"
    L = np.asarray(log_levels, dtype=float).ravel()
    J = int(L.size)
    H = int(horizon)
    _require(J >= 1, where, "need at least one level")
    _require(H >= 1, where, f"horizon must be >= 1, got {horizon!r}")
    _require(bool(np.all(L >= math.log(2.0) - 1e-12)), where, f"levels must be >= log 2, got {L.tolist()}")
    _require(bool(np.all(np.diff(L) > 0)), where, f"levels must increase, got {L.tolist()}")
    _require(int(d) >= 1, where, f"d must be >= 1, got {d!r}")
    n_j = n / J
    _require(n_j >= 2 * d, where, f"need n/J >= 2d, got n={n}, J={J}, d={d}")
    eps = c_eps * math.sqrt(d / n_j)
    _require(eps < 0.5, where, f"epsilon must be < 1/2, got {eps!r}")
    p = c_p * eps * eps / L
    _require(bool(np.all(p < 1.0)), where, f"p_j must be < 1, got {p.tolist()}")
    dtype = jnp.result_type(float)
    block = fine_tightness_truth(d, dtype).logits  # (d+1, 1, 1, 2)
    truth = TabularModel(jnp.concatenate([block] * J, axis=0), horizon=H)
    mu = np.concatenate([np.concatenate([[pj], np.full(d, (1 - pj) / d)]) / J for pj in p])
    info = {
        "n": int(n), "d": int(d), "J": J, "H": H, "log_levels": L.tolist(), "epsilon": eps,
        "p": p.tolist(), "weights": (p / J).tolist(), "c_eps": c_eps, "c_p": c_p,
        "class_size_log": J * math.log(2.0**d + 1.0), "fine_radius": -H * math.log1p(-eps),
    }
    return Instance("fine_ladder", truth, jnp.asarray(mu, dtype), info=info)


def fine_ladder_counts(x, y, d: int, J: int) -> Array:
    r"""Sufficient counts ``(J, d+1, 2)`` of a ladder dataset ``x (n,)``, ``y (n, H)``.

    Fine prompts: token counts over all H positions. Rare prompts: counts of the first token
    only (later tokens are 1 under every model of the class: they carry no likelihood).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y).reshape(x.shape[0], -1)
    H = y.shape[1]
    P = J * (d + 1)
    dt = jnp.result_type(float)
    every = jnp.zeros((P, 2), dt).at[jnp.repeat(x, H), y.reshape(-1)].add(1.0)
    first = jnp.zeros((P, 2), dt).at[x, y[:, 0]].add(1.0)
    rare = (jnp.arange(P) % (d + 1) == 0)[:, None]
    return jnp.where(rare, first, every).reshape(J, d + 1, 2)


def _ladder_rows(row_logits, d: int, H: int):
    """(P, 1, 1, 2) rows → (P, H, 1, 2): rare prompts deterministic 1 after the first token."""
    P = row_logits.shape[0]
    if H == 1:
        return row_logits
    full = jnp.broadcast_to(row_logits, (P, H, 1, 2))
    one = jnp.asarray([-jnp.inf, 0.0], row_logits.dtype)
    rare = (jnp.arange(P) % (d + 1) == 0)[:, None, None, None]
    later = (jnp.arange(H) >= 1)[None, :, None, None]
    return jnp.where(rare & later, one, full)


def fine_ladder_mle(counts, epsilon, log_levels, horizon: int = 1) -> tuple[TabularModel, Array]:
    r"""Exact MLE over the product class: block by block the ``fine_tightness`` closed form.

    The log-likelihood is a sum over blocks and the class is a product, so the MLE picks,
    in each block j independently, π_θ (θ_i = sign(C(i,1) − C(i,0)), ties +1) iff its gain
    G_j = −C(0_j, 1)·L_j + Σ_i [max·log(1+ε) + min·log(1−ε)] > 0, else π_D (ties → π_D), with
    the counts of :func:`fine_ladder_counts` (token counts on fine prompts).

    **Returns:** ``(model, gains)`` with gains ``(J,)``. Vmappable over counts.
    """
    L = jnp.asarray(log_levels)
    d = counts.shape[1] - 1
    models, gains = [], []
    for j in range(counts.shape[0]):
        m, _, g = fine_tightness_mle(counts[j], epsilon, jnp.exp(L[j]))
        models.append(m.logits)
        gains.append(g)
    rows = _ladder_rows(jnp.concatenate(models, axis=0), d, int(horizon))
    return TabularModel(rows, horizon=int(horizon)), jnp.stack(gains)


def fine_ladder_plugin(x, y, num_prompts: int) -> TabularModel:
    r"""Control learner: the unsmoothed plug-in p̂(y_h|x, h) = C(x, h, y_h)/C(x), token 0 on unseen x.

    The MLE of the unrestricted position-wise tabular class (zeros allowed), with the default
    "token 0" on prompts without data: an unseen rare prompt gets p̂(1|0_j) = 0 (ratio +∞ at
    every N). ``x (n,)``, ``y (n, H)``.
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y).reshape(x.shape[0], -1)
    H = y.shape[1]
    c = jnp.zeros((num_prompts, H, 2), jnp.result_type(float))
    c = c.at[jnp.repeat(x, H), jnp.tile(jnp.arange(H), x.shape[0]), y.reshape(-1)].add(1.0)
    tot = c.sum(-1, keepdims=True)
    probs = jnp.where(tot > 0, c / jnp.maximum(tot, 1.0), jnp.asarray([1.0, 0.0], c.dtype))
    logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
    return TabularModel(logits.reshape(num_prompts, H, 1, 2), horizon=H)


def fine_ladder_coverage(gains, weights, log_levels, N) -> Array:
    r"""Cov_N of the ladder MLE, exactly: Σ_j (p_j/J)·1{G_j > 0}·1{L_j ≥ log N}.

    Block j's ratio is exactly N_j = e^{L_j} on its rare prompt when π_θ is picked (ties
    counted); the fine prompts' ratios are ≤ e^{fine_radius} = (1−ε)^{−H}. Valid for
    log N > H·(−log(1−ε)) (any N ≥ 2 at H = 1). `N` any shape.
    """
    g = jnp.asarray(gains)
    w = jnp.asarray(weights, dtype=g.dtype)
    L = jnp.asarray(log_levels, dtype=g.dtype)
    logN = jnp.log(jnp.asarray(N, dtype=g.dtype))[..., None]
    on = (g > 0) & (L >= logN - TIE_TOLERANCE)
    return jnp.sum(jnp.where(on, w, 0.0), axis=-1)


def fine_ladder_log_covering(alpha, d: int, J: int, epsilon: float, horizon: int = 1):
    r"""Upper bound on log N_∞(Π, α) for the ladder (CONSTRUCTIONS §12).

    In block j, π_D is at sup-log distance +∞ from every π_θ (π_D(0|0_j) = 0), so it is
    its own centre; the 2^d models π_θ share the rare row and, on the fine prompts, are within
    r := H·(−log(1−ε)) of one centre (i.i.d. Ber(½) tokens), so one centre covers them at
    α ≥ r, and 2^d centres at any α. Blocks are on disjoint prompts (product of covers):
    J·log 2 for α ≥ r, J·log(1 + 2^d) otherwise. H enters only through r.
    """
    a = np.asarray(alpha, dtype=float)
    big = J * math.log1p(2.0**d)
    return np.where(a >= -horizon * math.log1p(-epsilon), J * math.log(2.0), big)


# ---------------------------------------------------------------------------
# §13 floored_simplex


def floored_simplex_model(q) -> TabularModel:
    r"""The law q ``(K,)`` on one prompt, H = 1, as a :class:`TabularModel`."""
    q = jnp.asarray(q)
    logits = jnp.where(q > 0, jnp.log(jnp.where(q > 0, q, 1.0)), -jnp.inf)
    return TabularModel(logits.reshape(1, 1, 1, -1), horizon=1)


def floored_simplex(K: int, eta: float, *, zipf: float = 1.0, misspecified: bool = False) -> Instance:
    r"""The convex mixture class q = (1−η)w + η/K, w ∈ Δ_K (CONSTRUCTIONS §13).

    Components π_k = (1−η)e_k + η·Unif; Π = their convex hull = {q ∈ Δ_K : q ≥ f}, f = η/K.
    θ = w ↦ π_w(y) is linear (Assumption E.1). Truth: well-specified π_D = (1−η)w⋆ + f with
    Zipf weights w⋆_k ∝ k^{−zipf}; misspecified π_D ∝ k^{−zipf} on the first ⌈K/2⌉ symbols and
    0 on the rest (not in Π: it has mass below f). θ̄ = argmin_w KL(π_D‖π_w) is
    :func:`floored_simplex_mle` with counts π_D.

    **Returns:** an :class:`Instance` (P = 1, H = 1, V = K); ``info``: ``K``, ``eta``, ``floor``,
    ``log_diameter`` D = log((1 − (K−1)f)/f), ``theta_bar`` (the law π_θ̄), ``misspecified``.
    """
    where = "floored_simplex"
    _require(int(K) >= 2, where, f"K must be >= 2, got {K!r}")
    _require(0.0 < eta < 1.0, where, f"eta must be in (0, 1), got {eta!r}")
    K = int(K)
    f = eta / K
    z = np.arange(1, K + 1, dtype=float) ** (-zipf)
    if misspecified:
        half = (K + 1) // 2
        z[half:] = 0.0
        pd = z / z.sum()
    else:
        pd = (1 - eta) * z / z.sum() + f
    dtype = jnp.result_type(float)
    pd = jnp.asarray(pd, dtype)
    theta_bar = floored_simplex_mle(pd, f)
    info = {"K": K, "eta": eta, "floor": f, "zipf": zipf, "misspecified": bool(misspecified),
            "log_diameter": math.log((1 - (K - 1) * f) / f), "theta_bar": np.asarray(theta_bar).tolist()}
    return Instance("floored_simplex", floored_simplex_model(pd), jnp.ones((1,), dtype), info=info)


def floored_simplex_mle(counts, floor, iters: int = 200) -> Array:
    r"""Exact maximizer of Σ_y c_y log q_y over {q ∈ Δ_K : q ≥ f} (water-filling).

    KKT: q_y = max(c_y/λ, f) with λ such that Σ q = 1. λ is bracketed by bisection (in log
    space), then recomputed exactly on the unclamped set U: λ = Σ_U c/(1 − (K − |U|)f).
    Needs K·f < 1 and some c_y > 0. Vmappable. **Returns** q ``(K,)``.
    """
    c = jnp.asarray(counts)
    dtype = jnp.result_type(c.dtype, float)
    c = c.astype(dtype)
    K = c.shape[-1]
    f = jnp.asarray(floor, dtype)
    tot = jnp.sum(c)
    lo, hi = jnp.log(tot) - 1.0, jnp.log(tot) - jnp.log(f) + 1.0  # Σq(λ) > 1 at lo, < 1 at hi

    def body(_, bracket):
        a, b = bracket
        m = 0.5 * (a + b)
        s = jnp.sum(jnp.maximum(c * jnp.exp(-m), f))
        return jnp.where(s > 1, m, a), jnp.where(s > 1, b, m)

    a, b = jax.lax.fori_loop(0, iters, body, (lo, hi))
    lam = jnp.exp(0.5 * (a + b))
    free = c / lam > f
    lam = jnp.sum(jnp.where(free, c, 0.0)) / (1.0 - (K - jnp.sum(free)) * f)
    return jnp.where(free, c / lam, f)


def floored_simplex_vertex_mle(counts, eta) -> Array:
    r"""Control learner: the MLE over the K components alone (non-convex class {π_k}).

    Σ_y c_y log π_k(y) = c_k·log((1−η+f)/f) + const, so k̂ = argmax_k c_k (ties: lowest k).
    **Returns** q = (1−η)e_k̂ + f ``(K,)``.
    """
    c = jnp.asarray(counts)
    dtype = jnp.result_type(c.dtype, float)
    K = c.shape[-1]
    k = jnp.argmax(c)
    return (1 - eta) * (jnp.arange(K) == k).astype(dtype) + eta / K


def floored_simplex_log_covering(alpha, K: int, floor: float):
    r"""Upper bound log N_∞(Π, α) ≤ K·log(⌊D/α⌋ + 1), D = log((1 − (K−1)f)/f) (CONSTRUCTIONS §13).

    Round each log q_y down to the grid log f + α·ℤ (⌊D/α⌋ + 1 levels), then normalize: the
    rounded g has q e^{−α} ≤ g ≤ q, so Σ g ∈ [e^{−α}, 1] and the normalized centre is within α
    of q in sup-log distance. 0 when α > D (one centre, e.g. the uniform law). `alpha` > 0.
    """
    a = np.asarray(alpha, dtype=float)
    D = math.log((1 - (K - 1) * floor) / floor)
    return K * np.log(np.floor(D / a) + 1.0)
