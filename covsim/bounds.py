r"""Closed-form bounds of THEORY.md, one pure function per result.

Every function takes floats or arrays (broadcasting allowed), computes with ``jax.numpy``
(so it is ``jit``/``vmap``-compatible and keeps the floating dtype it is given) and
validates its arguments when they are concrete Python/NumPy/JAX values: a bad value raises
``ValueError`` naming the function, the argument, the value received and what is allowed
(``"kl_to_coverage: N must be > 1, got 1.0"``, the format of :mod:`covsim._validate`, which
does the checking). Traced values are trusted (no validation inside ``jit``).

``+inf`` is a legitimate output (e.g. a KL bound when KL = inf); NaN never is: the
``0·inf`` and ``inf/inf`` cases are resolved explicitly (``0·inf = 0``; an upper bound of
the form ``inf/inf`` is ``+inf``, the conservative value).

Functions marked **EXACT** return the value of an exact inequality (the name says which
side it bounds). Functions marked **rate** implement a "≲" statement whose absolute
constant the paper never gives; it is the keyword argument ``c=1.0`` (or ``C``) that
multiplies the expression. Use rates for slopes and orderings, never for constants.
``log`` is natural throughout.

References read ``arXiv 2510.15020 v2, <v2 number> (ICLR: <camera-ready number>)``.

================================  ===============  =========================================
function                          THEORY.md        paper reference (v2 / ICLR)
================================  ===============  =========================================
markov_coverage                   §2               v2 App. A remark / ICLR App. B
chi2_coverage                     §2               v2 App. A remark / ICLR App. B
reverse_ratio_tail                §2               [project]
coverage_wmax_bound               §2               [project]
triangle_rule                     §2               v2 Eq. 95
coverage_from_hockey_stick        §2               [project]
kl_to_coverage                    §3.1             Prop. 3.1, D.1 / Prop. 3.1, F.1
kl_to_coverage_simplified         §3.1             Prop. 3.1, D.1 / Prop. 3.1, F.1
kl_tightness_lower                §3.2             Prop. D.2 / Prop. F.2
weak_converse_kl                  §3.3             Prop. D.3 / Prop. F.3
hellinger_to_coverage             §3.4             Prop. D.4 / Prop. F.4
chain_rule                        §3.5             Prop. D.5 / Prop. F.5
stopped_kl_to_coverage            §3.6             Prop. D.10 / Prop. F.10
partial_converse(_threshold)      §3.7             Prop. D.11 / Prop. F.11
classical_hellinger_rate          §3.8             Prop. D.8 / Prop. F.8
classical_kl_rate                 §3.8             Prop. D.9 / Prop. F.9
classical_kl_coverage_rate        §3.8             Prop. D.9 / Prop. F.9
bon_sufficiency                   §4.1             Prop. D.6 / Prop. F.6 ([project] binary)
bon_sufficiency_general(_applies) §4.1             Prop. D.6 / Prop. F.6
bon_necessity                     §4.2             Prop. D.7 / Prop. F.7
kl_scaling_law_n                  §4.4             Eq. 5 / Eq. 4
bernoulli_missing_mass_quantile   §5.1             §3 case study ([project] constant)
kappa, kl_horizon_lower_bound     §5.2             Prop. 3.2, App. G / Prop. 3.2, App. I
kl_horizon_coverage_upper         §5.2             Prop. 3.2, App. G / Prop. 3.2, App. I
c_fine, c_coarse, mle_general_rate §5.3            Eq. 7, Thm 4.1(′) / Eq. 5, Thm 4.1(′)
mle_parametric_rate               §5.4             Cor. 4.1(i)
mle_nonparametric_rate(_min_n)    §5.4             Cor. 4.1(ii)
mle_linear_low_dim_rate           §5.4             Cor. 4.2 (ICLR: inline)
coarse_tightness_lower            §5.5(a)          Prop. 4.1(a) / Prop. G.1(a)
fine_tightness_rate               §5.5(b)          Prop. 4.1(b) / Prop. G.1(b)
mle_linear_rate                   §5.6             Thm 4.2, Eq. 9 / Thm 4.2, Eq. 7
mle_linear_stopped_kl_rate        §5.6             Thm I.1 / Thm K.1
mle_insample_kl                   §5.6             Lemma I.1 / Lemma K.1
mle_linear_crossover_n            §5.6             [project]
variance_lower_bound_rate         §5.7             Prop. I.1 / Prop. K.1
convex_class_bound                §5.8             Thm E.1 / Thm G.1
convex_class_wellspecified_rate   §5.8             Thm E.1 / Thm G.1
misspecification_p / _coverage    §5.9             Prop. E.1 / Prop. G.2 ([correction])
vanilla_sgd_kl, _step_size        §6.2             Prop. 5.1, Eq. 14 / Prop. 5.1, Eq. 8
vanilla_sgd_kl_at_default_step    §6.2             Prop. 5.1 ([project] minimizer)
vanilla_sgd_coverage_exact        §6.2             Prop. 5.1 + Prop. D.1
vanilla_sgd_rate                  §6.2             Prop. 5.1
sgd_lower_bound_rate              §6.2             Prop. 5.1 lower bound, App. I.4 / K.4
normalized_sgd_step_size          §6.3             Thm 5.1, App. I.5 / Thm 5.1, App. K.5
normalized_sgd_rate, _budget      §6.3             Thm 5.1
ttt_kl, ttt_step_size             §6.4             Thm 6.1, App. I.6 / Thm 6.1, App. K.6
ttt_kl_at_default_step            §6.4             Thm 6.1
ttt_coverage_exact                §6.4             Thm 6.1 + Prop. D.1
ttt_kl_rate, ttt_rate             §6.4             Thm 6.1
distillation_step_size(_paper)    §6.5             Thm 6.2 / Thm G.2 ([correction])
distillation_rate                 §6.5             Thm 6.2 / Thm G.2
simple_tournament_explicit        §7.1             Thm 6.3, App. J.1 ([project] explicit)
simple_tournament_rate            §7.1             Thm 6.3, Eq. 29 / Thm 6.2, Eq. 14
simple_tournament_cover_rate      §7.1             Eq. 31 / Thm 6.2′
offset_tournament_condition       §7.2             Thm 6.4 / Thm G.3 (8, not ICLR's 4)
offset_tournament_rate            §7.2             Thm 6.4 / Thm G.3
offset_tournament_cover_rate      §7.2             Thm 6.4 / Thm G.3
offset_tournament_general_*       §7.2             Thm 6.4′ / Thm G.3′
================================  ===============  =========================================
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from covsim._validate import check_values, concrete_values

__all__ = [
    # §2 elementary facts
    "markov_coverage",
    "chi2_coverage",
    "reverse_ratio_tail",
    "coverage_wmax_bound",
    "triangle_rule",
    "coverage_from_hockey_stick",
    # §3 coverage vs divergences
    "kl_to_coverage",
    "kl_to_coverage_simplified",
    "kl_tightness_lower",
    "weak_converse_kl",
    "hellinger_to_coverage",
    "chain_rule",
    "stopped_kl_to_coverage",
    "partial_converse",
    "partial_converse_threshold",
    "classical_hellinger_rate",
    "classical_kl_rate",
    "classical_kl_coverage_rate",
    # §4 Best-of-N
    "bon_sufficiency",
    "bon_sufficiency_general",
    "bon_sufficiency_general_applies",
    "bon_necessity",
    "kl_scaling_law_n",
    # §5 MLE
    "bernoulli_missing_mass_quantile",
    "kappa",
    "kl_horizon_lower_bound",
    "kl_horizon_coverage_upper",
    "c_fine",
    "c_coarse",
    "mle_general_rate",
    "mle_parametric_rate",
    "mle_nonparametric_rate",
    "mle_nonparametric_min_n",
    "mle_linear_low_dim_rate",
    "coarse_tightness_lower",
    "fine_tightness_rate",
    "mle_linear_rate",
    "mle_linear_stopped_kl_rate",
    "mle_insample_kl",
    "mle_linear_crossover_n",
    "variance_lower_bound_rate",
    "convex_class_bound",
    "convex_class_wellspecified_rate",
    "misspecification_p",
    "misspecification_coverage",
    # §6 algorithms
    "vanilla_sgd_kl",
    "vanilla_sgd_step_size",
    "vanilla_sgd_kl_at_default_step",
    "vanilla_sgd_coverage_exact",
    "vanilla_sgd_rate",
    "sgd_lower_bound_rate",
    "normalized_sgd_step_size",
    "normalized_sgd_rate",
    "normalized_sgd_budget",
    "ttt_kl",
    "ttt_step_size",
    "ttt_kl_at_default_step",
    "ttt_coverage_exact",
    "ttt_kl_rate",
    "ttt_rate",
    "distillation_step_size",
    "distillation_step_size_paper",
    "distillation_rate",
    # §7 tournaments
    "simple_tournament_explicit",
    "simple_tournament_rate",
    "simple_tournament_cover_rate",
    "offset_tournament_condition",
    "offset_tournament_rate",
    "offset_tournament_cover_rate",
    "offset_tournament_general_condition",
    "offset_tournament_general_rate",
]

_E = math.e

# --------------------------------------------------------------------------------------
# private helpers
# --------------------------------------------------------------------------------------


_concrete = concrete_values  # ``x`` as a float NumPy array, or None when traced


def _check(fname: str, name: str, x, ok: Callable, allowed: str) -> None:
    """``ValueError("fname: name must be allowed, got v")`` if a concrete entry of ``x`` is NaN
    or fails ``ok`` (see :func:`covsim._validate.check_values`); traced values are trusted."""
    check_values(x, ok, allowed, fname, name)


def _gt1(f, name, x):
    _check(f, name, x, lambda v: v > 1, "> 1")


def _ge1(f, name, x):
    _check(f, name, x, lambda v: v >= 1, ">= 1")


def _pos(f, name, x):
    _check(f, name, x, lambda v: v > 0, "> 0")


def _nonneg(f, name, x):
    _check(f, name, x, lambda v: v >= 0, ">= 0 (+inf allowed)")


_PROB_SLACK = 1e-9  # sums of probabilities may exceed 1 by roundoff


def _unit(f, name, x):
    _check(f, name, x, lambda v: (v >= 0) & (v <= 1 + _PROB_SLACK), "in [0, 1]")


def _open_unit(f, name, x):
    _check(f, name, x, lambda v: (v > 0) & (v < 1), "in (0, 1)")


def _f(x):
    """``x`` as a JAX array with a floating dtype (integers are promoted; Python ints go
    through float, so large counts such as T = 10**12 never overflow int32)."""
    if isinstance(x, int) and not isinstance(x, bool):
        x = float(x)
    a = jnp.asarray(x)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    return a


def _div(num, den):
    """``num / den`` for ``num, den >= 0`` without NaN.

    ``0 / anything = 0``; ``x / 0 = +inf`` for ``x > 0``; ``inf / inf = +inf`` (the
    conservative value of an upper bound); a non-positive denominator (roundoff near a
    singular point) gives ``+inf``.
    """
    num, den = _f(num), _f(den)
    safe = jnp.where(den > 0, den, 1)
    q = jnp.where(den > 0, num / safe, jnp.inf)
    q = jnp.where(jnp.isinf(num) & jnp.isinf(den), jnp.inf, q)
    return jnp.where(num == 0, jnp.zeros_like(q), q)


def _mul(a, b):
    """``a * b`` for non-negative factors with ``0 * inf = 0``."""
    a, b = _f(a), _f(b)
    prod = a * b
    return jnp.where((a == 0) | (b == 0), jnp.zeros_like(prod), prod)


def _kl_denominator(N):
    r"""``log N - 1 + 1/N`` (> 0 for N > 1; equals 1 - ... limit handled by ``_div``)."""
    N = _f(N)
    return jnp.log(N) - 1 + 1 / N


def _log_inv(delta):
    return -jnp.log(_f(delta))


# --------------------------------------------------------------------------------------
# §2 elementary facts
# --------------------------------------------------------------------------------------


def markov_coverage(moment, N, p):
    r"""Markov / L_p coverage bound (EXACT, upper bound on Cov_N).

    .. math:: \mathrm{Cov}_N(\pi\|\hat\pi) \le \frac{E_\pi[(\pi/\hat\pi)^p]}{N^p}, \quad p>0.

    Reference: arXiv 2510.15020 v2, App. A "L_p coverage" remark (ICLR: App. B).

    Arguments:
        moment: E_π[(π/π̂)^p] ≥ 0 (+inf allowed).
        N: threshold, N ≥ 1.
        p: exponent, p > 0.

    Returns:
        The upper bound ``moment / N**p``.
    """
    f = "markov_coverage"
    _nonneg(f, "moment", moment)
    _ge1(f, "N", N)
    _pos(f, "p", p)
    return _div(moment, _f(N) ** _f(p))


def chi2_coverage(chi2, N):
    r"""χ² coverage bound, the p = 1 case of :func:`markov_coverage` (EXACT, upper).

    .. math:: \mathrm{Cov}_N(\pi\|\hat\pi) \le \frac{1 + \chi^2(\pi\|\hat\pi)}{N},
       \quad \chi^2(\pi\|\hat\pi) = \sum \pi^2/\hat\pi - 1.

    Reference: arXiv 2510.15020 v2, App. A remark (ICLR: App. B).

    Arguments:
        chi2: χ²(π‖π̂) ≥ 0 (+inf allowed).
        N: threshold, N ≥ 1.

    Returns:
        ``(1 + chi2) / N``.
    """
    f = "chi2_coverage"
    _nonneg(f, "chi2", chi2)
    _ge1(f, "N", N)
    return _div(1 + _f(chi2), N)


def reverse_ratio_tail(A):
    r"""Reverse-direction tail (EXACT): P_{π_D}[π(y|x)/π_D(y|x) ≥ A] ≤ 1/A for any π.

    Reference: THEORY.md §2 ([project]; used in arXiv 2510.15020 v2, App. J.1).

    Arguments:
        A: level, A > 0.

    Returns:
        ``1 / A``.
    """
    _pos("reverse_ratio_tail", "A", A)
    return _div(1.0, A)


def coverage_wmax_bound(N, log_w_max):
    r"""Trivial coverage bound (EXACT): Cov_N ≤ 1, and Cov_N = 0 for N > W_max.

    Reference: THEORY.md §2 ([project]); W_max as in arXiv 2510.15020 v2, §2.

    Arguments:
        N: threshold, N ≥ 1.
        log_w_max: log W_max ≥ 0 (+inf allowed).

    Returns:
        ``0`` where ``log N > log W_max``, else ``1``.
    """
    f = "coverage_wmax_bound"
    _ge1(f, "N", N)
    _nonneg(f, "log_w_max", log_w_max)
    logN = jnp.log(_f(N))
    lw = _f(log_w_max)
    return jnp.where(logN > lw, jnp.zeros_like(logN + lw), jnp.ones_like(logN + lw))


def triangle_rule(cov_a, cov_b):
    r"""Triangle rule for coverage (EXACT, upper bound).

    .. math:: \mathrm{Cov}^\rho_{N_1N_2}(\pi'\|\pi) \le \mathrm{Cov}^\rho_{N_1}(\pi'\|\pi'')
       + \mathrm{Cov}^\rho_{N_2}(\pi''\|\pi)

    for any reference ρ (Cov^ρ_N(a‖b) := P_ρ[a/b ≥ N]).

    Reference: arXiv 2510.15020 v2, Eq. 95.

    Arguments:
        cov_a: Cov^ρ_{N₁}(π′‖π″) ∈ [0, 1].
        cov_b: Cov^ρ_{N₂}(π″‖π) ∈ [0, 1].

    Returns:
        ``cov_a + cov_b``.
    """
    f = "triangle_rule"
    _unit(f, "cov_a", cov_a)
    _unit(f, "cov_b", cov_b)
    return _f(cov_a) + _f(cov_b)


def coverage_from_hockey_stick(e_n):
    r"""Hockey-stick sandwich, upper half (EXACT): Cov_{2N} ≤ 2·E_N.

    With E_N(π‖π̂) := E_x Σ_y (π(y|x) − N π̂(y|x))_+ the sandwich reads
    E_N ≤ Cov_N and Cov_{2N} ≤ 2 E_N. The lower half needs no function: E_N itself is a
    lower bound on Cov_N.

    Reference: THEORY.md §2 ([project]); cf. E_γ in arXiv 2510.15020 v2, Thm 6.4′
    (ICLR: Thm G.3′).

    Arguments:
        e_n: hockey-stick divergence E_N ∈ [0, 1].

    Returns:
        ``2 * e_n``, an upper bound on Cov_{2N}.
    """
    _unit("coverage_from_hockey_stick", "e_n", e_n)
    return 2 * _f(e_n)


# --------------------------------------------------------------------------------------
# §3 coverage and divergences
# --------------------------------------------------------------------------------------


def kl_to_coverage(kl, N):
    r"""KL → coverage (EXACT, upper bound on Cov_N), full form.

    .. math:: \mathrm{Cov}_N(\pi_D\|\pi) \le \frac{D_{KL}(\pi_D\|\pi)}{\log N - 1 + 1/N},
       \quad N > 1.

    A Markov bound with f(x) = x log x − x + 1.

    Reference: arXiv 2510.15020 v2, Prop. D.1 (ICLR: Prop. F.1); Prop. 3.1 in both.

    Arguments:
        kl: sequence KL D_KL(π_D‖π) ≥ 0 (+inf allowed, giving +inf).
        N: threshold, N > 1 (+inf allowed).

    Returns:
        ``kl / (log N - 1 + 1/N)``.
    """
    f = "kl_to_coverage"
    _nonneg(f, "kl", kl)
    _gt1(f, "N", N)
    return _div(kl, _kl_denominator(N))


def kl_to_coverage_simplified(kl, N):
    r"""KL → coverage (EXACT, upper bound on Cov_N), simplified form.

    .. math:: \mathrm{Cov}_N(\pi_D\|\pi) \le \frac{D_{KL}(\pi_D\|\pi)}{\log(N/e)},
       \quad N \ge e.

    At N = e the bound is vacuous: it returns +inf (0 when kl = 0). Weaker than
    :func:`kl_to_coverage` since log N − 1 + 1/N > log N − 1.

    Reference: arXiv 2510.15020 v2, Prop. D.1 (ICLR: Prop. F.1); Prop. 3.1 in both.

    Arguments:
        kl: D_KL(π_D‖π) ≥ 0 (+inf allowed).
        N: threshold, N ≥ e.

    Returns:
        ``kl / (log N - 1)``.
    """
    f = "kl_to_coverage_simplified"
    _nonneg(f, "kl", kl)
    _check(f, "N", N, lambda v: v >= _E * (1 - 1e-15), ">= e = 2.718281828...")
    return _div(kl, jnp.log(_f(N)) - 1)


def kl_tightness_lower(kl, N):
    r"""Tightness of KL → coverage (EXACT, lower bound on Cov_N for the Bernoulli pair).

    For π_D = Ber(p), π = Ber(p/N) with p ≤ ½ and N ≥ 2 (Cov_N = p exactly):

    .. math:: \mathrm{Cov}_N \ge \frac{D_{KL}(\pi_D\|\pi)}{\log N - \tfrac12 + \tfrac1{2N}}.

    So :func:`kl_to_coverage` is tight up to the additive constant in the denominator.
    The formula is defined (positive denominator) for every N > 1, which is what is
    validated; the proposition is stated for N ≥ 2.

    Reference: arXiv 2510.15020 v2, Prop. D.2 (ICLR: Prop. F.2).

    Arguments:
        kl: KL(Ber(p)‖Ber(p/N)) ≥ 0.
        N: threshold, N > 1.

    Returns:
        ``kl / (log N - 1/2 + 1/(2N))``.
    """
    f = "kl_tightness_lower"
    _nonneg(f, "kl", kl)
    _gt1(f, "N", N)
    N = _f(N)
    return _div(kl, jnp.log(N) - 0.5 + 0.5 / N)


def weak_converse_kl(sup_cov_log_n, log_w_max):
    r"""Weak converse: coverage profile → KL (EXACT, upper bound on D_KL).

    With C := sup_{N≥1} Cov_N(π_D‖π)·log N (≤ log W_max):

    .. math:: D_{KL}(\pi_D\|\pi) \le C\,(1 + \log(\log W_{\max} / C)), \quad C > 0.

    C = 0 means π ≥ π_D everywhere, i.e. π = π_D, so the function returns 0 there
    (the limit C log(1/C) → 0).

    Reference: arXiv 2510.15020 v2, Prop. D.3 (ICLR: Prop. F.3).

    Arguments:
        sup_cov_log_n: C ≥ 0.
        log_w_max: log W_max ≥ C (+inf allowed, giving +inf unless C = 0).

    Returns:
        ``C * (1 + log(log_w_max / C))``.
    """
    f = "weak_converse_kl"
    _nonneg(f, "sup_cov_log_n", sup_cov_log_n)
    _nonneg(f, "log_w_max", log_w_max)
    C, lw = _concrete(sup_cov_log_n), _concrete(log_w_max)
    if C is not None and lw is not None and np.any(np.asarray(C > lw * (1 + 1e-12))):
        raise ValueError(
            "weak_converse_kl: sup_cov_log_n must be <= log_w_max "
            f"(C = sup_N Cov_N log N <= log W_max), got {float(np.max(C))!r} > "
            f"{float(np.min(lw))!r}"
        )
    C, lw = _f(sup_cov_log_n), _f(log_w_max)
    safe_C = jnp.where(C > 0, C, 1)
    ratio = jnp.maximum(lw / safe_C, 1.0)  # C <= log W_max; guard roundoff
    out = C * (1 + jnp.log(ratio))
    out = jnp.where(jnp.isinf(C) | jnp.isinf(lw), jnp.inf, out)
    return jnp.where(C == 0, jnp.zeros_like(out), out)


def hellinger_to_coverage(hellinger2, N):
    r"""Hellinger → coverage (EXACT, upper bound on Cov_N).

    .. math:: \mathrm{Cov}_N(\pi_D\|\pi) \le \frac{2N}{(\sqrt N - 1)^2}\, D_H^2(\pi_D,\pi),
       \quad N > 1,

    with sequence-level D_H² = 1 − Σ√(π_D π). The factor decreases to 2 as N → ∞ (no
    gain in N); it is computed as 2/(1 − N^{-1/2})², so N = +inf gives 2·D_H².

    Reference: arXiv 2510.15020 v2, Prop. D.4 (ICLR: Prop. F.4).

    Arguments:
        hellinger2: squared Hellinger distance D_H² ∈ [0, 1].
        N: threshold, N > 1 (+inf allowed).

    Returns:
        ``2 N / (sqrt(N) - 1)**2 * hellinger2``.
    """
    f = "hellinger_to_coverage"
    _unit(f, "hellinger2", hellinger2)
    _gt1(f, "N", N)
    factor = _div(2.0, (1 - jax.lax.rsqrt(_f(N))) ** 2)
    return _mul(factor, hellinger2)


def chain_rule(cov_D_hat_at_M1_over_M2, cov_T_D_at_M2, M2):
    r"""Chain rule / transitivity of coverage (EXACT, upper bound).

    .. math:: \mathrm{Cov}_{M_1}(\pi_T\|\hat\pi) \le M_2\,\mathrm{Cov}_{M_1/M_2}(\pi_D\|\hat\pi)
       + \mathrm{Cov}_{M_2}(\pi_T\|\pi_D).

    Stated for M₁, M₂ ≥ 2; the proof works for any M₁, M₂ > 0 (M₁/M₂ may be < 1).

    Reference: arXiv 2510.15020 v2, Prop. D.5 (ICLR: Prop. F.5).

    Arguments:
        cov_D_hat_at_M1_over_M2: Cov_{M₁/M₂}(π_D‖π̂) ∈ [0, 1].
        cov_T_D_at_M2: Cov_{M₂}(π_T‖π_D) ∈ [0, 1].
        M2: M₂ > 0 (+inf allowed; 0·inf is 0).

    Returns:
        ``M2 * cov_D_hat_at_M1_over_M2 + cov_T_D_at_M2``.
    """
    f = "chain_rule"
    _unit(f, "cov_D_hat_at_M1_over_M2", cov_D_hat_at_M1_over_M2)
    _unit(f, "cov_T_D_at_M2", cov_T_D_at_M2)
    _pos(f, "M2", M2)
    return _mul(M2, cov_D_hat_at_M1_over_M2) + _f(cov_T_D_at_M2)


def stopped_kl_to_coverage(stopped_kl, N):
    r"""Stopped KL → coverage (EXACT, upper bound on Cov_N).

    With D_{seq,N}(π_D‖π) := E_{π_D} min{log N, Σ_h ε_π(x, y_{<h})} (≤ log N even when
    KL = ∞):

    .. math:: \mathrm{Cov}_N(\pi_D\|\pi) \le \frac{2\,D_{seq,N}(\pi_D\|\pi)}{\log N - 1},
       \quad N > e.

    Reference: arXiv 2510.15020 v2, Prop. D.10 (ICLR: Prop. F.10).

    Arguments:
        stopped_kl: D_{seq,N} ≥ 0.
        N: threshold, N > e.

    Returns:
        ``2 * stopped_kl / (log N - 1)``.
    """
    f = "stopped_kl_to_coverage"
    _nonneg(f, "stopped_kl", stopped_kl)
    _check(f, "N", N, lambda v: v > _E, "> e = 2.718281828...")
    return _div(2 * _f(stopped_kl), jnp.log(_f(N)) - 1)


def partial_converse_threshold(N, delta):
    r"""Threshold log(N/δ) of the partial converse (see :func:`partial_converse`).

    Reference: arXiv 2510.15020 v2, Prop. D.11 (ICLR: Prop. F.11).

    Arguments:
        N: threshold, N ≥ 1.
        delta: δ ∈ (0, 1).

    Returns:
        ``log(N / delta)``.
    """
    f = "partial_converse_threshold"
    _ge1(f, "N", N)
    _open_unit(f, "delta", delta)
    return jnp.log(_f(N)) - jnp.log(_f(delta))


def partial_converse(prob_hellinger_sum_exceeds, delta):
    r"""Partial converse (EXACT, lower bound on Cov_N).

    .. math:: \mathrm{Cov}_N(\pi_D\|\pi) \ge P_{\pi_D}\Big[\sum_h D_H^2(\pi_D(\cdot|x,y_{<h}),
       \pi(\cdot|x,y_{<h})) \ge \log(N/\delta)\Big] - \delta,

    for N ≥ 1, δ ∈ (0, 1). The caller supplies the probability P at the threshold
    :func:`partial_converse_threshold` ``(N, delta)``. A negative value is a vacuous
    (but valid) lower bound and is returned as is.

    Reference: arXiv 2510.15020 v2, Prop. D.11 (ICLR: Prop. F.11).

    Arguments:
        prob_hellinger_sum_exceeds: P[Σ_h D_H²(step) ≥ log(N/δ)] ∈ [0, 1].
        delta: δ ∈ (0, 1).

    Returns:
        ``prob_hellinger_sum_exceeds - delta``.
    """
    f = "partial_converse"
    _unit(f, "prob_hellinger_sum_exceeds", prob_hellinger_sum_exceeds)
    _open_unit(f, "delta", delta)
    return _f(prob_hellinger_sum_exceeds) - _f(delta)


def classical_hellinger_rate(c_fine_value, c=1.0):
    r"""Classical MLE Hellinger rate (rate): D_H²(π_D, π̂) ≲ C_fine, hence Cov_M ≲ C_fine.

    Holds for all M ≥ 2 with no improvement in M (contrast with Thm 4.1).

    Reference: arXiv 2510.15020 v2, Prop. D.8 (ICLR: Prop. F.8).

    Arguments:
        c_fine_value: C_fine(Π, n) ≥ 0 (see :func:`c_fine`).
        c: the unspecified absolute constant.

    Returns:
        ``c * c_fine_value``.
    """
    _nonneg("classical_hellinger_rate", "c_fine_value", c_fine_value)
    return _mul(c, c_fine_value)


def classical_kl_rate(c_fine_value, log_w_max, c=1.0):
    r"""Classical MLE KL rate (rate): D_KL(π_D‖π̂) ≲ log W_max · C_fine.

    Reference: arXiv 2510.15020 v2, Prop. D.9 (ICLR: Prop. F.9).

    Arguments:
        c_fine_value: C_fine(Π, n) ≥ 0.
        log_w_max: log W_max ≥ 0 (+inf allowed; 0·inf is 0).
        c: the unspecified absolute constant.

    Returns:
        ``c * log_w_max * c_fine_value``.
    """
    f = "classical_kl_rate"
    _nonneg(f, "c_fine_value", c_fine_value)
    _nonneg(f, "log_w_max", log_w_max)
    return _mul(c, _mul(log_w_max, c_fine_value))


def classical_kl_coverage_rate(c_fine_value, log_w_max, M, c=1.0):
    r"""Classical KL route to coverage (rate): Cov_M ≲ (log W_max / log M)·C_fine.

    No improvement until M ≈ W_max.

    Reference: arXiv 2510.15020 v2, Prop. D.9 (ICLR: Prop. F.9), combined with Prop. D.1.

    Arguments:
        c_fine_value: C_fine(Π, n) ≥ 0.
        log_w_max: log W_max ≥ 0.
        M: threshold, M > 1.
        c: the unspecified absolute constant.

    Returns:
        ``c * log_w_max / log M * c_fine_value``.
    """
    f = "classical_kl_coverage_rate"
    _nonneg(f, "c_fine_value", c_fine_value)
    _nonneg(f, "log_w_max", log_w_max)
    _gt1(f, "M", M)
    return _div(_mul(c, _mul(log_w_max, c_fine_value)), jnp.log(_f(M)))


# --------------------------------------------------------------------------------------
# §4 Best-of-N
# --------------------------------------------------------------------------------------


def bon_sufficiency(cov_M, N, M):
    r"""Best-of-N sufficiency, binary rewards (EXACT, upper bound on regret).

    .. math:: E_x[r(x,\pi_T) - r(x,\mathrm{BoN}_N)] \le \mathrm{Cov}_M(\pi_T\|\hat\pi)
       + e^{-N/M},

    for binary rewards, every N ≥ 1 and M > 0 ([project] exact form of Prop. D.6; see
    THEORY.md §4.1 for the derivation).

    Reference: arXiv 2510.15020 v2, Prop. D.6 (ICLR: Prop. F.6), [project] binary form.

    Arguments:
        cov_M: Cov_M(π_T‖π̂) ∈ [0, 1].
        N: number of draws, N ≥ 1.
        M: coverage threshold, M > 0.

    Returns:
        ``cov_M + exp(-N / M)``.
    """
    f = "bon_sufficiency"
    _unit(f, "cov_M", cov_M)
    _ge1(f, "N", N)
    _pos(f, "M", M)
    return _f(cov_M) + jnp.exp(-_f(N) / _f(M))


def bon_sufficiency_general_applies(N, M, epsilon, cov_M):
    r"""Precondition of :func:`bon_sufficiency_general`: N ≥ 2M log(1/ε) and Cov_M ≤ ½.

    Reference: arXiv 2510.15020 v2, Prop. D.6 (ICLR: Prop. F.6).

    Arguments:
        N: number of draws, N ≥ 1.
        M: coverage threshold, M ≥ 1.
        epsilon: ε > 0.
        cov_M: Cov_M(π_T‖π̂) ∈ [0, 1].

    Returns:
        Boolean array: whether the general sufficiency bound applies.
    """
    f = "bon_sufficiency_general_applies"
    _ge1(f, "N", N)
    _ge1(f, "M", M)
    _pos(f, "epsilon", epsilon)
    _unit(f, "cov_M", cov_M)
    N, M, eps, cov = _f(N), _f(M), _f(epsilon), _f(cov_M)
    return (N >= 2 * M * _log_inv(eps)) & (cov <= 0.5)


def bon_sufficiency_general(cov_M, epsilon):
    r"""Best-of-N sufficiency, rewards in [0, 1] (EXACT, upper bound on regret).

    .. math:: \text{regret} \le \mathrm{Cov}_M(\pi_T\|\hat\pi) + \varepsilon
       \quad\text{if } N \ge 2M\log(1/\varepsilon),\ M \ge 1,\ \mathrm{Cov}_M \le 1/2.

    The precondition involves N and M, which this function does not see; check it with
    :func:`bon_sufficiency_general_applies`. Only cov_M ≤ ½ is checked here (concrete
    inputs).

    Reference: arXiv 2510.15020 v2, Prop. D.6 (ICLR: Prop. F.6).

    Arguments:
        cov_M: Cov_M(π_T‖π̂) ∈ [0, ½].
        epsilon: ε > 0.

    Returns:
        ``cov_M + epsilon``.
    """
    f = "bon_sufficiency_general"
    _check(f, "cov_M", cov_M, lambda v: (v >= 0) & (v <= 0.5), "in [0, 1/2]")
    _pos(f, "epsilon", epsilon)
    return _f(cov_M) + _f(epsilon)


def bon_necessity(cov_2N):
    r"""Best-of-N necessity (EXACT, lower bound on regret for a worst-case reward).

    With S_x := {y : π_T(y|x)/π̂(y|x) ≥ 2N} and r(x, y) := 1{y ∈ S_x}:

    .. math:: \text{regret}(\mathrm{BoN}_N) \ge \tfrac12\,\mathrm{Cov}_{2N}(\pi_T\|\hat\pi).

    Stated for N ≥ 2; the argument (1 − (1 − q)^N ≤ Nq) works for any N ≥ 1.

    Reference: arXiv 2510.15020 v2, Prop. D.7 (ICLR: Prop. F.7).

    Arguments:
        cov_2N: Cov_{2N}(π_T‖π̂) ∈ [0, 1].

    Returns:
        ``cov_2N / 2``.
    """
    _unit("bon_necessity", "cov_2N", cov_2N)
    return 0.5 * _f(cov_2N)


def kl_scaling_law_n(kl, epsilon):
    r"""KL "scaling law": draws needed for BoN regret ε, N ≈ exp(D_KL(π_D‖π̂)/ε).

    Heuristic combination of Props. 3.1, D.5 and D.6 (not an inequality); exponential in H
    whenever the sequence KL grows linearly in H.

    Reference: arXiv 2510.15020 v2, Eq. 5 (ICLR: Eq. 4).

    Arguments:
        kl: D_KL(π_D‖π̂) ≥ 0 (+inf allowed).
        epsilon: target regret ε > 0.

    Returns:
        ``exp(kl / epsilon)``.
    """
    f = "kl_scaling_law_n"
    _nonneg(f, "kl", kl)
    _pos(f, "epsilon", epsilon)
    return jnp.exp(_div(kl, epsilon))


# --------------------------------------------------------------------------------------
# §5 maximum likelihood
# --------------------------------------------------------------------------------------


def bernoulli_missing_mass_quantile(n, delta):
    r"""Bernoulli missing mass: (1−δ)-quantile bound on Cov_N of the MLE (EXACT w.p. ≥ 1−δ).

    For Π = {Ber(p) : p ∈ [0, ½]}, π_D = Ber(p⋆), every N ≥ 2, Cov_N(π̂) = p⋆·1{p̂ ≤ p⋆/N}
    and, w.p. ≥ 1 − δ,

    .. math:: \mathrm{Cov}_N(\hat\pi) \le \frac{8\log(1/\delta)}{n}.

    Reference: arXiv 2510.15020 v2, §3 case study (ICLR: §3); the constant 8 is
    [project] (Chernoff).

    Arguments:
        n: sample size, n ≥ 1.
        delta: δ ∈ (0, 1).

    Returns:
        ``8 * log(1/delta) / n``.
    """
    f = "bernoulli_missing_mass_quantile"
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    return 8 * _log_inv(delta) / _f(n)


def kappa(B):
    r"""κ(B) := log 2 − h(σ(2B)) = KL(Ber(σ(2B)) ‖ Ber(½)).

    h is the binary entropy in nats, σ the logistic function. κ(1) ≈ 0.3278,
    κ(3) ≈ 0.676, κ(B) → log 2 as B → ∞; κ(B) ≥ ½ iff B ≥ 1.4916 (THEORY.md's
    sufficient condition B ≥ 1.53 is not tight).

    Reference: arXiv 2510.15020 v2, Prop. 3.2 proof, App. G (ICLR: App. I); [correction]
    constant of THEORY.md §5.2.

    Arguments:
        B: feature scale, B ≥ 0 (+inf allowed).

    Returns:
        κ(B) ∈ [0, log 2).
    """
    _nonneg("kappa", "B", B)
    z = 2 * _f(B)
    s = jax.nn.sigmoid(z)
    one_minus_s = jax.nn.sigmoid(-z)
    # -log s = softplus(-z), -log(1-s) = softplus(z); 0 * inf handled explicitly.
    h = _mul(s, jax.nn.softplus(-z)) + _mul(one_minus_s, jax.nn.softplus(z))
    return jnp.log(2.0) - h


def kl_horizon_lower_bound(H, n, B=1.0):
    r"""Sequence KL of proper learners grows with H (w.p. ≥ ¼ lower bound on D_KL).

    For every proper estimator there is an instance with

    .. math:: P\big[D_{KL}(\pi_D\|\hat\pi) \ge \kappa(B)\,H/(2n)\big] \ge 1/4.

    [correction] The paper prints H/(4n); its proof's last step needs 2·KL(Ber(σ(2))‖Ber(½))
    ≥ 1, but that KL is κ(1) = 0.3278. H/(4n) holds only once κ(B) ≥ ½
    (B ≥ 1.4916; THEORY.md says B ≥ 1.53, which suffices).

    Reference: arXiv 2510.15020 v2, Prop. 3.2, App. G (ICLR: Prop. 3.2, App. I).

    Arguments:
        H: horizon, H ≥ 1.
        n: sample size, n ≥ 1.
        B: feature scale, B ≥ 0.

    Returns:
        ``kappa(B) * H / (2 n)``.
    """
    f = "kl_horizon_lower_bound"
    _ge1(f, "H", H)
    _ge1(f, "n", n)
    _nonneg(f, "B", B)
    return kappa(B) * _f(H) / (2 * _f(n))


def kl_horizon_coverage_upper(n):
    r"""Coverage on the Prop. 3.2 instance (EXACT): Cov_N(π̂) ≤ μ(rare prompt) = 1/(2n).

    Holds for every N > 1, with no H.

    Reference: arXiv 2510.15020 v2, Prop. 3.2, App. G (ICLR: Prop. 3.2, App. I).

    Arguments:
        n: sample size, n ≥ 1.

    Returns:
        ``1 / (2 n)``.
    """
    _ge1("kl_horizon_coverage_upper", "n", n)
    return 1 / (2 * _f(n))


def c_fine(log_covering, epsilons, n):
    r"""Fine complexity C_fine(Π, n) := inf_{ε>0} {log N_∞(Π, ε)/n + ε}, over a grid.

    The infimum is taken over the supplied grid of ε (an upper bound on the true inf).

    Reference: arXiv 2510.15020 v2, Eq. 7, Thm 4.1 (ICLR: Eq. 5, Thm 4.1).

    Arguments:
        log_covering: a callable ε ↦ log N_∞(Π, ε) (jnp-compatible), or an array of
            values ≥ 0 aligned with ``epsilons`` (last axis).
        epsilons: grid of scales ε > 0, shape ``(..., G)``.
        n: sample size, n ≥ 1 (broadcast against the leading axes).

    Returns:
        ``min over the last axis of log_covering(eps)/n + eps``.
    """
    f = "c_fine"
    _pos(f, "epsilons", epsilons)
    _ge1(f, "n", n)
    eps = _f(epsilons)
    values = log_covering(eps) if callable(log_covering) else log_covering
    _nonneg(f, "log_covering", values)
    values = _f(values)
    return jnp.min(values / jnp.expand_dims(_f(n), -1) + eps, axis=-1)


def c_coarse(log_cover_at_clogN, n, delta):
    r"""Coarse complexity C_coarse(Π, N, n) := (log N_∞(Π, c·log N) + log(1/δ))/n.

    Reference: arXiv 2510.15020 v2, Eq. 7, Thm 4.1 (ICLR: Eq. 5, Thm 4.1).

    Arguments:
        log_cover_at_clogN: log N_∞(Π, c·log N) ≥ 0 (c the theorem's absolute constant).
        n: sample size, n ≥ 1.
        delta: δ ∈ (0, 1).

    Returns:
        ``(log_cover_at_clogN + log(1/delta)) / n``.
    """
    f = "c_coarse"
    _nonneg(f, "log_cover_at_clogN", log_cover_at_clogN)
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    return (_f(log_cover_at_clogN) + _log_inv(delta)) / _f(n)


def mle_general_rate(c_fine, c_coarse, N, c=1.0, eps_apx=0.0):
    r"""Theorem 4.1: fast generalization of the MLE for coverage (rate, w.p. ≥ 1−δ).

    .. math:: \mathrm{Cov}_N(\hat\pi) \lesssim \frac{C_{fine}(\Pi,n) + \varepsilon_{apx}}{\log N}
       + C_{coarse}(\Pi,N,n),

    N ≥ 8 in the theorem (validated: N > 1). ``eps_apx`` is the optimization slack of an
    approximate MLE (Thm 4.1′).

    Reference: arXiv 2510.15020 v2, Eq. 7, Thm 4.1 and 4.1′ App. H.1 (ICLR: Eq. 5,
    Thm 4.1, App. J.2).

    Arguments:
        c_fine: C_fine(Π, n) ≥ 0 (see :func:`covsim.bounds.c_fine`).
        c_coarse: C_coarse(Π, N, n) ≥ 0.
        N: threshold, N > 1.
        c: the unspecified absolute constant.
        eps_apx: approximate-MLE slack ≥ 0.

    Returns:
        ``c * ((c_fine + eps_apx) / log N + c_coarse)``.
    """
    f = "mle_general_rate"
    _nonneg(f, "c_fine", c_fine)
    _nonneg(f, "c_coarse", c_coarse)
    _nonneg(f, "eps_apx", eps_apx)
    _gt1(f, "N", N)
    fine = _div(_f(c_fine) + _f(eps_apx), jnp.log(_f(N)))
    return _mul(c, fine + _f(c_coarse))


def _parametric_form(n, N, d, scale, delta, c):
    n, logN, d, scale = _f(n), jnp.log(_f(N)), _f(d), _f(scale)
    inner = jnp.maximum(jnp.log(scale / logN), 0) + jnp.log(scale * n) / logN
    return c * (d * inner + _log_inv(delta)) / n


def mle_parametric_rate(n, N, d, C, delta, c=1.0):
    r"""Corollary 4.1(i), parametric classes (rate, w.p. ≥ 1−δ).

    For log N_∞(Π, α) ≤ d log(C/α), α ∈ (0, C/2], d, C ≥ 2:

    .. math:: \mathrm{Cov}_N \lesssim \frac{d\,\big([\log(C/\log N)]_+
       + \log(Cn)/\log N\big) + \log(1/\delta)}{n}.

    Reference: arXiv 2510.15020 v2, Cor. 4.1(i) (ICLR: Cor. 4.1(i)).

    Arguments:
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        d: dimension, d ≥ 1.
        C: covering scale, C ≥ 2.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "mle_parametric_rate"
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    _ge1(f, "d", d)
    _check(f, "C", C, lambda v: v >= 2, ">= 2")
    _open_unit(f, "delta", delta)
    return _parametric_form(n, N, d, C, delta, c)


def mle_nonparametric_min_n(N, C, p):
    r"""Sample-size condition of Cor. 4.1(ii): n ≥ (log N)^{1/p}·(C/log N)^p.

    Reference: arXiv 2510.15020 v2, Cor. 4.1(ii) (ICLR: Cor. 4.1(ii)).

    Arguments:
        N: threshold, N > 1.
        C: covering scale, C > 0.
        p: exponent, p > 0.

    Returns:
        The minimal n.
    """
    f = "mle_nonparametric_min_n"
    _gt1(f, "N", N)
    _pos(f, "C", C)
    _pos(f, "p", p)
    logN, C, p = jnp.log(_f(N)), _f(C), _f(p)
    return logN ** (1 / p) * (C / logN) ** p


def mle_nonparametric_rate(n, N, C, p, delta, c=1.0):
    r"""Corollary 4.1(ii), nonparametric classes (rate, w.p. ≥ 1−δ).

    For log N_∞(Π, α) ≤ (C/α)^p and n ≥ :func:`mle_nonparametric_min_n`:

    .. math:: \mathrm{Cov}_N \lesssim \frac{1}{\log N}\Big(\frac{C^p}{n}\Big)^{1/(p+1)}
       + \frac{\log(1/\delta)}{n}.

    Reference: arXiv 2510.15020 v2, Cor. 4.1(ii) (ICLR: Cor. 4.1(ii)).

    Arguments:
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        C: covering scale, C > 0.
        p: exponent, p > 0.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "mle_nonparametric_rate"
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    _pos(f, "C", C)
    _pos(f, "p", p)
    _open_unit(f, "delta", delta)
    n, logN, C, p = _f(n), jnp.log(_f(N)), _f(C), _f(p)
    return c * ((C**p / n) ** (1 / (p + 1)) / logN + _log_inv(delta) / n)


def mle_linear_low_dim_rate(n, N, d, B, H, delta, c=1.0):
    r"""Corollary 4.2, AR-linear in low dimension (rate, w.p. ≥ 1−δ).

    With log N_∞ ≍ d log(BH/α):

    .. math:: \mathrm{Cov}_N \lesssim \frac{d\,\big([\log(BH/\log N)]_+
       + \log(BHn)/\log N\big) + \log(1/\delta)}{n}

    — only logarithmic in H.

    Reference: arXiv 2510.15020 v2, Cor. 4.2 (ICLR: inline after Cor. 4.1).

    Arguments:
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        d: dimension, d ≥ 1.
        B: feature bound, B ≥ 1.
        H: horizon, H ≥ 1.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "mle_linear_low_dim_rate"
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    _ge1(f, "d", d)
    _ge1(f, "B", B)
    _ge1(f, "H", H)
    _open_unit(f, "delta", delta)
    return _parametric_form(n, N, d, _f(B) * _f(H), delta, c)


def coarse_tightness_lower(d, n):
    r"""Tightness of the coarse term (EXACT w.p. ≥ ½, lower bound on Cov_N of the MLE).

    On the `coarse_tightness` class (n ≥ d ≥ 2, B ≥ log(5n)), simultaneously for all
    N ≤ e^B: Cov_N(π̂) ≥ (d − 1)/(10n).

    Reference: arXiv 2510.15020 v2, Prop. 4.1(a), App. H.3 (ICLR: Prop. G.1(a), App. J.4).

    Arguments:
        d: dimension, d ≥ 2.
        n: sample size, n ≥ d.

    Returns:
        ``(d - 1) / (10 n)``.
    """
    f = "coarse_tightness_lower"
    _check(f, "d", d, lambda v: v >= 2, ">= 2")
    _ge1(f, "n", n)
    dd, nn = _concrete(d), _concrete(n)
    if dd is not None and nn is not None and np.any(np.asarray(nn < dd)):
        raise ValueError(f"{f}: n must be >= d, got n={nn!r}, d={dd!r}")
    return (_f(d) - 1) / (10 * _f(n))


def fine_tightness_rate(d, n, N, c=1.0):
    r"""Tightness of the fine term (rate; lower bound w.p. ≥ 0.1): Cov_N(π̂) ≥ c·d/(n log N).

    On the `fine_tightness` class (n ≥ 2d, N ≥ 2, v2 conditions).

    Reference: arXiv 2510.15020 v2, Prop. 4.1(b), App. H.3 (ICLR: Prop. G.1(b), App. J.4).

    Arguments:
        d: dimension, d ≥ 1.
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        c: the unspecified absolute constant.

    Returns:
        ``c * d / (n log N)``.
    """
    f = "fine_tightness_rate"
    _ge1(f, "d", d)
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    return c * _div(_f(d), _f(n) * jnp.log(_f(N)))


def mle_linear_rate(n, N, sigma2, B, c=1.0):
    r"""Theorem 4.2, overparameterized AR-linear MLE (rate, in expectation).

    .. math:: E[\mathrm{Cov}_N(\hat\pi)] \lesssim \sqrt{\frac{\sigma_\star^2}{n\log N}}
       + \frac{B^2}{n}, \quad N \ge 2.

    No explicit H and no d; H enters only through σ⋆² ≤ HB².

    Reference: arXiv 2510.15020 v2, Thm 4.2, Eq. 9 (ICLR: Thm 4.2, Eq. 7).

    Arguments:
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        sigma2: inherent variance σ⋆² ≥ 0.
        B: feature bound, B > 0.
        c: the unspecified absolute constant.

    Returns:
        ``c * (sqrt(sigma2 / (n log N)) + B**2 / n)``.
    """
    f = "mle_linear_rate"
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    n = _f(n)
    return c * (jnp.sqrt(_f(sigma2) / (n * jnp.log(_f(N)))) + _f(B) ** 2 / n)


def mle_linear_stopped_kl_rate(n, N, sigma2, B, c=1.0):
    r"""Theorem I.1, stopped KL of the AR-linear MLE (rate, in expectation).

    .. math:: E[D_{seq,N}(\pi_D\|\hat\pi)] \lesssim \sqrt{\frac{\sigma_\star^2\log N}{n}}
       + \frac{B^2\log N}{n}.

    Reference: arXiv 2510.15020 v2, Thm I.1 (ICLR: Thm K.1).

    Arguments:
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        sigma2: σ⋆² ≥ 0.
        B: feature bound, B > 0.
        c: the unspecified absolute constant.

    Returns:
        ``c * (sqrt(sigma2 log N / n) + B**2 log N / n)``.
    """
    f = "mle_linear_stopped_kl_rate"
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    n, logN = _f(n), jnp.log(_f(N))
    return c * (jnp.sqrt(_f(sigma2) * logN / n) + _f(B) ** 2 * logN / n)


def mle_insample_kl(sigma2, n):
    r"""In-sample per-step KL at the exact MLE (EXACT in expectation, upper bound).

    .. math:: E\Big[\frac1n\sum_i\sum_h \varepsilon_{\hat\pi}(x_i, y^i_{<h})\Big]
       \le \frac{2\sigma_\star}{\sqrt n}.

    Needs the exact constrained maximizer and θ⋆ ∈ Θ ⊆ unit ball; measured on the
    training sequences, not a population KL.

    Reference: arXiv 2510.15020 v2, Lemma I.1 (ICLR: Lemma K.1).

    Arguments:
        sigma2: σ⋆² ≥ 0.
        n: sample size, n ≥ 1.

    Returns:
        ``2 sqrt(sigma2) / sqrt(n)``.
    """
    f = "mle_insample_kl"
    _nonneg(f, "sigma2", sigma2)
    _ge1(f, "n", n)
    return 2 * jnp.sqrt(_f(sigma2) / _f(n))


def mle_linear_crossover_n(sigma2, B, N):
    r"""Crossover sample size of Thm 4.2: n× := B⁴ log N / σ⋆² ([project]).

    The fine term √(σ⋆²/(n log N)) dominates B²/n iff n ≥ n×. σ⋆² = 0 gives +inf.

    Reference: arXiv 2510.15020 v2, Thm 4.2 (ICLR: Thm 4.2); THEORY.md §5.6.

    Arguments:
        sigma2: σ⋆² ≥ 0.
        B: feature bound, B > 0.
        N: threshold, N > 1.

    Returns:
        ``B**4 log N / sigma2``.
    """
    f = "mle_linear_crossover_n"
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    _gt1(f, "N", N)
    return _div(_f(B) ** 4 * jnp.log(_f(N)), sigma2)


def variance_lower_bound_rate(n, N, H, c=1.0):
    r"""σ⋆² is necessary (rate; lower bound on E Cov_N of every proper algorithm).

    .. math:: E[\mathrm{Cov}_N] \gtrsim \min\{1, H/(n\log N)\}, \quad \log N \le c\min\{H, B^2\}.

    Reference: arXiv 2510.15020 v2, Prop. I.1, App. I.8 (ICLR: Prop. K.1, App. K.8).

    Arguments:
        n: sample size, n ≥ 1.
        N: threshold, N > 1.
        H: horizon, H ≥ 1.
        c: the unspecified absolute constant.

    Returns:
        ``c * min(1, H / (n log N))``.
    """
    f = "variance_lower_bound_rate"
    _ge1(f, "n", n)
    _gt1(f, "N", N)
    _ge1(f, "H", H)
    return c * jnp.minimum(1.0, _div(_f(H), _f(n) * jnp.log(_f(N))))


def convex_class_bound(
    cov_Nprime_at_theta_bar, N, N_prime, alpha, log_cover_alpha, c_fine, n, delta, C=1.0
):
    r"""Convex classes, misspecification allowed (bound with unspecified constant C).

    Assumption E.1 (Θ convex compact, θ ↦ π_θ(y|x) concave), α ≥ 0, N′ ≥ 1,
    N ≥ 2e^{2α}N′, θ̄ ∈ argmin_θ D_KL(π_D‖π_θ); w.p. ≥ 1 − δ:

    .. math:: \mathrm{Cov}_N(\hat\pi) \le \mathrm{Cov}_{N'}(\pi_{\bar\theta})
       + C\,\frac{\log N_\infty(\Pi,\alpha) + \log(1/\delta)}{n}
       + C\,\frac{e^{2\alpha}N'}{N}\,C_{fine}(\Pi, n).

    Raises ``ValueError`` when concrete inputs violate N ≥ 2e^{2α}N′.

    Reference: arXiv 2510.15020 v2, Thm E.1 (ICLR: Thm G.1).

    Arguments:
        cov_Nprime_at_theta_bar: Cov_{N′}(π_θ̄) ∈ [0, 1].
        N: threshold, N ≥ 2e^{2α}N′.
        N_prime: N′ ≥ 1.
        alpha: covering scale α ≥ 0.
        log_cover_alpha: log N_∞(Π, α) ≥ 0.
        c_fine: C_fine(Π, n) ≥ 0.
        n: sample size, n ≥ 1.
        delta: δ ∈ (0, 1).
        C: the unspecified absolute constant.

    Returns:
        The bound's value.
    """
    f = "convex_class_bound"
    _unit(f, "cov_Nprime_at_theta_bar", cov_Nprime_at_theta_bar)
    _ge1(f, "N", N)
    _ge1(f, "N_prime", N_prime)
    _nonneg(f, "alpha", alpha)
    _nonneg(f, "log_cover_alpha", log_cover_alpha)
    _nonneg(f, "c_fine", c_fine)
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    vN, vNp, va = _concrete(N), _concrete(N_prime), _concrete(alpha)
    if vN is not None and vNp is not None and va is not None:
        need = 2 * np.exp(2 * va) * vNp
        if np.any(np.asarray(vN < need * (1 - 1e-12))):
            raise ValueError(
                f"{f}: N must be >= 2 exp(2 alpha) N_prime, got N={vN!r}, "
                f"2 exp(2 alpha) N_prime={need!r}"
            )
    weight = jnp.exp(2 * _f(alpha)) * _f(N_prime) / _f(N)
    stat = (_f(log_cover_alpha) + _log_inv(delta)) / _f(n)
    return _f(cov_Nprime_at_theta_bar) + C * stat + C * _mul(weight, c_fine)


def convex_class_wellspecified_rate(c_fine, c_coarse, N, b, c=1.0):
    r"""Convex classes, well-specified (rate): Cov_N ≲ C_fine/N^{1−2b} + C_coarse.

    Polynomial in N instead of 1/log N (b ≥ 0 is the covering-scale exponent, written c in
    the paper).

    Reference: arXiv 2510.15020 v2, Thm E.1 (ICLR: Thm G.1).

    Arguments:
        c_fine: C_fine(Π, n) ≥ 0.
        c_coarse: C_coarse ≥ 0.
        N: threshold, N ≥ 1.
        b: exponent b ≥ 0.
        c: the unspecified absolute constant.

    Returns:
        ``c * (c_fine / N**(1 - 2b) + c_coarse)``.
    """
    f = "convex_class_wellspecified_rate"
    _nonneg(f, "c_fine", c_fine)
    _nonneg(f, "c_coarse", c_coarse)
    _ge1(f, "N", N)
    _nonneg(f, "b", b)
    return c * (_mul(c_fine, _f(N) ** (2 * _f(b) - 1)) + _f(c_coarse))


def _check_misspec(f, alpha, M):
    _unit(f, "alpha", alpha)
    _gt1(f, "M", M)
    va, vM = _concrete(alpha), _concrete(M)
    if va is not None and vM is not None and np.any(np.asarray(np.log(vM) <= va)):
        raise ValueError(f"{f}: M must be > exp(alpha), got M={vM!r}, alpha={va!r}")


def misspecification_p(alpha, M):
    r"""Parameter p = α²/(32 log M) of the misspecified pair ([correction]).

    Reference: arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2); THEORY.md §5.9, §10.3.

    Arguments:
        alpha: misspecification level α ∈ [0, 1].
        M: M > e^α.

    Returns:
        ``alpha**2 / (32 log M)``.
    """
    _check_misspec("misspecification_p", alpha, M)
    return _f(alpha) ** 2 / (32 * jnp.log(_f(M)))


def misspecification_coverage(alpha, M):
    r"""Misspecification hurts the MLE: Cov_N(π₂) = p/2 on the misspecified pair (EXACT).

    With p = α²/(32 log M), Cov_N(π₂) = p/2 = α²/(64 log M) for e^α < N ≤ M, while the MLE
    returns π₂ w.p. ≥ ¼ for every n and Cov_N(π₁) = 0.

    [correction] The paper states Cov_N(π₂) ≍ p; the exact value on the construction is
    p/2 with p = α²/(32 log M).

    Reference: arXiv 2510.15020 v2, Prop. E.1 (ICLR: Prop. G.2).

    Arguments:
        alpha: α ∈ [0, 1].
        M: M > e^α.

    Returns:
        ``alpha**2 / (64 log M)``.
    """
    _check_misspec("misspecification_coverage", alpha, M)
    return _f(alpha) ** 2 / (64 * jnp.log(_f(M)))


# --------------------------------------------------------------------------------------
# §6 algorithms
# --------------------------------------------------------------------------------------


def _online_kl(f, T, eta, sigma2, dist2):
    _ge1(f, "T", T)
    _pos(f, "eta", eta)
    _nonneg(f, "sigma2", sigma2)
    _nonneg(f, "dist2", dist2)
    eta = _f(eta)
    return _f(dist2) / (eta * _f(T)) + 2 * eta * _f(sigma2)


def vanilla_sgd_kl(T, eta, sigma2, dist2=4.0):
    r"""Vanilla sequence-level SGD, average KL of the iterates (EXACT in expectation).

    .. math:: \frac1T\sum_{t=1}^T E\,D_{KL}(\pi_D\|\pi_{\theta_t})
       \le \frac{\|\theta_\star-\theta_1\|^2}{\eta T} + 2\eta\sigma_\star^2,
       \quad \eta \le 1/(2HB^2).

    The paper prints ``dist2 = 4`` (diameter² of the unit ball). The step-size condition
    involves H and B, which this function does not see.

    Reference: arXiv 2510.15020 v2, Prop. 5.1, Eq. 14 (ICLR: Prop. 5.1, Eq. 8).

    Arguments:
        T: number of steps, T ≥ 1.
        eta: step size η > 0 (≤ 1/(2HB²) for validity).
        sigma2: σ⋆² ≥ 0.
        dist2: ‖θ⋆ − θ₁‖² ≥ 0 (default 4).

    Returns:
        ``dist2 / (eta T) + 2 eta sigma2``.
    """
    return _online_kl("vanilla_sgd_kl", T, eta, sigma2, dist2)


def vanilla_sgd_step_size(H, B, sigma2, T):
    r"""Step size of vanilla SGD: η = min{1/(2HB²), √(2/(σ⋆²T))} ([project] minimizer).

    σ⋆² = 0 gives the cap 1/(2HB²).

    Reference: arXiv 2510.15020 v2, Prop. 5.1 (ICLR: Prop. 5.1); THEORY.md §6.2.

    Arguments:
        H: horizon, H ≥ 1.
        B: feature bound, B > 0.
        sigma2: σ⋆² ≥ 0.
        T: number of steps, T ≥ 1.

    Returns:
        η.
    """
    f = "vanilla_sgd_step_size"
    _ge1(f, "H", H)
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    _ge1(f, "T", T)
    cap = 1 / (2 * _f(H) * _f(B) ** 2)
    return jnp.minimum(cap, jnp.sqrt(_div(2.0, _f(sigma2) * _f(T))))


def vanilla_sgd_kl_at_default_step(T, H, B, sigma2):
    r"""Vanilla SGD average KL at the default step (EXACT in expectation, upper bound).

    With η from :func:`vanilla_sgd_step_size` and ‖θ⋆ − θ₁‖² ≤ 4:

    .. math:: \frac{4}{\eta T} + 2\eta\sigma_\star^2 \le \frac{4\sqrt2\,\sigma_\star}{\sqrt T}
       + \frac{8HB^2}{T}.

    Reference: arXiv 2510.15020 v2, Prop. 5.1 (ICLR: Prop. 5.1); THEORY.md §6.2.

    Arguments:
        T: T ≥ 1.
        H: H ≥ 1.
        B: B > 0.
        sigma2: σ⋆² ≥ 0.

    Returns:
        ``4 sqrt(2) sqrt(sigma2 / T) + 8 H B**2 / T``.
    """
    f = "vanilla_sgd_kl_at_default_step"
    _ge1(f, "T", T)
    _ge1(f, "H", H)
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    T = _f(T)
    return 4 * math.sqrt(2) * jnp.sqrt(_f(sigma2) / T) + 8 * _f(H) * _f(B) ** 2 / T


def vanilla_sgd_coverage_exact(T, H, B, sigma2, N):
    r"""Vanilla SGD average coverage at the default step (EXACT in expectation).

    .. math:: \frac1T\sum_t E\,\mathrm{Cov}_N(\pi_{\theta_t})
       \le \frac{4\sqrt2\,\sigma_\star/\sqrt T + 8HB^2/T}{\log N - 1 + 1/N}.

    Reference: arXiv 2510.15020 v2, Prop. 5.1 with Prop. D.1 (ICLR: Prop. 5.1, Prop. F.1).

    Arguments:
        T: T ≥ 1.
        H: H ≥ 1.
        B: B > 0.
        sigma2: σ⋆² ≥ 0.
        N: threshold, N > 1.

    Returns:
        The bound's value.
    """
    _gt1("vanilla_sgd_coverage_exact", "N", N)
    return kl_to_coverage(vanilla_sgd_kl_at_default_step(T, H, B, sigma2), N)


def vanilla_sgd_rate(T, N, sigma2, B, H, c=1.0):
    r"""Vanilla SGD (rate): avg Cov_N ≲ (1/log N)(√(σ⋆²/T) + B²H/T).

    Reference: arXiv 2510.15020 v2, Prop. 5.1 (ICLR: Prop. 5.1).

    Arguments:
        T: T ≥ 1.
        N: N > 1.
        sigma2: σ⋆² ≥ 0.
        B: B > 0.
        H: H ≥ 1.
        c: the unspecified absolute constant.

    Returns:
        ``c / log N * (sqrt(sigma2 / T) + B**2 H / T)``.
    """
    f = "vanilla_sgd_rate"
    _ge1(f, "T", T)
    _gt1(f, "N", N)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    _ge1(f, "H", H)
    T = _f(T)
    return c * (jnp.sqrt(_f(sigma2) / T) + _f(B) ** 2 * _f(H) / T) / jnp.log(_f(N))


def sgd_lower_bound_rate(T, N, H, c=1.0):
    r"""Vanilla SGD lower bound (rate, w.p. ≥ ½ for all t): Cov_N ≳ min{H/(T log N), 1}.

    Reference: arXiv 2510.15020 v2, Prop. 5.1 lower bound, App. I.4 (ICLR: App. K.4).

    Arguments:
        T: T ≥ 1.
        N: N > 1.
        H: H ≥ 1.
        c: the unspecified absolute constant.

    Returns:
        ``c * min(H / (T log N), 1)``.
    """
    f = "sgd_lower_bound_rate"
    _ge1(f, "T", T)
    _gt1(f, "N", N)
    _ge1(f, "H", H)
    return c * jnp.minimum(_div(_f(H), _f(T) * jnp.log(_f(N))), 1.0)


def normalized_sgd_step_size(B, sigma2, T, N):
    r"""Hyperparameters of normalized SGD from the proof of Thm 5.1.

    With M := log N: η = min{1/(128B), (M/(σ⋆²T))^{1/4}}, λ = M/(16η); these satisfy the
    proof's requirements λ ≥ 8BM and ηλ ≤ M/16. σ⋆² = 0 gives η = 1/(128B). Thm 5.1
    assumes N ≥ 3 (validated: N > 1 so that λ > 0).

    Reference: arXiv 2510.15020 v2, Thm 5.1, App. I.5 (ICLR: Thm 5.1, App. K.5).

    Arguments:
        B: B > 0.
        sigma2: σ⋆² ≥ 0.
        T: T ≥ 1.
        N: N > 1.

    Returns:
        ``(eta, lam)``.
    """
    f = "normalized_sgd_step_size"
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    _ge1(f, "T", T)
    _gt1(f, "N", N)
    M = jnp.log(_f(N))
    eta = jnp.minimum(1 / (128 * _f(B)), _div(M, _f(sigma2) * _f(T)) ** 0.25)
    return eta, M / (16 * eta)


def normalized_sgd_rate(T, K, N, sigma2, B, c=1.0):
    r"""Theorem 5.1, normalized SGD with batch K (rate).

    .. math:: \frac1T\sum_t E\,\mathrm{Cov}_N(\pi_{\theta_t}) \lesssim
       \sqrt{\frac{\sigma_\star^2}{T\log N}} + \frac{B^2}{T} + \frac{B}{K\log N}.

    Reference: arXiv 2510.15020 v2, Thm 5.1, Eqs. 17–18 (ICLR: Thm 5.1, Eq. 10).

    Arguments:
        T: T ≥ 1.
        K: batch size, K ≥ 1.
        N: N > 1 (theorem: N ≥ 3).
        sigma2: σ⋆² ≥ 0.
        B: B > 0.
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "normalized_sgd_rate"
    _ge1(f, "T", T)
    _ge1(f, "K", K)
    _gt1(f, "N", N)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    T, logN, B = _f(T), jnp.log(_f(N)), _f(B)
    return c * (jnp.sqrt(_f(sigma2) / (T * logN)) + B**2 / T + B / (_f(K) * logN))


def normalized_sgd_budget(epsilon, N, sigma2, B, c=1.0):
    r"""Budget of normalized SGD for E Cov_N ≤ ε (rate).

    T = c·(σ⋆²/(ε² log N) + B²/ε), K = c·(B/(ε log N) + 1).

    Reference: arXiv 2510.15020 v2, Thm 5.1 (ICLR: Thm 5.1).

    Arguments:
        epsilon: target ε > 0.
        N: N > 1.
        sigma2: σ⋆² ≥ 0.
        B: B > 0.
        c: the unspecified absolute constant.

    Returns:
        ``(T, K)`` as floats (round up at the call site).
    """
    f = "normalized_sgd_budget"
    _pos(f, "epsilon", epsilon)
    _gt1(f, "N", N)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    eps, logN, B = _f(epsilon), jnp.log(_f(N)), _f(B)
    T = c * (_f(sigma2) / (eps**2 * logN) + B**2 / eps)
    K = c * (B / (eps * logN) + 1)
    return T, K


def ttt_kl(T, eta, sigma2, dist2=4.0):
    r"""Token-level SGD + test-time-training decoding, average KL (EXACT in expectation).

    .. math:: \frac1T\sum_t E\,D_{KL}(\pi_D\|\pi^{TTT}_{\theta_t})
       \le \frac{\|\theta_\star-\theta_1\|^2}{\eta T} + 2\eta\sigma_\star^2,
       \quad \eta \le 1/(2B^2).

    Reference: arXiv 2510.15020 v2, Thm 6.1, App. I.6 (ICLR: Thm 6.1, App. K.6).

    Arguments:
        T: T ≥ 1.
        eta: η > 0 (≤ 1/(2B²) for validity).
        sigma2: σ⋆² ≥ 0.
        dist2: ‖θ⋆ − θ₁‖² ≥ 0 (default 4).

    Returns:
        ``dist2 / (eta T) + 2 eta sigma2``.
    """
    return _online_kl("ttt_kl", T, eta, sigma2, dist2)


def ttt_step_size(B, sigma2, T):
    r"""Step size of token-level SGD / TTT: η = min{1/(2B²), (σ⋆²T)^{−1/2}}.

    σ⋆² = 0 gives the cap 1/(2B²).

    Reference: arXiv 2510.15020 v2, Thm 6.1 (ICLR: Thm 6.1).

    Arguments:
        B: B > 0.
        sigma2: σ⋆² ≥ 0.
        T: T ≥ 1.

    Returns:
        η.
    """
    f = "ttt_step_size"
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    _ge1(f, "T", T)
    return jnp.minimum(1 / (2 * _f(B) ** 2), jax.lax.rsqrt(_f(sigma2) * _f(T)))


def ttt_kl_at_default_step(T, B, sigma2):
    r"""TTT average KL at the default step (EXACT in expectation, upper bound).

    .. math:: \frac{4}{\eta T} + 2\eta\sigma_\star^2 \le \frac{6\sigma_\star}{\sqrt T}
       + \frac{8B^2}{T}.

    Reference: arXiv 2510.15020 v2, Thm 6.1 (ICLR: Thm 6.1).

    Arguments:
        T: T ≥ 1.
        B: B > 0.
        sigma2: σ⋆² ≥ 0.

    Returns:
        ``6 sqrt(sigma2 / T) + 8 B**2 / T``.
    """
    f = "ttt_kl_at_default_step"
    _ge1(f, "T", T)
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    T = _f(T)
    return 6 * jnp.sqrt(_f(sigma2) / T) + 8 * _f(B) ** 2 / T


def ttt_coverage_exact(T, B, sigma2, N):
    r"""TTT average coverage at the default step (EXACT in expectation, via Prop. D.1).

    .. math:: \frac{6\sigma_\star/\sqrt T + 8B^2/T}{\log N - 1 + 1/N}.

    Reference: arXiv 2510.15020 v2, Thm 6.1 with Prop. D.1 (ICLR: Thm 6.1, Prop. F.1).

    Arguments:
        T: T ≥ 1.
        B: B > 0.
        sigma2: σ⋆² ≥ 0.
        N: N > 1.

    Returns:
        The bound's value.
    """
    _gt1("ttt_coverage_exact", "N", N)
    return kl_to_coverage(ttt_kl_at_default_step(T, B, sigma2), N)


def ttt_kl_rate(T, sigma2, B, c=1.0):
    r"""TTT KL (rate): avg KL ≲ √(σ⋆²/T) + B²/T, H-free.

    Reference: arXiv 2510.15020 v2, Thm 6.1 (ICLR: Thm 6.1).

    Arguments:
        T: T ≥ 1.
        sigma2: σ⋆² ≥ 0.
        B: B > 0.
        c: the unspecified absolute constant.

    Returns:
        ``c * (sqrt(sigma2 / T) + B**2 / T)``.
    """
    f = "ttt_kl_rate"
    _ge1(f, "T", T)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    T = _f(T)
    return c * (jnp.sqrt(_f(sigma2) / T) + _f(B) ** 2 / T)


def ttt_rate(T, N, sigma2, B, c=1.0):
    r"""TTT coverage (rate): avg Cov_N ≲ (1/log N)(√(σ⋆²/T) + B²/T).

    Reference: arXiv 2510.15020 v2, Thm 6.1 (ICLR: Thm 6.1).

    Arguments:
        T: T ≥ 1.
        N: N > 1.
        sigma2: σ⋆² ≥ 0.
        B: B > 0.
        c: the unspecified absolute constant.

    Returns:
        ``c / log N * (sqrt(sigma2 / T) + B**2 / T)``.
    """
    _gt1("ttt_rate", "N", N)
    return ttt_kl_rate(T, sigma2, B, c) / jnp.log(_f(N))


def distillation_step_size(B, sigma2, T, N):
    r"""Step size of truncated SGD for distillation ([correction]).

    .. math:: \eta = \min\{1/(256\,\log N\,B^2),\ (T\sigma_\star^2\log N)^{-1/2}\}.

    [correction] The paper prints 1/((64 log N + 2)B²), but the proof's descent step needs
    128·η·B²·log N ≤ ½; see :func:`distillation_step_size_paper` for the printed value.

    Reference: arXiv 2510.15020 v2, Thm 6.2, App. I.7 (ICLR: Thm G.2, App. K.7).

    Arguments:
        B: B > 0.
        sigma2: σ⋆² ≥ 0.
        T: T ≥ 1.
        N: N > 1.

    Returns:
        η.
    """
    f = "distillation_step_size"
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    _ge1(f, "T", T)
    _gt1(f, "N", N)
    logN = jnp.log(_f(N))
    cap = 1 / (256 * logN * _f(B) ** 2)
    return jnp.minimum(cap, jax.lax.rsqrt(_f(T) * _f(sigma2) * logN))


def distillation_step_size_paper(B, sigma2, T, N):
    r"""The paper's printed distillation step size (not covsim's default).

    .. math:: \eta = \min\{1/((64\log N + 2)B^2),\ (T\sigma_\star^2\log N)^{-1/2}\}.

    Reference: arXiv 2510.15020 v2, Thm 6.2 (ICLR: Thm G.2). Use
    :func:`distillation_step_size` ([correction]).

    Arguments:
        B: B > 0.
        sigma2: σ⋆² ≥ 0.
        T: T ≥ 1.
        N: N > 1.

    Returns:
        η.
    """
    f = "distillation_step_size_paper"
    _pos(f, "B", B)
    _nonneg(f, "sigma2", sigma2)
    _ge1(f, "T", T)
    _gt1(f, "N", N)
    logN = jnp.log(_f(N))
    cap = 1 / ((64 * logN + 2) * _f(B) ** 2)
    return jnp.minimum(cap, jax.lax.rsqrt(_f(T) * _f(sigma2) * logN))


def distillation_rate(T, N, sigma2, B, c=1.0):
    r"""Truncated SGD for distillation (rate): avg Cov_N ≲ √(σ⋆²/(T log N)) + B²/T.

    Matches Thm 4.2. Stated for T, N ≥ 2 (v2).

    Reference: arXiv 2510.15020 v2, Thm 6.2 (ICLR: Thm G.2).

    Arguments:
        T: T ≥ 1.
        N: N > 1.
        sigma2: σ⋆² ≥ 0.
        B: B > 0.
        c: the unspecified absolute constant.

    Returns:
        ``c * (sqrt(sigma2 / (T log N)) + B**2 / T)``.
    """
    f = "distillation_rate"
    _ge1(f, "T", T)
    _gt1(f, "N", N)
    _nonneg(f, "sigma2", sigma2)
    _pos(f, "B", B)
    T = _f(T)
    return c * (jnp.sqrt(_f(sigma2) / (T * jnp.log(_f(N)))) + _f(B) ** 2 / T)


# --------------------------------------------------------------------------------------
# §7 tournaments
# --------------------------------------------------------------------------------------


def _stat_term(f, num_candidates, n, delta):
    _ge1(f, "num_candidates", num_candidates)
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    return (jnp.log(_f(num_candidates)) + _log_inv(delta)) / _f(n)


def simple_tournament_explicit(min_cov_Nprime, N, N_prime, num_candidates, n, delta):
    r"""Simple tournament, explicit finite-class form ([project], w.p. ≥ 1−δ).

    .. math:: \mathrm{Cov}_{N N'}(\hat\pi) \le 5\min_{\pi\in\Pi}\mathrm{Cov}_{N'}(\pi)
       + \frac{4N'}{N} + \frac{32\log(4|\Pi|/\delta)}{n},

    for any N, N′ ≥ 1 (traced through the v2 proof, one factor 4 restored). Advisory:
    violation frequency over seeds ≤ δ.

    Reference: arXiv 2510.15020 v2, Thm 6.3, App. J.1 (ICLR: Thm 6.2); [project] explicit
    constants.

    Arguments:
        min_cov_Nprime: min_π Cov_{N′}(π) ∈ [0, 1].
        N: N ≥ 1.
        N_prime: N′ ≥ 1.
        num_candidates: |Π| ≥ 1.
        n: held-out sample size, n ≥ 1.
        delta: δ ∈ (0, 1).

    Returns:
        The bound on Cov_{N·N′}(π̂).
    """
    f = "simple_tournament_explicit"
    _unit(f, "min_cov_Nprime", min_cov_Nprime)
    _ge1(f, "N", N)
    _ge1(f, "N_prime", N_prime)
    _ge1(f, "num_candidates", num_candidates)
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    stat = (jnp.log(4 * _f(num_candidates)) + _log_inv(delta)) / _f(n)
    return 5 * _f(min_cov_Nprime) + _div(4 * _f(N_prime), N) + 32 * stat


def simple_tournament_rate(min_cov_Na, N, a, num_candidates, n, delta, c=1.0):
    r"""Simple tournament (rate, w.p. ≥ 1−δ), bound on Cov_{N^{1+a}}(π̂).

    .. math:: \mathrm{Cov}_{N^{1+a}}(\hat\pi) \lesssim \min_{\pi\in\Pi}\mathrm{Cov}_{N^a}(\pi)
       + N^{a-1} + \frac{\log(|\Pi|/\delta)}{n}, \quad a\in[0,1].

    Reference: arXiv 2510.15020 v2, Thm 6.3, Eq. 29 (ICLR: Thm 6.2, Eq. 14).

    Arguments:
        min_cov_Na: min_π Cov_{N^a}(π) ∈ [0, 1].
        N: N ≥ 1.
        a: a ∈ [0, 1].
        num_candidates: |Π| ≥ 1.
        n: n ≥ 1.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "simple_tournament_rate"
    _unit(f, "min_cov_Na", min_cov_Na)
    _ge1(f, "N", N)
    _unit(f, "a", a)
    stat = _stat_term(f, num_candidates, n, delta)
    return c * (_f(min_cov_Na) + _f(N) ** (_f(a) - 1) + stat)


def simple_tournament_cover_rate(min_cov_Na, N, a, b, log_cover, n, delta, c=1.0):
    r"""Simple tournament on infinite classes (rate), bound on Cov_{N^{1+a+2b}}(π̂).

    .. math:: \mathrm{Cov}_{N^{1+a+2b}}(\hat\pi) \lesssim \min_\pi\mathrm{Cov}_{N^a}(\pi)
       + N^{-(1-a-2b)} + \frac{\log N_\infty(\Pi, b\log N) + \log(1/\delta)}{n},

    b ≥ 0 (written c in the paper). Coarse term only.

    Reference: arXiv 2510.15020 v2, Eq. 31 (ICLR: Thm 6.2′).

    Arguments:
        min_cov_Na: min_π Cov_{N^a}(π) ∈ [0, 1].
        N: N ≥ 1.
        a: a ∈ [0, 1].
        b: b ≥ 0.
        log_cover: log N_∞(Π, b log N) ≥ 0.
        n: n ≥ 1.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "simple_tournament_cover_rate"
    _unit(f, "min_cov_Na", min_cov_Na)
    _ge1(f, "N", N)
    _unit(f, "a", a)
    _nonneg(f, "b", b)
    _nonneg(f, "log_cover", log_cover)
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    stat = (_f(log_cover) + _log_inv(delta)) / _f(n)
    return c * (_f(min_cov_Na) + _f(N) ** (_f(a) + 2 * _f(b) - 1) + stat)


def offset_tournament_condition(N, a):
    r"""Condition of the offset tournament (Thm 6.4): a > 0 and N^{1−2a} ≥ 8.

    The ICLR version prints N^{1−2a} ≥ 4, but its general theorem needs N ≥ 8γ² with
    γ = N^a, i.e. N^{1−2a} ≥ 8; covsim uses 8.

    Reference: arXiv 2510.15020 v2, Thm 6.4 (ICLR: Thm G.3).

    Arguments:
        N: N ≥ 1.
        a: a > 0.

    Returns:
        Boolean array.
    """
    f = "offset_tournament_condition"
    _ge1(f, "N", N)
    _pos(f, "a", a)
    return (1 - 2 * _f(a)) * jnp.log(_f(N)) >= math.log(8.0)


def offset_tournament_rate(num_candidates, n, delta, c=1.0):
    r"""Offset tournament (rate, w.p. ≥ 1−δ): Cov_{2N^{1+a}}(π̂) ≲ log(|Π|/δ)/n.

    Under :func:`offset_tournament_condition` and some π ∈ Π with
    sup|log π_D − log π| ≤ a log N. No N^{a−1} floor.

    Reference: arXiv 2510.15020 v2, Thm 6.4, Eq. 32 (ICLR: Thm G.3, Eq. 39).

    Arguments:
        num_candidates: |Π| ≥ 1.
        n: n ≥ 1.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        ``c * log(num_candidates / delta) / n``.
    """
    return c * _stat_term("offset_tournament_rate", num_candidates, n, delta)


def offset_tournament_cover_rate(log_cover, n, delta, c=1.0):
    r"""Offset tournament with a cover (rate): Cov_{2N^{1+2a}} ≲ (log N_∞(Π, a log N) + log(1/δ))/n.

    Reference: arXiv 2510.15020 v2, Thm 6.4 (ICLR: Thm G.3).

    Arguments:
        log_cover: log N_∞(Π, a log N) ≥ 0.
        n: n ≥ 1.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "offset_tournament_cover_rate"
    _nonneg(f, "log_cover", log_cover)
    _ge1(f, "n", n)
    _open_unit(f, "delta", delta)
    return c * (_f(log_cover) + _log_inv(delta)) / _f(n)


def offset_tournament_general_condition(N, gamma):
    r"""Condition of the general offset tournament (Thm 6.4′): N, γ ≥ 1 and N ≥ 8γ².

    Reference: arXiv 2510.15020 v2, Thm 6.4′ (ICLR: Thm G.3′).

    Arguments:
        N: N ≥ 1.
        gamma: γ ≥ 1.

    Returns:
        Boolean array.
    """
    f = "offset_tournament_general_condition"
    _ge1(f, "N", N)
    _ge1(f, "gamma", gamma)
    return _f(N) >= 8 * _f(gamma) ** 2


def offset_tournament_general_rate(min_e_gamma, num_candidates, n, delta, c=1.0):
    r"""General offset tournament (rate): Cov_{2Nγ}(π̂) ≲ min_π E_γ(π_D‖π) + log(|Π|/δ)/n.

    E_γ(P‖Q) := E_x max{Σ_y (Q − γP)_+, Σ_y (P − γQ)_+} ∈ [0, 1]. [correction] The proof's
    step Cov_{2γ}(π_D‖π) ≤ E_γ holds only up to a factor 2 (EXACT: Cov_{2γ} ≤ 2E_γ, cf.
    :func:`coverage_from_hockey_stick`); irrelevant for the rate.

    Reference: arXiv 2510.15020 v2, Thm 6.4′ (ICLR: Thm G.3′).

    Arguments:
        min_e_gamma: min_π E_γ(π_D‖π) ∈ [0, 1].
        num_candidates: |Π| ≥ 1.
        n: n ≥ 1.
        delta: δ ∈ (0, 1).
        c: the unspecified absolute constant.

    Returns:
        The rate's value.
    """
    f = "offset_tournament_general_rate"
    _unit(f, "min_e_gamma", min_e_gamma)
    return c * (_f(min_e_gamma) + _stat_term(f, num_candidates, n, delta))
