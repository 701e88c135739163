r"""Every exact inequality of THEORY.md §2–§4 on many random sequence laws.

Claim: the EXACT relations between coverage, KL, Hellinger, stopped KL, χ², the
hockey-stick divergence and Best-of-N regret hold on every pair (or triple) of laws,
to floating-point tolerance (arXiv 2510.15020 v2, Props. D.1–D.7, D.10, D.11, Eq. 95;
THEORY.md §2–§4).

Each cell draws random laws ``π_D`` (reference), ``π̂`` (model, a perturbation of π_D with
its own zero entries) and ``π_T`` (a comparator), varying P, V, H, the logit temperature,
the perturbation size and the fraction of ``-inf`` logits (near-deterministic laws come from
high temperatures). Tiny laws are enumerated exactly; medium laws (H up to 24) use the
exact recursions for KL and Hellinger and covsim's rigorous coverage bracket, counting a
violation only when the bracket's *lower* end exceeds the bound (a certain violation).
Every check reports its violation count (must be 0) and its tightest ratio
actual/bound (the slack distribution).
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
from covsim.experiments.check import Assertion, Check, Summary, Verdict
from covsim.experiments.stats import zero_violation_assertion

RTOL = 1e-9  # relative floating-point tolerance for a violation

N_GRID = jnp.array([1.5, 2.0, 4.0, 16.0, 256.0])
N_BIG = jnp.array([4.0, 16.0, 256.0])  # N > e
PC_N = jnp.array([1.0, 2.0, 4.0])
PC_DELTA = jnp.array([0.1, 0.3])
CHAIN_M1 = jnp.array([4.0, 16.0])
CHAIN_M2 = jnp.array([2.0, 4.0])
BON_N = jnp.array([1.0, 4.0, 16.0])
BON_M = jnp.array([1.0, 2.0, 8.0])

UPPER = "upper"  # actual <= bound
LOWER = "lower"  # actual >= bound

# name -> (direction, THEORY.md section, paper reference)
INEQUALITIES = {
    "kl_full": (UPPER, "3.1", "v2 Prop. D.1"),
    "kl_simplified": (UPPER, "3.1", "v2 Prop. 3.1"),
    "hellinger": (UPPER, "3.4", "v2 Prop. D.4"),
    "stopped_kl": (UPPER, "3.6", "v2 Prop. D.10"),
    "partial_converse": (LOWER, "3.7", "v2 Prop. D.11"),
    "weak_converse": (UPPER, "3.3", "v2 Prop. D.3"),
    "chain_rule": (UPPER, "3.5", "v2 Prop. D.5"),
    "triangle": (UPPER, "2", "v2 Eq. 95"),
    "chi2": (UPPER, "2", "v2 App. A"),
    "markov_p2": (UPPER, "2", "v2 App. A"),
    "reverse_ratio": (UPPER, "2", "THEORY §2"),
    "hockey_lower": (LOWER, "2", "THEORY §2"),
    "hockey_upper": (UPPER, "2", "THEORY §2"),
    "bon_sufficiency": (UPPER, "4.1", "v2 Prop. D.6 (binary form)"),
    "bon_necessity": (LOWER, "4.2", "v2 Prop. D.7"),
    "tightness_pair": (LOWER, "3.2", "v2 Prop. D.2"),
}


# ---------------------------------------------------------------------------
# random laws


def _random_logits(key, shape, temperature, zero_frac):
    k1, k2, k3 = jax.random.split(key, 3)
    logits = jax.random.normal(k1, shape) * temperature
    mask = jax.random.uniform(k2, shape) < zero_frac
    keep = jax.random.randint(k3, shape[:-1], 0, shape[-1])
    mask = mask & (jnp.arange(shape[-1]) != keep[..., None])
    return jnp.where(mask, -jnp.inf, logits)


def _random_triple(key, cell):
    P, H, V = cell["P"], cell["H"], cell["V"]
    shape = (P, H, V + 1, V)
    kd, kh, kt, kn1, kn2, kmu = jax.random.split(key, 6)
    temp, frac, pert = cell["temperature"], cell["zero_frac"], cell["perturb"]
    d_logits = _random_logits(kd, shape, temp, frac)
    h_noise = jax.random.normal(kn1, shape) * pert
    h_zero = _random_logits(kh, shape, 1.0, frac)
    h_logits = jnp.where(jnp.isneginf(h_zero), -jnp.inf, jnp.where(jnp.isneginf(d_logits), 0.0, d_logits) + h_noise)
    t_logits = jnp.where(jnp.isneginf(d_logits), -jnp.inf, d_logits) + jax.random.normal(kn2, shape) * pert
    _ = kt
    mu = jax.random.dirichlet(kmu, jnp.ones(P))
    return (covsim.TabularModel(d_logits, H), covsim.TabularModel(h_logits, H),
            covsim.TabularModel(t_logits, H), mu)


# ---------------------------------------------------------------------------
# enumerated quantities


def _tail(weight, log_a, log_b, log_t):
    """Σ weight·1{log a − log b ≥ log t − τ}; b = 0 < a counts, a = 0 never."""
    ratio = jnp.where(jnp.isneginf(log_b), jnp.inf, log_a - jnp.where(jnp.isneginf(log_b), 0.0, log_b))
    hit = (ratio[..., None] >= log_t - TIE_TOLERANCE) & ~jnp.isneginf(log_a)[..., None]
    return jnp.einsum("xk,xkj->j", weight, hit.astype(weight.dtype))


def _enumerate_all(d, h, t, mu):
    ld, lh, (hsum,) = enumerate_sequences(d, h, mu, (per_step_hellinger2(d, h),))
    _, lt, _ = enumerate_sequences(d, t, mu)
    return ld, lh, lt, hsum


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


def _rel_violation(actual, bound, direction):
    scale = 1.0 + jnp.abs(jnp.where(jnp.isfinite(bound), bound, 0.0))
    if direction == UPPER:
        return actual > bound + RTOL * scale
    return actual < bound - RTOL * scale


def _tightness(actual, bound, direction):
    """actual/bound for upper bounds, bound/actual for lower bounds (1 = tight), in [0, 1]."""
    num, den = (actual, bound) if direction == UPPER else (bound, actual)
    ratio = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.where(num > 0, jnp.inf, 0.0))
    return jnp.where(jnp.isfinite(ratio), ratio, jnp.where(jnp.isposinf(bound), 0.0, ratio))


def _record(out, name, actual, bound):
    direction = INEQUALITIES[name][0]
    actual, bound = jnp.broadcast_arrays(jnp.asarray(actual), jnp.asarray(bound))
    viol = _rel_violation(actual, bound, direction)
    tight = _tightness(actual, bound, direction)
    i = jnp.argmax(jnp.where(jnp.isnan(tight), -1.0, tight).ravel())
    out[f"viol_{name}"] = jnp.sum(viol).astype(jnp.float64)
    out[f"tight_{name}"] = tight.ravel()[i]
    out[f"actual_{name}"] = actual.ravel()[i]
    out[f"bound_{name}"] = bound.ravel()[i]


def _tiny_metrics(key, cell):
    d, h, t, mu = _random_triple(key, cell)
    ld, lh, lt, hsum = _enumerate_all(d, h, t, mu)
    w = mu[:, None] * jnp.exp(ld)
    logN = jnp.log(N_GRID)
    cov = _tail(w, ld, lh, logN)
    kl = covsim.kl(d, h, mu)
    out = {}
    _record(out, "kl_full", cov, bounds.kl_to_coverage(kl, N_GRID))
    cov_big = _tail(w, ld, lh, jnp.log(N_BIG))
    _record(out, "kl_simplified", cov_big, bounds.kl_to_coverage_simplified(kl, N_BIG))
    _record(out, "hellinger", cov, bounds.hellinger_to_coverage(covsim.hellinger2(d, h, mu), N_GRID))
    stopped = covsim.stopped_kl(d, h, mu, N_BIG)
    _record(out, "stopped_kl", cov_big, bounds.stopped_kl_to_coverage(stopped, N_BIG))
    # partial converse: Cov_N ≥ P[Σ_h D_H²(step) ≥ log(N/δ)] − δ
    thr = bounds.partial_converse_threshold(PC_N[:, None], PC_DELTA[None, :])
    hit = (hsum[..., None, None] >= thr - TIE_TOLERANCE).astype(w.dtype)
    prob = jnp.einsum("xk,xkij->ij", w, hit)
    cov_pc = _tail(w, ld, lh, jnp.log(PC_N))[:, None]
    _record(out, "partial_converse", cov_pc, bounds.partial_converse(prob, PC_DELTA[None, :]))
    sup_c, log_wmax = _sup_cov_log_n(w, ld, lh)
    weak = jnp.where(sup_c > 0, bounds.weak_converse_kl(jnp.where(sup_c > 0, sup_c, 1.0), log_wmax), jnp.inf)
    _record(out, "weak_converse", kl, weak)
    # chain rule: Cov_{M1}(π_T‖π̂) ≤ M2·Cov_{M1/M2}(π_D‖π̂) + Cov_{M2}(π_T‖π_D), weights under π_T
    wt = mu[:, None] * jnp.exp(lt)
    m1, m2 = CHAIN_M1[:, None], CHAIN_M2[None, :]
    lhs = _tail(wt, lt, lh, jnp.log(m1 * jnp.ones_like(m2)).ravel()).reshape(2, 2)
    a = _tail(w, ld, lh, jnp.log(m1 / m2).ravel()).reshape(2, 2)
    b = _tail(wt, lt, ld, jnp.log(CHAIN_M2))[None, :]
    _record(out, "chain_rule", lhs, bounds.chain_rule(a, b, m2))
    # triangle rule with reference ρ = π_D: Cov^ρ_{N1N2}(π_T‖π̂) ≤ Cov^ρ_{N1}(π_T‖π_D) + Cov^ρ_{N2}(π_D‖π̂)
    n1, n2 = jnp.array([2.0, 4.0])[:, None], jnp.array([2.0, 8.0])[None, :]
    lhs = _tail(w, lt, lh, jnp.log(n1 * n2).ravel()).reshape(2, 2)
    ta = _tail(w, lt, ld, jnp.log(n1).ravel())[:, None]
    tb = _tail(w, ld, lh, jnp.log(n2).ravel())[None, :]
    _record(out, "triangle", lhs, bounds.triangle_rule(ta, tb))
    # χ² and the p = 2 Markov bound: E_p[(p/q)^k] by log-sum-exp over the enumeration
    log_ratio = jnp.where(jnp.isneginf(lh), jnp.inf, ld - jnp.where(jnp.isneginf(lh), 0.0, lh))
    log_w = jnp.log(jnp.where(w > 0, w, 1.0))
    moment = {k: jnp.exp(jax.nn.logsumexp(jnp.where(w > 0, log_w + k * log_ratio, -jnp.inf))) for k in (1, 2)}
    _record(out, "chi2", cov, bounds.chi2_coverage(moment[1] - 1.0, N_GRID))
    _record(out, "markov_p2", cov, bounds.markov_coverage(moment[2], N_GRID, 2.0))
    # reverse direction: P_{π_D}[π̂/π_D ≥ A] ≤ 1/A
    A = jnp.array([1.5, 4.0, 16.0])
    _record(out, "reverse_ratio", _tail(w, lh, ld, jnp.log(A)), bounds.reverse_ratio_tail(A))
    # hockey stick E_N = E_x Σ_y (p − N q)_+ : E_N ≤ Cov_N and Cov_{2N} ≤ 2 E_N
    pd, ph = jnp.exp(ld), jnp.exp(lh)
    e_n = jnp.einsum("x,xkj->j", mu, jnp.maximum(pd[..., None] - N_GRID * ph[..., None], 0.0))
    _record(out, "hockey_lower", cov, e_n)
    _record(out, "hockey_upper", _tail(w, ld, lh, jnp.log(2 * N_GRID)), bounds.coverage_from_hockey_stick(e_n))
    # Best-of-N with a random binary success set S_x: regret ≤ Cov_M(π_T‖π̂) + e^{−N/M}
    kset = jax.random.fold_in(key, 7)
    success = jax.random.uniform(kset, ld.shape) < cell["success_frac"]
    pt = jnp.exp(lt)
    s_hat = jnp.sum(jnp.where(success, ph, 0.0), axis=1)
    s_t = jnp.sum(jnp.where(success, pt, 0.0), axis=1)
    regret = jnp.einsum("x,xn->n", mu, s_t[:, None] - covsim.pass_at_n(s_hat[:, None], BON_N[None, :]))
    cov_m = _tail(wt, lt, lh, jnp.log(BON_M))
    _record(out, "bon_sufficiency", regret[:, None], bounds.bon_sufficiency(cov_m[None, :], BON_N[:, None], BON_M[None, :]))
    # necessity: S_x = {y : π_T/π̂ ≥ 2N} gives regret ≥ ½ Cov_{2N}(π_T‖π̂)
    ratio_th = jnp.where(jnp.isneginf(lh), jnp.inf, lt - jnp.where(jnp.isneginf(lh), 0.0, lh))
    nec = []
    for n in (1.0, 2.0, 4.0):
        s_set = (ratio_th >= math.log(2 * n) - TIE_TOLERANCE) & ~jnp.isneginf(lt)
        sh = jnp.sum(jnp.where(s_set, ph, 0.0), axis=1)
        st_ = jnp.sum(jnp.where(s_set, pt, 0.0), axis=1)
        nec.append(jnp.sum(mu * (st_ - covsim.pass_at_n(sh, n))))
    cov_2n = _tail(wt, lt, lh, jnp.log(jnp.array([2.0, 4.0, 8.0])))
    _record(out, "bon_necessity", jnp.stack(nec), bounds.bon_necessity(cov_2n))
    return out


def _medium_metrics(key, cell):
    """Longer laws: exact KL/Hellinger recursions against the coverage bracket."""
    d, h, _, mu = _random_triple(key, cell)
    lo, hi = covsim.coverage(d, h, mu, N_GRID, method="bracket", bins=cell["bins"])
    kl = covsim.kl(d, h, mu)
    out = {}
    _record(out, "kl_full", lo, bounds.kl_to_coverage(kl, N_GRID))
    _record(out, "hellinger", lo, bounds.hellinger_to_coverage(covsim.hellinger2(d, h, mu), N_GRID))
    out["bracket_width"] = jnp.max(hi - lo)
    out["bracket_order_viol"] = jnp.sum(lo > hi + 1e-12).astype(jnp.float64)
    return out


def _bernoulli_metrics(key, cell):
    """Tightness pair Ber(p) vs Ber(p/N): KL/(log N − ½ + 1/(2N)) ≤ Cov_N = p ≤ KL/(log N − 1 + 1/N)."""
    kp, kn = jax.random.split(key)
    p = jax.random.uniform(kp, minval=1e-4, maxval=0.5)
    N = jnp.exp(jax.random.uniform(kn, minval=math.log(2.0), maxval=math.log(1e6)))
    truth = covsim.TabularModel(jnp.log(jnp.array([1 - p, p]))[None, None, None], horizon=1)
    model = covsim.TabularModel(jnp.log(jnp.array([1 - p / N, p / N]))[None, None, None], horizon=1)
    mu = jnp.ones(1)
    cov = covsim.coverage(truth, model, mu, N)
    kl = covsim.kl(truth, model, mu)
    out = {}
    _record(out, "tightness_pair", cov, bounds.kl_tightness_lower(kl, N))
    _record(out, "kl_full", cov, bounds.kl_to_coverage(kl, N))
    out["tie_counted_error"] = jnp.abs(cov - p)
    return out


KINDS = {"tiny": _tiny_metrics, "medium": _medium_metrics, "bernoulli": _bernoulli_metrics}


def grid(size: str) -> list[dict]:
    tiny = []
    shapes = [(1, 3, 2), (2, 3, 3), (3, 2, 4)] if size == "quick" else [(1, 3, 2), (2, 3, 3), (3, 2, 4), (2, 6, 3), (1, 10, 2), (2, 4, 5)]
    for P, H, V in shapes:
        for temperature, zero_frac, perturb in [(1.0, 0.0, 0.3), (3.0, 0.25, 1.0), (8.0, 0.1, 0.1)]:
            tiny.append(dict(kind="tiny", P=P, H=H, V=V, temperature=temperature, zero_frac=zero_frac,
                             perturb=perturb, success_frac=0.3, bins=0))
    medium_shapes = [(2, 16, 3)] if size == "quick" else [(2, 16, 3), (3, 24, 4), (1, 64, 8)]
    medium = [dict(kind="medium", P=P, H=H, V=V, temperature=temp, zero_frac=0.1, perturb=pert,
                   success_frac=0.0, bins=256 if size == "quick" else 1024)
              for P, H, V in medium_shapes for temp, pert in [(1.0, 0.2), (4.0, 0.5)]]
    bern = [dict(kind="bernoulli", P=1, H=1, V=2, temperature=0.0, zero_frac=0.0, perturb=0.0,
                 success_frac=0.0, bins=0)]
    return tiny + medium + bern


SHAPE_KEYS = ("kind", "P", "H", "V", "bins")
VALUE_KEYS = ("temperature", "zero_frac", "perturb", "success_frac")


@partial(jax.jit, static_argnames=("shape", "num_seeds"))
def _run_seeds(key, values, *, shape, num_seeds):
    """All seeds of one cell; compiled once per shape, the continuous parameters are traced."""
    cell = dict(zip(SHAPE_KEYS, shape)) | dict(zip(VALUE_KEYS, values))
    fn = KINDS[cell["kind"]]
    return jax.vmap(lambda k: fn(k, cell))(jax.random.split(key, num_seeds))


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    shape = tuple(cell[k] for k in SHAPE_KEYS)
    values = tuple(jnp.asarray(float(cell[k])) for k in VALUE_KEYS)
    out = _run_seeds(key, values, shape=shape, num_seeds=num_seeds)
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


def analyze(table, size: str) -> Summary:
    assertions = []
    details = {}
    for name, (direction, section, ref) in INEQUALITIES.items():
        col = f"viol_{name}"
        if col not in table.columns:
            continue
        viol = table.column(col, np.nan)
        checked = int(np.sum(np.isfinite(viol)))
        tight = table.column(f"tight_{name}", np.nan)
        tight = tight[np.isfinite(tight)]
        assertions.append(zero_violation_assertion(
            name, int(np.nansum(viol)), checked, what=f"THEORY §{section} ({ref}), {direction} bound"))
        details[name] = {
            "violations": int(np.nansum(viol)), "pairs": checked,
            "tightness_median": float(np.median(tight)) if tight.size else None,
            "tightness_max": float(np.max(tight)) if tight.size else None,
        }
    if "bracket_order_viol" in table.columns:
        order_viol = table.column("bracket_order_viol", np.nan)
        checked = int(np.sum(np.isfinite(order_viol)))
        assertions.append(zero_violation_assertion("bracket_order", int(np.nansum(order_viol)), checked,
                                                   what="coverage bracket lower <= upper"))
        details["bracket_width_median"] = float(np.nanmedian(table.column("bracket_width", np.nan)))
    if "tie_counted_error" in table.columns:
        err = float(np.nanmax(table.column("tie_counted_error", np.nan)))
        verdict = Verdict.HOLDS if err < 1e-9 else Verdict.FAILS
        assertions.append(Assertion("tie_convention", verdict,
                                    f"Cov_N(Ber(p)‖Ber(p/N)) = p up to {err:.1e} (ratio exactly N counted)",
                                    {"max_error": err}))
    return Summary(assertions, details)


def plot(table, summary, out):
    from covsim.plotting import scatter_figure

    xs, ys, labels = [], [], []
    for name in INEQUALITIES:
        if f"bound_{name}" not in table.columns:
            continue
        b, a = table.column(f"bound_{name}", np.nan), table.column(f"actual_{name}", np.nan)
        keep = np.isfinite(b) & np.isfinite(a) & (b > 0) & (a > 0)
        xs.append(b[keep])
        ys.append(a[keep])
        labels.append(np.full(int(keep.sum()), name))
    path = out / "actual_vs_bound.png"
    scatter_figure(path, np.concatenate(xs), np.concatenate(ys), xlabel="bound (at the tightest N)", ylabel="actual",
                   title="Exact inequalities: actual vs bound (upper bounds lie below y = x)",
                   labels=np.concatenate(labels))
    return [path]


CHECK = Check(
    name="inequalities",
    claim="Every exact inequality of THEORY.md §2-4 (KL/Hellinger/stopped-KL to coverage, partial and "
          "weak converses, chain and triangle rules, BoN sufficiency/necessity) holds on random laws.",
    reference="arXiv 2510.15020 v2, Props. D.1-D.7, D.10, D.11, Eq. 95",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 32, "full": 512},
)
