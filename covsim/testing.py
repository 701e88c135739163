r"""Tools for researchers who unit-test their own bounds against covsim's exact metrics.

Two parts:

1. **Hypothesis strategies** that draw sequence laws and model pairs with the edge cases
   that break implementations: ``-inf`` logits (probability exactly 0; never a whole
   row), extreme logits (near-deterministic laws, log-ratios of hundreds of nats), long
   horizons, several prompts with uneven (even point-mass) prompt laws. They return
   :class:`~covsim.TabularModel` / :class:`~covsim.LinearModel` objects ready for
   :func:`covsim.kl`, :func:`covsim.coverage`, :func:`covsim.hellinger2`, ... Hypothesis
   is imported when a strategy is first built (``pip install "covsim[testing]"``), never by
   ``import covsim``.

   - :func:`prompt_distributions` ``(P)`` → μ, a probability vector ``(P,)``;
   - :func:`logit_tables` ``(P, H, V)`` → a ``(P, H, V+1, V)`` logit array;
   - :func:`tabular_pairs` → ``(π_D, π̂, μ)`` with two :class:`~covsim.TabularModel` s;
   - :func:`linear_pairs` → ``(π_θ⋆, π_θ̂, μ)`` with two AR-linear models on shared features.

2. **Adversarial search** for the worst instance of an inequality:
   :func:`adversarial_search` maximizes ``actual / bound`` over instances from random
   restarts (normalized gradient ascent with :func:`jax.grad` on ``log(actual/bound)``
   combined with a random-proposal hill climb, so that piecewise-constant metrics such as
   Cov_N are climbed too) and returns the worst instance found with its ratio
   (:class:`SearchResult`). A ratio above 1 is a counterexample; a ratio near 1 says the
   bound is nearly tight on the family searched; a ratio far below 1 after a real search
   says either the bound has slack or the family misses its extremal instances.

Example (a pytest test of the KL → coverage bound, arXiv 2510.15020 v2, Prop. 3.1,
Cov_N(π_D‖π̂) ≤ D_KL(π_D‖π̂)/(log N − 1 + 1/N); see README.md "Testing your own bounds")::

    from hypothesis import given, settings
    import covsim, covsim.testing as ct

    @settings(max_examples=50, deadline=None)
    @given(ct.tabular_pairs(max_prompts=3, max_horizon=4, max_vocab=3))
    def test_kl_bound(pair):
        p, q, mu = pair
        N = 16.0
        assert covsim.coverage(p, q, mu, N) <= covsim.bounds.kl_to_coverage(covsim.kl(p, q, mu), N) + 1e-9

References: F. Chen et al., *The Coverage Principle*, arXiv 2510.15020 v2 (Def. 1.1 for
Cov_N, Eq. 3 for AR-linear models, App. D for the inequalities); docs/THEORY.md §0–§4.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from covsim.models import LinearModel, TabularModel

__all__ = [
    "SearchResult",
    "adversarial_search",
    "ratio",
    "prompt_distributions",
    "logit_tables",
    "tabular_pairs",
    "linear_pairs",
]

# ---------------------------------------------------------------------------------------
# adversarial search


class SearchResult(NamedTuple):
    """Outcome of :func:`adversarial_search`.

    - `ratio`: the largest ``max_i actual_i / bound_i`` found (scalar; see :func:`ratio`).
    - `instance`: the instance (pytree, as returned by `init`) attaining it.
    - `actual`, `bound`: ``actual_fn(instance)`` and ``bound_fn(instance)`` there.
    - `violated`: whether ``actual > bound + rtol·(1 + |bound|)`` anywhere at `instance`.
    - `restart_ratios`: ``(restarts,)`` best ratio of each restart (the spread of the search).
    - `restart_violated`: ``(restarts,)`` whether each restart's best instance violates.
    - `restart_instances`: each restart's best instance (leaves with a leading restart axis).
    - `restart_actual`, `restart_bound`: ``actual`` and ``bound`` at each restart's best.
    """

    ratio: jax.Array
    instance: Any
    actual: jax.Array
    bound: jax.Array
    violated: jax.Array
    restart_ratios: jax.Array
    restart_violated: jax.Array
    restart_instances: Any
    restart_actual: jax.Array
    restart_bound: jax.Array


def ratio(actual, bound, rtol: float = 0.0):
    r"""Elementwise tightness ``actual / (bound + rtol·(1 + |bound|))`` of ``actual ≤ bound``.

    With ``rtol > 0`` the ratio exceeds 1 exactly where ``actual`` exceeds the bound by more
    than the tolerance (the violation test of :func:`adversarial_search`), and instances
    that play on rounding (e.g. an atom of mass 1e-31 against a bound that rounds to 0)
    get a ratio near 0, not ``+inf``.

    Conventions (no NaN): ``0/0 = 0``; ``a/0 = +inf`` for ``a > 0`` (``rtol = 0``); a finite
    ``actual`` over an infinite bound gives 0; ``∞/∞`` (e.g. KL = ∞ against a bound = ∞:
    true but uninformative) and NaN inputs give ``-inf``, never selected as the worst case.
    For a *lower* bound ``L ≤ X`` pass ``(L, X)``: the ratio is ``L / X``.
    """
    a, b = jnp.broadcast_arrays(jnp.asarray(actual), jnp.asarray(bound))
    dtype = jnp.result_type(a.dtype, b.dtype, float)
    a, b = a.astype(dtype), b.astype(dtype)
    b_eff = jnp.where(jnp.isfinite(b), b + rtol * (1.0 + jnp.abs(jnp.where(jnp.isfinite(b), b, 0.0))), b)
    safe = jnp.where((b_eff > 0) & jnp.isfinite(b_eff), b_eff, 1.0)
    r = jnp.where(b_eff > 0, a / safe, jnp.where(a > 0, jnp.inf, 0.0))
    r = jnp.where(jnp.isposinf(b), 0.0, r)
    return jnp.where(jnp.isnan(a) | jnp.isnan(b) | (jnp.isposinf(a) & jnp.isposinf(b)), -jnp.inf, r)


def _violated(actual, bound, rtol):
    a, b = jnp.broadcast_arrays(jnp.asarray(actual), jnp.asarray(bound))
    scale = 1.0 + jnp.abs(jnp.where(jnp.isfinite(b), b, 0.0))
    return jnp.any(a > b + rtol * scale)


def _float_leaf(x) -> bool:
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)


def adversarial_search(actual_fn: Callable, bound_fn: Callable | None, init: Callable, *, key,
                       steps: int = 200, restarts: int = 32, step_size: float = 1.0,
                       final_step_size: float = 0.01, use_grad: bool = True,
                       rtol: float = 1e-9) -> SearchResult:
    r"""Search for the instance that makes a claimed inequality ``actual ≤ bound`` tightest.

    Maximizes

    .. math:: R(z) = \max_i \frac{\text{actual\_fn}(z)_i}{\text{bound\_fn}(z)_i}

    over instances ``z`` (a pytree of float arrays, e.g. logit tables; ``-inf`` entries
    stay ``-inf``, so zero-probability patterns drawn by `init` are kept), from `restarts`
    independent starts ``z₀ = init(key_r)``. Each of the `steps` iterations evaluates two
    proposals,

    - a normalized gradient step ``z + s_t ∇ log R(z)/‖∇ log R(z)‖`` (with `use_grad`;
      NaN gradients are set to 0; without it, a second random step: a pure hill climb,
      which needs no backward pass and compiles several times faster), and
    - a random step ``z + s_t ξ``, ``ξ`` standard normal on a random half of the entries,

    and moves to the better one if it is at least as good as ``z`` (equal values move, so
    plateaus of piecewise-constant metrics such as Cov_N are crossed by a random walk).
    The step size decays geometrically from `step_size` to `final_step_size`. The gradient
    drives the smooth side (e.g. it lowers a KL while Cov_N stays put, which is how the
    tight pair Ber(p) ‖ Ber(p/N) of Prop. D.2 is approached); the random steps move Cov_N
    across its thresholds. Both proposals go through one vmapped ``value_and_grad`` call,
    so the objective is traced (and compiled) once.

    The search is plain JAX (``lax.scan`` inside ``vmap``): it can run inside ``jit`` and
    under ``vmap`` (e.g. over seeds); `actual_fn` and `bound_fn` must be traceable.

    **Arguments:**

    - `actual_fn(z)`, `bound_fn(z)`: arrays of broadcastable shapes (e.g. one entry per N of
      a grid); ``R`` is the largest elementwise :func:`ratio`. For a lower bound
      ``L(z) ≤ X(z)`` pass ``actual_fn=L`` and ``bound_fn=X``. With ``bound_fn=None``,
      `actual_fn` returns the pair ``(actual, bound)`` (one evaluation for both).
    - `init(key)`: a random instance (the search's sampler).
    - `key`: PRNG key (required); `steps`, `restarts`: search effort.
    - `rtol`: relative tolerance: the objective is :func:`ratio` with this `rtol`, so
      ``ratio > 1`` exactly when ``violated`` (rounding-level instances are not rewarded).

    **Returns:** a :class:`SearchResult`; ``ratio > 1`` (with ``violated``) is a
    counterexample to the inequality.

    Reference: the inequalities of arXiv 2510.15020 v2, App. D (THEORY.md §2–§4) are
    searched this way by ``covsim check inequalities``.
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"adversarial_search: steps and restarts must be >= 1, got {steps}, {restarts}")
    if bound_fn is None:
        pair_fn = actual_fn
    else:
        def pair_fn(z):
            return actual_fn(z), bound_fn(z)

    def log_objective(z):
        a, b = pair_fn(z)
        a, b = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(b))
        r = jnp.max(ratio(a, b, rtol))
        ok = (r > 0) & jnp.isfinite(r)
        return jnp.where(ok, jnp.log(jnp.where(ok, r, 1.0)), 0.0), (r, a, b)

    value_grad = jax.vmap(jax.value_and_grad(log_objective, has_aux=True))
    forward = jax.vmap(log_objective)
    decay = (final_step_size / step_size) ** (1.0 / max(steps - 1, 1))

    def perturb(z, xi, s):
        # xi: (2, n) normal draws; a random half of the float entries move by s·xi[0]
        flat, unravel = ravel_pytree(z)
        return unravel(flat + s * jnp.where(xi[1] > 0, xi[0], 0.0))

    def gradient_step(z, g, s):
        leaves, tree = jax.tree_util.tree_flatten(z)
        gl = [jnp.where(jnp.isfinite(gi) & jnp.isfinite(x), gi, 0.0) if _float_leaf(x) else None
              for gi, x in zip(jax.tree_util.tree_leaves(g), leaves)]
        norm = jnp.sqrt(sum(jnp.sum(gi ** 2) for gi in gl if gi is not None))
        scale = jnp.where(norm > 0, s / jnp.where(norm > 0, norm, 1.0), 0.0)
        return jax.tree_util.tree_unflatten(
            tree, [x + scale * gi if gi is not None else x for x, gi in zip(leaves, gl)])

    def one_restart(k):
        k0, kl = jax.random.split(k)
        z0 = init(k0)
        shapes = jax.eval_shape(lambda z: log_objective(z)[1], z0)
        r0 = jnp.full((), -jnp.inf, shapes[0].dtype)
        a0, b0 = (jnp.zeros(x.shape, x.dtype) for x in shapes[1:])
        g0 = jax.tree_util.tree_map(jnp.zeros_like, z0)

        def body(carry, t):
            z, r, a, b, g = carry
            s = step_size * decay ** t
            flat = ravel_pytree(z)[0]
            # one PRNG call per step (PRNG calls dominate the compile time on CPU)
            xi = jax.random.normal(jax.random.fold_in(kl, t), (4,) + flat.shape, flat.dtype)
            # step 0: the gradient proposal is z0 itself (g = 0), so z0 is evaluated
            first = gradient_step(z, g, s) if use_grad else perturb(z, xi[2:], s)
            first = jax.tree_util.tree_map(lambda x0, x1: jnp.where(t == 0, x0, x1), z, first)
            cands = jax.tree_util.tree_map(lambda u, v: jnp.stack([u, v]), first, perturb(z, xi[:2], s))
            if use_grad:
                (_, (rc, ac, bc)), gc = value_grad(cands)
            else:  # forward only: no backward pass to trace or compile
                _, (rc, ac, bc) = forward(cands)
                gc = jax.tree_util.tree_map(jnp.zeros_like, cands)
            rc = jnp.where(jnp.isnan(rc), -jnp.inf, rc)
            i = jnp.argmax(rc)
            take = rc[i] >= r
            pick = lambda new, old: jnp.where(take, new[i], old)  # noqa: E731
            return (jax.tree_util.tree_map(pick, cands, z), pick(rc, r), pick(ac, a), pick(bc, b),
                    jax.tree_util.tree_map(pick, gc, g)), None

        (z, r, a, b, _), _ = jax.lax.scan(body, (z0, r0, a0, b0, g0), jnp.arange(steps))
        return z, r, a, b, _violated(a, b, rtol)

    zs, rs, acts, bnds, viol = jax.vmap(one_restart)(jax.random.split(key, restarts))
    best = jnp.argmax(rs)
    return SearchResult(
        ratio=rs[best], instance=jax.tree_util.tree_map(lambda x: x[best], zs), actual=acts[best],
        bound=bnds[best], violated=viol[best], restart_ratios=rs, restart_violated=viol,
        restart_instances=zs, restart_actual=acts, restart_bound=bnds)


# ---------------------------------------------------------------------------------------
# hypothesis strategies (hypothesis is imported lazily)


def _hyp():
    try:
        import hypothesis.extra.numpy as hnp
        from hypothesis import strategies as st
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("covsim.testing strategies need hypothesis: "
                          'pip install "covsim[testing]"') from e
    return st, hnp


def _sizes(st, lo, hi, name):
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise ValueError(f"covsim.testing: need 1 <= min_{name} <= max_{name}, got {lo}, {hi}")
    return st.integers(lo, hi)


def prompt_distributions(num_prompts: int, *, allow_zero: bool = True):
    r"""Strategy for a prompt law μ: a float64 probability vector of shape ``(P,)``.

    Draws uniform laws, point masses (with `allow_zero`, prompts of probability exactly 0),
    laws with one tiny weight (≈ 1e-12) and generic ones from positive weights
    normalized to sum 1 (the sum is 1 up to rounding, as covsim's validation requires).
    """
    st, hnp = _hyp()
    P = int(num_prompts)
    if P < 1:
        raise ValueError(f"prompt_distributions: num_prompts must be >= 1, got {num_prompts}")

    def normalize(w):
        w = np.asarray(w, dtype=np.float64)
        return jnp.asarray(w / w.sum())

    generic = hnp.arrays(np.float64, (P,), elements=st.floats(1e-3, 1.0)).map(normalize)
    options = [st.just(jnp.full((P,), 1.0 / P)), generic]
    if P > 1:
        tiny = st.integers(0, P - 1).map(lambda i: normalize(np.where(np.arange(P) == i, 1e-12, 1.0)))
        options.append(tiny)
        if allow_zero:
            options.append(st.integers(0, P - 1).map(lambda i: jnp.asarray(np.eye(P)[i])))
    return st.one_of(*options)


def logit_tables(num_prompts: int, horizon: int, vocab: int, *, allow_neginf: bool = True,
                 extreme: bool = True, max_abs: float = 8.0):
    r"""Strategy for a tabular logit array of shape ``(P, H, V+1, V)`` (float64).

    Entries are finite floats in ``[-max_abs, max_abs]``, then, by drawn choices:

    - **sharpened** by a factor in {1, 10, 100} (with `extreme`): rows become
      near-deterministic, log-probabilities reach −800 and single-step log-ratios hundreds
      of nats (where ``exp`` underflows and naive code returns NaN);
    - **masked** (with `allow_neginf`): some entries set to ``-inf`` (probability exactly 0),
      never a whole row — the largest entry of each row stays finite.
    """
    st, hnp = _hyp()
    shape = (int(num_prompts), int(horizon), int(vocab) + 1, int(vocab))
    base = hnp.arrays(np.float64, shape, elements=st.floats(-max_abs, max_abs))
    sharp = st.sampled_from([1.0, 10.0, 100.0]) if extreme else st.just(1.0)
    mask = (hnp.arrays(np.bool_, shape, elements=st.booleans()) if allow_neginf
            else st.just(np.zeros(shape, dtype=bool)))

    @st.composite
    def draw(d):
        x = d(base) * d(sharp)
        m = d(mask) & d(st.booleans() if allow_neginf else st.just(False))
        keep = x == x.max(axis=-1, keepdims=True)
        keep &= np.cumsum(keep, axis=-1) == 1  # one finite entry per row, never a whole row masked
        return jnp.asarray(np.where(m & ~keep, -np.inf, x))

    return draw()


def _shape_strategy(st, max_prompts, max_horizon, max_vocab, min_horizon, max_sequences):
    @st.composite
    def draw(d):
        P = d(_sizes(st, 1, max_prompts, "prompts"))
        V = d(_sizes(st, 2 if max_vocab >= 2 else 1, max_vocab, "vocab"))
        H = d(_sizes(st, min_horizon, max_horizon, "horizon"))
        if max_sequences is not None:
            while H > min_horizon and P * V ** H > max_sequences:
                H -= 1
        return P, H, V

    return draw()


def tabular_pairs(*, max_prompts: int = 3, max_horizon: int = 6, max_vocab: int = 3,
                  min_horizon: int = 1, max_sequences: int | None = 4096,
                  allow_neginf: bool = True, extreme: bool = True, related: bool = True):
    r"""Strategy for ``(π_D, π̂, μ)``: two :class:`~covsim.TabularModel` s and a prompt law.

    Shapes: P ∈ [1, max_prompts], V ∈ [2, max_vocab], H ∈ [min_horizon, max_horizon], H
    reduced until P·V^H ≤ `max_sequences` (so exact enumeration stays cheap; pass ``None``
    for long horizons meant for ``method="bracket"``). Logits from :func:`logit_tables`
    (``-inf`` entries never a whole row, extreme logits, near-deterministic rows), μ from
    :func:`prompt_distributions`. With `related`, half of the draws make π̂ a perturbation
    of π_D (the regime of learned models, where bounds are nearly tight) and some draws
    make π̂ = π_D exactly (every divergence 0, Cov_N = 0 for N > 1); otherwise the two
    laws are independent. π̂ may put probability 0 where π_D does not (ratio +∞, counted
    by Cov_N, KL = +∞).
    """
    st, hnp = _hyp()
    shapes = _shape_strategy(st, max_prompts, max_horizon, max_vocab, min_horizon, max_sequences)

    @st.composite
    def draw(d):
        P, H, V = d(shapes)
        lp = d(logit_tables(P, H, V, allow_neginf=allow_neginf, extreme=extreme))
        mode = d(st.sampled_from(["independent", "perturbed", "equal"] if related else ["independent"]))
        if mode == "equal":
            lq = lp
        elif mode == "perturbed":
            noise = d(hnp.arrays(np.float64, lp.shape, elements=st.floats(-1.0, 1.0)))
            scale = d(st.sampled_from([1e-3, 0.1, 1.0]))
            lq = jnp.asarray(lp) + scale * noise
        else:
            lq = d(logit_tables(P, H, V, allow_neginf=allow_neginf, extreme=extreme))
        mu = d(prompt_distributions(P))
        return TabularModel(lp, H), TabularModel(lq, H), mu

    return draw()


def linear_pairs(*, max_prompts: int = 3, max_horizon: int = 6, max_vocab: int = 3,
                 max_dim: int = 3, min_horizon: int = 1, max_sequences: int | None = 4096,
                 extreme: bool = True):
    r"""Strategy for ``(π_θ⋆, π_θ̂, μ)``: two AR-linear models (arXiv 2510.15020 v2, Eq. 3).

    π_θ(v | x, h, u) ∝ exp⟨θ, φ(x, h, u, v)⟩ with shared features φ of shape
    ``(P, H, V+1, V, d)``, entries in [−1, 1] times a scale B ∈ {1, 10, 100} (with
    `extreme`; B = 100 gives near-deterministic steps and log W_max ≈ 2BH), and θ⋆, θ̂ drawn
    in the unit ball ‖θ‖₂ ≤ 1 (Assumption 2.2), θ̂ sometimes equal to θ⋆ or a tiny
    perturbation of it. Shapes as in :func:`tabular_pairs`, with d ∈ [1, max_dim].
    """
    st, hnp = _hyp()
    shapes = _shape_strategy(st, max_prompts, max_horizon, max_vocab, min_horizon, max_sequences)

    def unit_ball(v):
        v = np.asarray(v, dtype=np.float64)
        n = float(np.linalg.norm(v))
        return v / n if n > 1 else v

    @st.composite
    def draw(d):
        P, H, V = d(shapes)
        dim = d(_sizes(st, 1, max_dim, "dim"))
        phi = d(hnp.arrays(np.float64, (P, H, V + 1, V, dim), elements=st.floats(-1.0, 1.0)))
        B = d(st.sampled_from([1.0, 10.0, 100.0]) if extreme else st.just(1.0))
        theta = unit_ball(d(hnp.arrays(np.float64, (dim,), elements=st.floats(-1.0, 1.0))))
        mode = d(st.sampled_from(["independent", "perturbed", "equal"]))
        if mode == "equal":
            theta_hat = theta
        elif mode == "perturbed":
            eps = d(hnp.arrays(np.float64, (dim,), elements=st.floats(-1e-3, 1e-3)))
            theta_hat = unit_ball(theta + eps)
        else:
            theta_hat = unit_ball(d(hnp.arrays(np.float64, (dim,), elements=st.floats(-1.0, 1.0))))
        mu = d(prompt_distributions(P))
        feats = jnp.asarray(B * phi)
        return (LinearModel(feats, jnp.asarray(theta), H), LinearModel(feats, jnp.asarray(theta_hat), H), mu)

    return draw()

