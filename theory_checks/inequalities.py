r"""Every exact inequality of THEORY.md §2–§4, on random laws and on adversarially searched ones.

Claim: the EXACT relations between coverage, KL, Hellinger, stopped KL, χ², the
hockey-stick divergence and Best-of-N regret hold on every pair (or triple) of laws,
to floating-point tolerance (arXiv 2510.15020 v2, Props. D.1–D.7, D.10, D.11, Eq. 95;
THEORY.md §2–§4), and each is *nearly tight*: some instance reaches at least 0.9 of it.

Instances.

- *Random* cells draw laws ``π_D`` (reference), ``π̂`` (a perturbation of π_D with its own
  zero entries) and ``π_T`` (a comparator), varying P, V, H, the logit temperature (high
  temperatures give near-deterministic laws), the perturbation size and the fraction of
  ``-inf`` logits; tiny laws are enumerated exactly. *Medium* cells (H = 16–64) use the
  exact KL/Hellinger recursions against covsim's rigorous coverage bracket, counting a
  violation only when the bracket's *lower* end exceeds the bound. A *Bernoulli* cell
  draws the tightness pair Ber(p) ‖ Ber(p/N) of Prop. D.2.
- *Adversarial* cells (one per inequality) run :func:`covsim.testing.adversarial_search`:
  from random restarts (temperatures 0.5–20, some ``-inf`` masks) it maximizes
  actual/bound (bound/actual for lower bounds) over the logits of π_D, π̂, π_T, the prompt
  law, the success set of the Best-of-N reward and, for Prop. D.2, (p, N). Laws are
  P = 2 prompts, H = 4, V = 2 (32 responses per prompt, enumerated exactly); N grids as
  below. Each seed is one search with ``restarts`` restarts of ``steps`` steps.

Rules (declared before any run), for each inequality NAME:

- ``NAME`` (zero_violations): no violation (actual beyond the bound by more than
  1e-9·(1 + |bound|)) on any random instance or any adversarial search's best instance;
  the bound values at the tightest instances are the vacuity gate's evidence (coverage
  bounds only; they must go below 1 somewhere);
- ``NAME_tight`` (floor 0.9): the largest actual/bound the adversarial search reaches
  (an exact number from a deterministic search, ``Evidence.exact_value``).

plus ``bracket_order`` (the bracket's lower end ≤ its upper end) and ``tie_convention``
(Cov_N(Ber(p)‖Ber(p/N)) = p: the designed tie is counted).

Ratios: actual/(bound + 1e-9·(1 + |bound|)) (so a ratio > 1 is exactly a violation and
rounding-level instances earn nothing); for coverage upper bounds only entries where the
bound is < 1 count (a bound >= 1 can be neither violated nor shown tight).

Finding (an honest *fails*): the stopped-KL bound of Prop. D.10,
Cov_N ≤ 2·D_seq,N/(log N − 1), is not approached within 0.9 where it bites: the search
stalls near 1/2 (0.53 at --quick, Cov_N = 0.39 against a bound of 0.75; the exact best
ratio is in `summary.json`, rule ``stopped_kl_tight``). On
the tight KL pair Ber(p) ‖ Ber(p/N), D_seq,N = KL ≈ p(log N − 1 + 1/N), so the ratio is
(log N − 1)/(2(log N − 1 + 1/N)) < ½; a prompt (or path) where π̂ is hopeless costs
min(log N, Σ ε) = log N per unit of coverage: ratio (log N − 1)/(2 log N) < ½ again. The
factor 2 of the proof looks like slack. (Where the bound is vacuous, Cov_N ≈ 1 against a
bound ≈ 1.64, longer laws reach ≈ 0.61; that region is excluded.) The inequality itself
is never violated.

Control: the same cells with every bound tightened by 10% (an upper bound multiplied by
0.9, a lower bound divided by 0.9): wherever the search reaches a ratio above 0.9 the
tightened bound is violated, so the zero-violation rules fail.

Sizes: tiny (tests) runs one random shape, the Bernoulli cell and the 16 searches with 8
seeds × 4 restarts × 60 steps; quick adds shapes, a medium cell and longer searches (8
restarts × 150 steps); only --full reaches H = 64 medium laws, 512 random seeds and
searches of 32 restarts × 400 steps.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim import bounds
from covsim.exact import TIE_TOLERANCE, enumerate_sequences, per_step_hellinger2
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.testing import adversarial_search, ratio as tight_ratio
from covsim.experiments.sharding import shard_seeds

RTOL = 1e-9  # relative floating-point tolerance for a violation
FLOOR = 0.9  # every bound must be approached to within 10% by the search
TIGHTEN = 0.9  # the control multiplies upper bounds by this (divides lower bounds)

N_GRID = jnp.array([1.5, 2.0, 4.0, 16.0, 256.0])
N_BIG = jnp.array([4.0, 16.0, 256.0])  # N > e
PC_N = jnp.array([1.0, 2.0, 4.0])
PC_DELTA = jnp.array([0.05, 0.1, 0.3])
CHAIN_M1 = jnp.array([4.0, 16.0])
CHAIN_M2 = jnp.array([2.0, 4.0])
BON_N = jnp.array([1.0, 4.0, 16.0])
BON_M = jnp.array([1.0, 2.0, 8.0])
WIDTH = 9  # every inequality's (num, den) is padded to this many entries

UPPER = "upper"  # actual <= bound
LOWER = "lower"  # actual >= bound

# name -> (direction, THEORY.md section, paper reference, statement)
INEQUALITIES = {
    "kl_full": (UPPER, "3.1", "v2 Prop. D.1", "Cov_N <= KL/(log N - 1 + 1/N)"),
    "kl_simplified": (UPPER, "3.1", "v2 Prop. 3.1", "Cov_N <= KL/log(N/e), N >= e"),
    "hellinger": (UPPER, "3.4", "v2 Prop. D.4", "Cov_N <= 2N/(sqrt N - 1)^2 * D_H^2"),
    "stopped_kl": (UPPER, "3.6", "v2 Prop. D.10", "Cov_N <= 2 D_seq,N/(log N - 1), N > e"),
    "partial_converse": (LOWER, "3.7", "v2 Prop. D.11", "Cov_N >= P[sum_h D_H^2 >= log(N/delta)] - delta"),
    "weak_converse": (UPPER, "3.3", "v2 Prop. D.3", "KL <= C(1 + log(log W_max/C))"),
    "chain_rule": (UPPER, "3.5", "v2 Prop. D.5", "Cov_M1(T||hat) <= M2 Cov_{M1/M2}(D||hat) + Cov_M2(T||D)"),
    "triangle": (UPPER, "2", "v2 Eq. 95", "Cov^rho_{N1N2}(T||hat) <= Cov^rho_N1(T||D) + Cov^rho_N2(D||hat)"),
    "chi2": (UPPER, "2", "v2 App. A", "Cov_N <= (1 + chi^2)/N"),
    "markov_p2": (UPPER, "2", "v2 App. A", "Cov_N <= E[(p/q)^2]/N^2"),
    "reverse_ratio": (UPPER, "2", "THEORY §2", "P_D[q/p_D >= A] <= 1/A"),
    "hockey_lower": (LOWER, "2", "THEORY §2", "E_N <= Cov_N"),
    "hockey_upper": (UPPER, "2", "THEORY §2", "Cov_2N <= 2 E_N"),
    "bon_sufficiency": (UPPER, "4.1", "v2 Prop. D.6 (binary form)", "regret <= Cov_M(T||hat) + e^{-N/M}"),
    "bon_necessity": (LOWER, "4.2", "v2 Prop. D.7", "regret >= Cov_2N(T||hat)/2 on S = {ratio >= 2N}"),
    "tightness_pair": (LOWER, "3.2", "v2 Prop. D.2", "Cov_N = p >= KL/(log N - 1/2 + 1/(2N))"),
}
NAMES = tuple(INEQUALITIES)
# coverage-type upper bounds: the vacuity gate applies (a bound >= 1 says nothing)
COVERAGE_UPPER = ("kl_full", "kl_simplified", "hellinger", "stopped_kl", "chain_rule", "triangle", "chi2",
                  "markov_p2", "reverse_ratio", "hockey_upper", "bon_sufficiency")


def _rules():
    rules = []
    for name, (direction, section, ref, statement) in INEQUALITIES.items():
        theory = f"THEORY §{section} ({ref}), EXACT: {statement}"
        rules.append(Rule(
            name, "zero_violations",
            f"{direction}-bound violations (beyond 1e-9 relative) of {statement}",
            None, regime="every random instance and every adversarial search's best instance",
            theory=theory, bound=statement if name in COVERAGE_UPPER else None))
        rules.append(Rule(
            f"{name}_tight", "floor",
            "largest " + ("actual/bound" if direction == UPPER else "bound/actual")
            + " reached by the adversarial search", FLOOR,
            regime=f"adversarial cells (inequality={name})",
            theory=f"{theory}; near-tight instances exist (ratio >= {FLOOR})"))
    rules.append(Rule("bracket_order", "zero_violations", "coverage bracket lower end > upper end", None,
                      regime="medium cells", theory="THEORY §0: the bracket brackets Cov_N"))
    rules.append(Rule("tie_convention", "cap", "max |Cov_N(Ber(p)||Ber(p/N)) - p|", 1e-9,
                      regime="bernoulli cells", theory="THEORY §0 and §3.2: the tie (ratio exactly N) counts"))
    return tuple(rules)


RULES = _rules()


# ---------------------------------------------------------------------------
# random laws


def _draw(key, P, H, V, temp, frac, pert, u0=None, rewards=True):
    """Random logits of π_D, π̂, π_T, prompt and reward logits, and (p, N) logits.

    π_D: normal logits times `temp` (high temperatures give near-deterministic laws) with
    a fraction `frac` of ``-inf`` entries (never a whole row: each row's largest entry
    stays); π̂ = π_D + `pert`·noise with its own ``-inf`` entries (π̂ = 0 < π_D happens);
    π_T = π_D + `pert`·noise on π_D's support. Two PRNG calls in all (they dominate the
    compile time on CPU); `u0(u)`, if given, maps the first uniforms to (temp, frac, pert).
    Reward draws (one per response) only with `rewards` (enumerable laws).
    """
    shape = (P, H, V + 1, V)
    size = math.prod(shape)
    R = V ** H if rewards else 1
    ku, kn = jax.random.split(key)
    u = jax.random.uniform(ku, (3 + 2 * size + P * R,))
    g = jax.random.normal(kn, (3 * size + P + P * R + 2,))
    if u0 is not None:
        temp, frac, pert = u0(u[:3])
    gd, gh, gt = (g[i * size:(i + 1) * size].reshape(shape) for i in range(3))
    ud, uh = (u[3 + i * size:3 + (i + 1) * size].reshape(shape) for i in range(2))
    keep = jnp.argmax(gd, axis=-1)[..., None] == jnp.arange(V)
    d = jnp.where((ud < frac) & ~keep, -jnp.inf, gd * temp)
    h = jnp.where((uh < frac) & ~keep, -jnp.inf, jnp.where(jnp.isneginf(d), 0.0, d) + gh * pert)
    t = jnp.where(jnp.isneginf(d), -jnp.inf, d + gt * pert)
    rest = g[3 * size:]
    return {"d": d, "h": h, "t": t, "mu": rest[:P], "r": rest[P:P + P * R].reshape(P, R),
            "bern": rest[-2:] * 2.0, "u_success": u[3 + 2 * size:].reshape(P, R)}


def _triple(z, H):
    d, h, t = (covsim.TabularModel(z[k], H) for k in ("d", "h", "t"))
    return d, h, t, jax.nn.softmax(z["mu"])


# ---------------------------------------------------------------------------
# every inequality as (num, den) with num <= den claimed


def _tail(weight, log_a, log_b, log_t):
    """Σ weight·1{log a − log b ≥ log t − τ}; b = 0 < a counts, a = 0 never."""
    ratio = jnp.where(jnp.isneginf(log_b), jnp.inf, log_a - jnp.where(jnp.isneginf(log_b), 0.0, log_b))
    hit = (ratio[..., None] >= log_t - TIE_TOLERANCE) & ~jnp.isneginf(log_a)[..., None]
    return jnp.einsum("xk,xkj->j", weight, hit.astype(weight.dtype))


def _sup_cov_log_n(weight, ld, lh):
    """C = sup_{N ≥ 1} Cov_N·log N, attained at N = e^Λ for an atom Λ > 0 of the log-ratio."""
    lam = jnp.where(jnp.isneginf(lh), jnp.inf, ld - jnp.where(jnp.isneginf(lh), 0.0, lh)).ravel()
    w = weight.ravel()
    lam = jnp.where(w > 0, lam, -jnp.inf)
    order = jnp.argsort(-lam)
    lam_sorted, w_sorted = lam[order], w[order]
    tail = jnp.cumsum(w_sorted)  # P[Λ ≥ λ_(i)] (ties: the last equal atom carries the full tail)
    finite = jnp.isfinite(lam_sorted) & (lam_sorted > 0)
    return jnp.max(jnp.where(finite, lam_sorted * tail, 0.0)), jnp.max(lam)


def _pair(name, actual, bound, tighten):
    """(num, den), flattened and padded to WIDTH, with num <= den claimed; `tighten` < 1 tightens.

    For coverage upper bounds, entries where the (tightened) bound is >= 1 are vacuous and
    get num = 0: they cannot be violated, and they are no evidence of tightness.
    """
    actual, bound = jnp.broadcast_arrays(jnp.asarray(actual, dtype=float), jnp.asarray(bound, dtype=float))
    actual, bound = actual.ravel(), bound.ravel()
    if INEQUALITIES[name][0] == UPPER:
        num, den = actual, bound * tighten
    else:
        num, den = bound / tighten, actual
    if name in COVERAGE_UPPER:
        # a coverage bound >= 1 says nothing: such entries can neither be violated (Cov <= 1)
        # nor show tightness (Cov = 1 against 1.6 is no evidence the bound is sharp)
        num = jnp.where(den < 1.0, num, 0.0)
    pad = WIDTH - num.shape[0]
    return jnp.concatenate([num, jnp.zeros(pad)]), jnp.concatenate([den, jnp.ones(pad)])


def _law_pairs(d, h, t, mu, success, tighten):
    """{name: (num, den)} for every inequality on the triple (π_D, π̂, π_T) but tightness_pair."""
    ld, lh, (hsum,) = enumerate_sequences(d, h, mu, (per_step_hellinger2(d, h),))
    _, lt, _ = enumerate_sequences(d, t, mu)
    w = mu[:, None] * jnp.exp(ld)
    kl = covsim.kl(d, h, mu)
    cov = _tail(w, ld, lh, jnp.log(N_GRID))
    cov_big = _tail(w, ld, lh, jnp.log(N_BIG))
    out = {}
    out["kl_full"] = cov, bounds.kl_to_coverage(kl, N_GRID)
    out["kl_simplified"] = cov_big, bounds.kl_to_coverage_simplified(kl, N_BIG)
    out["hellinger"] = cov, bounds.hellinger_to_coverage(covsim.hellinger2(d, h, mu), N_GRID)
    stopped = covsim.stopped_kl(d, h, mu, N_BIG)
    out["stopped_kl"] = cov_big, bounds.stopped_kl_to_coverage(stopped, N_BIG)
    # partial converse: Cov_N ≥ P[Σ_h D_H²(step) ≥ log(N/δ)] − δ
    thr = bounds.partial_converse_threshold(PC_N[:, None], PC_DELTA[None, :])
    hit = (hsum[..., None, None] >= thr - TIE_TOLERANCE).astype(w.dtype)
    prob = jnp.einsum("xk,xkij->ij", w, hit)
    cov_pc = _tail(w, ld, lh, jnp.log(PC_N))[:, None]
    out["partial_converse"] = cov_pc, bounds.partial_converse(prob, PC_DELTA[None, :])
    sup_c, log_wmax = _sup_cov_log_n(w, ld, lh)
    out["weak_converse"] = kl, jnp.where(
        sup_c > 0, bounds.weak_converse_kl(jnp.where(sup_c > 0, sup_c, 1.0), jnp.maximum(log_wmax, sup_c)), jnp.inf)
    # chain rule: Cov_{M1}(π_T‖π̂) ≤ M2·Cov_{M1/M2}(π_D‖π̂) + Cov_{M2}(π_T‖π_D), weights under π_T
    wt = mu[:, None] * jnp.exp(lt)
    m1, m2 = CHAIN_M1[:, None], CHAIN_M2[None, :]
    lhs = _tail(wt, lt, lh, jnp.log(m1 * jnp.ones_like(m2)).ravel()).reshape(2, 2)
    a = _tail(w, ld, lh, jnp.log(m1 / m2).ravel()).reshape(2, 2)
    b = _tail(wt, lt, ld, jnp.log(CHAIN_M2))[None, :]
    out["chain_rule"] = lhs, bounds.chain_rule(a, b, m2)
    # triangle rule with reference ρ = π_D: Cov^ρ_{N1N2}(π_T‖π̂) ≤ Cov^ρ_{N1}(π_T‖π_D) + Cov^ρ_{N2}(π_D‖π̂)
    n1, n2 = jnp.array([2.0, 4.0])[:, None], jnp.array([2.0, 8.0])[None, :]
    lhs = _tail(w, lt, lh, jnp.log(n1 * n2).ravel()).reshape(2, 2)
    ta = _tail(w, lt, ld, jnp.log(n1).ravel())[:, None]
    tb = _tail(w, ld, lh, jnp.log(n2).ravel())[None, :]
    out["triangle"] = lhs, bounds.triangle_rule(ta, tb)
    # χ² and the p = 2 Markov bound: E_p[(p/q)^k] by log-sum-exp over the enumeration
    log_ratio = jnp.where(jnp.isneginf(lh), jnp.inf, ld - jnp.where(jnp.isneginf(lh), 0.0, lh))
    log_w = jnp.log(jnp.where(w > 0, w, 1.0))
    moment = {k: jnp.exp(jax.nn.logsumexp(jnp.where(w > 0, log_w + k * log_ratio, -jnp.inf))) for k in (1, 2)}
    out["chi2"] = cov, bounds.chi2_coverage(jnp.maximum(moment[1] - 1.0, 0.0), N_GRID)
    out["markov_p2"] = cov, bounds.markov_coverage(moment[2], N_GRID, 2.0)
    # reverse direction: P_{π_D}[π̂/π_D ≥ A] ≤ 1/A
    A = jnp.array([1.5, 4.0, 16.0])
    out["reverse_ratio"] = _tail(w, lh, ld, jnp.log(A)), bounds.reverse_ratio_tail(A)
    # hockey stick E_N = E_x Σ_y (p − N q)_+ : E_N ≤ Cov_N and Cov_{2N} ≤ 2 E_N
    pd, ph = jnp.exp(ld), jnp.exp(lh)
    e_n = jnp.einsum("x,xkj->j", mu, jnp.maximum(pd[..., None] - N_GRID * ph[..., None], 0.0))
    out["hockey_lower"] = cov, e_n
    out["hockey_upper"] = _tail(w, ld, lh, jnp.log(2 * N_GRID)), bounds.coverage_from_hockey_stick(e_n)
    # Best-of-N with a binary success set S_x: regret ≤ Cov_M(π_T‖π̂) + e^{−N/M}
    pt = jnp.exp(lt)
    s_hat = jnp.sum(jnp.where(success, ph, 0.0), axis=1)
    s_t = jnp.sum(jnp.where(success, pt, 0.0), axis=1)
    regret = jnp.einsum("x,xn->n", mu, s_t[:, None] - covsim.pass_at_n(s_hat[:, None], BON_N[None, :]))
    cov_m = _tail(wt, lt, lh, jnp.log(BON_M))
    out["bon_sufficiency"] = regret[:, None], bounds.bon_sufficiency(cov_m[None, :], BON_N[:, None], BON_M[None, :])
    # necessity: S_x = {y : π_T/π̂ ≥ 2N} gives regret ≥ ½ Cov_{2N}(π_T‖π̂)
    ratio_th = jnp.where(jnp.isneginf(lh), jnp.inf, lt - jnp.where(jnp.isneginf(lh), 0.0, lh))
    nec = []
    for n in (1.0, 2.0, 4.0):
        s_set = (ratio_th >= math.log(2 * n) - TIE_TOLERANCE) & ~jnp.isneginf(lt)
        sh = jnp.sum(jnp.where(s_set, ph, 0.0), axis=1)
        st_ = jnp.sum(jnp.where(s_set, pt, 0.0), axis=1)
        nec.append(jnp.sum(mu * (st_ - covsim.pass_at_n(sh, n))))
    cov_2n = _tail(wt, lt, lh, jnp.log(jnp.array([2.0, 4.0, 8.0])))
    out["bon_necessity"] = jnp.stack(nec), bounds.bon_necessity(cov_2n)
    return {name: _pair(name, a, b, tighten) for name, (a, b) in out.items()}


def _bernoulli_pair(p, N, tighten):
    """Tightness pair Ber(p) vs Ber(p/N): KL/(log N − ½ + 1/(2N)) ≤ Cov_N = p; also the tie error."""
    truth = covsim.TabularModel(jnp.log(jnp.stack([1 - p, p]))[None, None, None], horizon=1)
    model = covsim.TabularModel(jnp.log(jnp.stack([1 - p / N, p / N]))[None, None, None], horizon=1)
    mu = jnp.ones(1)
    cov = covsim.coverage(truth, model, mu, N)
    kl = covsim.kl(truth, model, mu)
    return _pair("tightness_pair", cov, bounds.kl_tightness_lower(kl, N), tighten), jnp.abs(cov - p), cov, kl


def _summarize(num, den):
    """Violation flag (any entry), tightest ratio and the (actual, bound) there, from padded (num, den)."""
    scale = 1.0 + jnp.abs(jnp.where(jnp.isfinite(den), den, 0.0))
    viol = jnp.any(num > den + RTOL * scale).astype(jnp.float64)  # 1 if this instance violates
    r = tight_ratio(num, den, RTOL)
    i = jnp.argmax(r)
    return viol, r[i], num[i], den[i]


def _record(out, name, pair):
    num, den = pair
    viol, r, n, d = _summarize(num, den)
    out[f"viol_{name}"] = viol
    out[f"tight_{name}"] = r
    out[f"num_{name}"] = n
    out[f"den_{name}"] = d
    # the bound's value at the tightest entry (for the vacuity gate): den for upper bounds
    out[f"bound_{name}"] = d if INEQUALITIES[name][0] == UPPER else n


def _tiny_metrics(key, cell):
    z = _draw(key, cell["P"], cell["H"], cell["V"], cell["temperature"], cell["zero_frac"], cell["perturb"])
    d, h, t, mu = _triple(z, cell["H"])
    success = z["u_success"] < cell["success_frac"]
    out = {}
    for name, pair in _law_pairs(d, h, t, mu, success, cell["tighten"]).items():
        _record(out, name, pair)
    return out


def _medium_metrics(key, cell):
    """Longer laws: exact KL/Hellinger recursions against the coverage bracket."""
    z = _draw(key, cell["P"], cell["H"], cell["V"], cell["temperature"], cell["zero_frac"], cell["perturb"],
              rewards=False)
    d, h, _, mu = _triple(z, cell["H"])
    lo, hi = covsim.coverage(d, h, mu, N_GRID, method="bracket", bins=cell["bins"])
    kl = covsim.kl(d, h, mu)
    out = {}
    _record(out, "kl_full", _pair("kl_full", lo, bounds.kl_to_coverage(kl, N_GRID), cell["tighten"]))
    _record(out, "hellinger", _pair("hellinger", lo, bounds.hellinger_to_coverage(
        covsim.hellinger2(d, h, mu), N_GRID), cell["tighten"]))
    out["bracket_width"] = jnp.max(hi - lo)
    out["bracket_order_viol"] = jnp.sum(lo > hi + 1e-12).astype(jnp.float64)
    return out


def _bernoulli_metrics(key, cell):
    kp, kn = jax.random.split(key)
    p = jax.random.uniform(kp, minval=1e-4, maxval=0.5)
    N = jnp.exp(jax.random.uniform(kn, minval=math.log(2.0), maxval=math.log(1e6)))
    pair, err, _, _ = _bernoulli_pair(p, N, cell["tighten"])
    out = {}
    _record(out, "tightness_pair", pair)
    out["tie_counted_error"] = err
    return out


# ---------------------------------------------------------------------------
# adversarial search over instances


def _adv_init(key, P, H, V):
    """A search start: temperature log-uniform in [0.5, 20], ``-inf`` masks (20% of the
    entries) in 30% of the starts, perturbation size log-uniform in [0.01, 3]."""
    def params(u):
        return (jnp.exp(math.log(0.5) + math.log(40.0) * u[0]), jnp.where(u[1] < 0.3, 0.2, 0.0),
                jnp.exp(math.log(0.01) + math.log(300.0) * u[2]))
    z = _draw(key, P, H, V, 1.0, 0.0, 1.0, u0=params)
    del z["u_success"]
    return z


def _bern_params(z):
    p = 0.5 * jax.nn.sigmoid(z[0])
    log_n = math.log(2.0) + (math.log(1e6) - math.log(2.0)) * jax.nn.sigmoid(z[1])
    return p, jnp.exp(log_n)


def _adv_stack(z, H, tighten):
    """(num, den) of every inequality at instance z, stacked (len(NAMES), WIDTH)."""
    d, h, t, mu = _triple(z, H)
    pairs = _law_pairs(d, h, t, mu, z["r"] > 0, tighten)
    p, N = _bern_params(z["bern"])
    pairs["tightness_pair"] = _bernoulli_pair(p, N, tighten)[0]
    return jnp.stack([pairs[n][0] for n in NAMES]), jnp.stack([pairs[n][1] for n in NAMES])


@partial(jax.jit, static_argnames=("shape", "num_seeds", "restarts", "steps", "use_grad"))
def _adversarial(key, which, tighten, *, shape, num_seeds, restarts, steps, use_grad):
    P, H, V = shape

    def pair(z):
        nums, dens = _adv_stack(z, H, tighten)
        return nums[which], dens[which]

    res = adversarial_search(pair, None, lambda k: _adv_init(k, P, H, V), key=key,
                             steps=steps, restarts=num_seeds * restarts, use_grad=use_grad)
    viol, r, n, d = jax.vmap(_summarize)(res.restart_actual, res.restart_bound)
    group = lambda x: x.reshape(num_seeds, restarts)  # noqa: E731
    best = jnp.argmax(group(r), axis=1)
    pick = lambda x: jnp.take_along_axis(group(x), best[:, None], axis=1)[:, 0]  # noqa: E731
    return {"adv_ratio": pick(r), "adv_viol": jnp.sum(group(viol), axis=1), "adv_num": pick(n), "adv_den": pick(d),
            "adv_restart_ratio_median": jnp.median(group(r), axis=1)}


KINDS = {"tiny": _tiny_metrics, "medium": _medium_metrics, "bernoulli": _bernoulli_metrics}


# ---------------------------------------------------------------------------
# grid

ADV_SHAPE = (2, 4, 2)  # P, H, V of the searched laws
# size -> (restarts per seed, steps per restart)
SEARCH = {"tiny": (4, 60), "quick": (8, 150), "full": (32, 400)}
USE_GRAD = False  # a pure hill climb: reaches the same ratios here, compiles ~2x faster


def _cell(kind, P, H, V, *, temperature=0.0, zero_frac=0.0, perturb=0.0, success_frac=0.0, bins=0,
          inequality="", restarts=0, steps=0, variant="claim"):
    return dict(kind=kind, P=P, H=H, V=V, temperature=temperature, zero_frac=zero_frac, perturb=perturb,
                success_frac=success_frac, bins=bins, inequality=inequality, restarts=restarts, steps=steps,
                variant=variant)


def grid(size: str, variant: str = "claim") -> list[dict]:
    if size not in SEARCH:
        raise ValueError(f"size must be one of {sorted(SEARCH)}, got {size!r}")
    shapes = {"tiny": [(2, 3, 2)], "quick": [(1, 3, 2), (2, 3, 3), (3, 2, 4)],
              "full": [(1, 3, 2), (2, 3, 3), (3, 2, 4), (2, 6, 3), (1, 10, 2), (2, 4, 5)]}[size]
    values = [(3.0, 0.25, 1.0)] if size == "tiny" else [(1.0, 0.0, 0.3), (3.0, 0.25, 1.0), (8.0, 0.1, 0.1)]
    cells = [_cell("tiny", P, H, V, temperature=t, zero_frac=z, perturb=p, success_frac=0.3, variant=variant)
             for P, H, V in shapes for t, z, p in values]
    medium_shapes = {"tiny": [], "quick": [(2, 16, 3)], "full": [(2, 16, 3), (3, 24, 4), (1, 64, 8)]}[size]
    cells += [_cell("medium", P, H, V, temperature=t, zero_frac=0.1, perturb=p, bins=256 if size == "quick" else 1024,
                    variant=variant)
              for P, H, V in medium_shapes for t, p in [(1.0, 0.2), (4.0, 0.5)]]
    cells.append(_cell("bernoulli", 1, 1, 2, variant=variant))
    restarts, steps = SEARCH[size]
    P, H, V = ADV_SHAPE
    cells += [_cell("adversarial", P, H, V, inequality=name, restarts=restarts, steps=steps, variant=variant)
              for name in NAMES]
    return cells


def control_grid(size: str) -> list[dict]:
    return grid(size, variant="control")


SHAPE_KEYS = ("kind", "P", "H", "V", "bins")
VALUE_KEYS = ("temperature", "zero_frac", "perturb", "success_frac", "tighten")


@partial(jax.jit, static_argnames=("shape", "num_seeds"))
def _run_seeds(key, values, *, shape, num_seeds):
    """All seeds of one cell; compiled once per shape, the continuous parameters are traced."""
    cell = dict(zip(SHAPE_KEYS, shape)) | dict(zip(VALUE_KEYS, values))
    fn = KINDS[cell["kind"]]
    return jax.vmap(lambda k: fn(k, cell))(shard_seeds(jax.random.split(key, num_seeds)))


def _tighten(cell) -> float:
    if cell.get("variant", "claim") not in ("claim", "control"):
        raise ValueError(f"variant must be 'claim' or 'control', got {cell.get('variant')!r}")
    return TIGHTEN if cell.get("variant") == "control" else 1.0


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    tighten = jnp.asarray(_tighten(cell))
    if cell["kind"] == "adversarial":
        out = _adversarial(key, jnp.asarray(NAMES.index(cell["inequality"])), tighten,
                           shape=(cell["P"], cell["H"], cell["V"]), num_seeds=num_seeds,
                           restarts=int(cell["restarts"]), steps=int(cell["steps"]), use_grad=USE_GRAD)
    else:
        shape = tuple(cell[k] for k in SHAPE_KEYS)
        values = tuple(jnp.asarray(float(cell[k])) for k in VALUE_KEYS[:-1]) + (tighten,)
        out = _run_seeds(key, values, shape=shape, num_seeds=num_seeds)
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


# ---------------------------------------------------------------------------
# analysis


def _finite(x):
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def analyze(table, size: str) -> Analysis:
    evidence, observations, details = {}, [], {}
    adv_all = table.select(kind="adversarial")
    seeds_per_cell = len(table.unique("seed"))  # seeds per cell (every cell runs them all)
    for name, (direction, section, ref, _) in INEQUALITIES.items():
        rnd = table.column(f"viol_{name}", np.nan)
        rnd_ok = np.isfinite(rnd)
        adv = table.select(kind="adversarial", inequality=name)
        adv_viol = adv.column("adv_viol", np.nan) if len(adv) else np.zeros(0)
        violations = int(np.nansum(rnd)) + int(np.nansum(adv_viol))
        # instances checked: one per random row, `restarts` (best instances) per adversarial row
        checked = int(rnd_ok.sum()) + (int(np.sum(np.where(np.isfinite(adv_viol), adv.column("restarts"), 0)))
                                       if len(adv) else 0)
        # bound values where each instance is tightest (upper bounds: the bound; lower: the bound too)
        bvals = np.concatenate([_finite(table.column(f"bound_{name}", np.nan)),
                                _finite(adv.column("adv_den" if direction == UPPER else "adv_num", np.nan))
                                if len(adv) else np.zeros(0)])
        evidence[name] = Evidence.count(
            violations, checked, seeds=seeds_per_cell,
            bound_values=bvals.tolist() if name in COVERAGE_UPPER else None,
            details={"random_violations": int(np.nansum(rnd)), "adversarial_violations": int(np.nansum(adv_viol))})
        ratios = _finite(adv.column("adv_ratio", np.nan)) if len(adv) else np.zeros(0)
        tight_rnd = _finite(table.column(f"tight_{name}", np.nan))
        if ratios.size:
            best = int(np.argmax(ratios))
            evidence[f"{name}_tight"] = Evidence.exact_value(
                float(ratios[best]),
                details={"per_seed": ratios.tolist(), "random_max": float(tight_rnd.max()) if tight_rnd.size else None,
                         "at_best": {"num": float(adv.column("adv_num")[np.isfinite(adv.column("adv_ratio"))][best]),
                                     "den": float(adv.column("adv_den")[np.isfinite(adv.column("adv_ratio"))][best])}})
        else:
            evidence[f"{name}_tight"] = Evidence.invalid("no adversarial cell for this inequality", exact=True)
        details[name] = {
            "violations": violations, "checked": checked, "direction": direction, "theory": f"§{section} ({ref})",
            "adversarial_max_ratio": float(ratios.max()) if ratios.size else None,
            "adversarial_ratios": ratios.tolist(),
            "random_tightness_median": float(np.median(tight_rnd)) if tight_rnd.size else None,
            "random_tightness_max": float(tight_rnd.max()) if tight_rnd.size else None,
        }
        if tight_rnd.size:
            observations.append(Observation(f"random_max_ratio_{name}", float(tight_rnd.max()),
                                            "largest actual/bound on random laws (for information)"))
    medium = table.select(kind="medium")
    if len(medium):
        order = medium.column("bracket_order_viol", np.nan)
        evidence["bracket_order"] = Evidence.count(int(np.nansum(order)), int(np.isfinite(order).sum()),
                                                   seeds=seeds_per_cell)
        observations.append(Observation("bracket_width_median", float(np.nanmedian(medium.column("bracket_width"))),
                                         "median width of the coverage bracket on medium laws"))
    else:
        evidence["bracket_order"] = Evidence.invalid("no medium cell at this size", seeds=seeds_per_cell)
    bern = table.select(kind="bernoulli")
    if len(bern):
        evidence["tie_convention"] = Evidence.exact_value(float(np.nanmax(bern.column("tie_counted_error"))))
    details["adversarial_cells"] = len({r["inequality"] for r in adv_all})
    return Analysis(evidence=evidence, observations=observations, details=details)


def plot(table, summary, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in NAMES if n in summary.details]
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, name in enumerate(names):
        adv = summary.details[name].get("adversarial_ratios") or []
        rnd = _finite(table.column(f"tight_{name}", np.nan))
        if rnd.size:
            lo, hi = np.quantile(rnd, [1 / 16, 15 / 16])
            ax.plot([i - 0.2, i - 0.2], [lo, hi], color="tab:gray", lw=4, alpha=0.6,
                    label="random laws: 1/16–15/16 quantiles" if i == 0 else None)
            ax.plot(i - 0.2, rnd.max(), "v", color="tab:gray", label="random laws: max" if i == 0 else None)
        if adv:
            ax.plot(np.full(len(adv), i + 0.15), adv, "o", color="tab:blue", ms=3, alpha=0.7,
                    label="adversarial search: per seed" if i == 0 else None)
            ax.plot(i + 0.15, max(adv), "*", color="tab:red", ms=10, label="adversarial: max (rule)" if i == 0 else None)
    ax.axhline(FLOOR, color="tab:red", ls="--", lw=1, label=f"floor {FLOOR:g} (near-tight)")
    ax.axhline(1.0, color="black", lw=1, label="1 = violation above")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("actual / bound (bound / actual for lower bounds)")
    ax.set_ylim(0, 1.15)
    ax.set_title("Exact inequalities of THEORY §2–4: tightness reached (random vs adversarial)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3)
    path = out / "tightness.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [path]


CHECK = Check(
    name="inequalities",
    claim="Every exact inequality of THEORY.md §2-4 (KL/Hellinger/stopped-KL to coverage, partial and "
          "weak converses, chain and triangle rules, BoN sufficiency/necessity) holds on random and "
          "adversarially searched laws, and a search gets within 10% of each bound.",
    reference="arXiv 2510.15020 v2, Props. D.1-D.7, D.10, D.11, Eq. 95",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("every bound tightened by 10% (upper bounds x0.9, lower bounds /0.9): the searched "
                    "near-tight instances violate it, so the zero-violation rules fail", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 16, "full": 512},
)
