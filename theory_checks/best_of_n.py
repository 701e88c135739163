r"""Best-of-N regret is sandwiched by coverage (v2 Props. D.6–D.7), on random laws and checkpoints.

Claim (arXiv 2510.15020 v2, Props. D.6–D.7 (ICLR: F.6–F.7); THEORY.md §4.1–4.2), both EXACT:

- necessity: with the reward r = 1{π_T/π̂ ≥ 2N}, regret(BoN_N) ≥ ½·Cov_{2N}(π_T‖π̂);
- sufficiency, binary form [project]: for any binary reward, every N ≥ 1 and M > 0,
  regret(BoN_N) ≤ Cov_M(π_T‖π̂) + e^{−N/M}.

Two families, zero violations allowed (relative tolerance 1e-9):

1. random tiny laws (P = 2, H = 3, V = 3; π̂ with some zero entries, π_T a perturbation):
   exact enumeration through :func:`covsim.bon.bon_regret`, :func:`covsim.bon.necessity_regret`
   and :func:`covsim.coverage`, with a random success set and the necessity set;
2. the ``mode_tradeoff`` SGD checkpoints (CONSTRUCTIONS.md §11) as π̂, with the task reward
   (reproduce π_D's intended response) and two comparators π_T = π_D and π_T = the target's
   point mass (for which Cov_M = P_x[π̂(y⋆|x) ≤ 1/M], THEORY.md §2 form 4), plus the necessity
   reward for π_T = π_D. Exact per prompt: success probabilities by
   :func:`covsim.bon.success_probability`, coverage and necessity-set masses by the exact
   meet-in-the-middle convolution of ``theory_checks.mode_tradeoff``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim import bounds
from covsim.bon import bon_regret, necessity_regret, success_probability
from covsim.exact import independent_tail
from covsim.experiments.check import Check, Summary
from covsim.experiments.stats import zero_violation_assertion
from theory_checks import mode_tradeoff as mt

N_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
M_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
RTOL = 1e-9
TINY = dict(P=2, H=3, V=3)
SIZES = {"quick": dict(num_steps=5000, random_cells=3), "full": dict(num_steps=20000, random_cells=8)}


# ---------------------------------------------------------------------------
# random tiny laws


@jax.jit
def _tiny_seed(key, temperature, zero_frac, perturb):
    P, H, V = TINY["P"], TINY["H"], TINY["V"]
    shape = (P, H, V + 1, V)
    k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
    logits = jax.random.normal(k1, shape) * temperature
    drop = (jax.random.uniform(k2, shape) < zero_frac) & (jnp.arange(V) != jax.random.randint(k3, shape[:-1], 0, V)[..., None])
    model = covsim.TabularModel(jnp.where(drop, -jnp.inf, logits), H)
    comparator = covsim.TabularModel(logits + jax.random.normal(k4, shape) * perturb, H)
    mu = jax.random.dirichlet(k5, jnp.ones(P))
    mask = jax.random.uniform(k6, (P, V**H)) < 0.3
    n_grid, m_grid = jnp.asarray(N_GRID), jnp.asarray(M_GRID)
    regret = bon_regret(model, comparator, mu, mask, n_grid)  # (N,)
    cov_m = covsim.coverage(comparator, model, mu, m_grid)  # (M,)
    nec = jnp.stack([necessity_regret(model, comparator, mu, n) for n in N_GRID])
    cov_2n = covsim.coverage(comparator, model, mu, 2 * n_grid)
    return regret, cov_m, nec, cov_2n


def _violations(regret, cov_m, nec, cov_2n):
    """Violation counts and slack (concrete NumPy; bounds from covsim.bounds)."""
    n_grid, m_grid = np.asarray(N_GRID), np.asarray(M_GRID)
    suff = np.asarray(bounds.bon_sufficiency(cov_m[..., None, :], n_grid[:, None], m_grid[None, :]))  # (..., N, M)
    suff_viol = regret[..., :, None] > suff + RTOL * (1 + np.abs(suff))
    lower = np.asarray(bounds.bon_necessity(cov_2n))
    nec_viol = nec < lower - RTOL * (1 + np.abs(lower))
    with np.errstate(divide="ignore", invalid="ignore"):
        suff_ratio = np.where(suff > 0, regret[..., :, None] / suff, 0.0)
        nec_ratio = np.where(nec > 0, lower / nec, 0.0)
    axes_s = tuple(range(suff_viol.ndim - 2, suff_viol.ndim))
    axes_n = (nec_viol.ndim - 1,)
    return {"viol_sufficiency": suff_viol.sum(axis=axes_s).astype(float),
            "viol_necessity": nec_viol.sum(axis=axes_n).astype(float),
            "tight_sufficiency": np.max(suff_ratio, axis=axes_s),
            "tight_necessity": np.max(nec_ratio, axis=axes_n)}


def _random_cell(cell, key, num_seeds):
    keys = jax.random.split(key, num_seeds)
    regret, cov_m, nec, cov_2n = jax.vmap(lambda k: _tiny_seed(k, cell["temperature"], cell["zero_frac"],
                                                               cell["perturb"]))(keys)
    regret, cov_m, nec, cov_2n = (np.asarray(v, float) for v in (regret, cov_m, nec, cov_2n))
    out = _violations(regret, cov_m, nec, cov_2n)
    out.update(_plot_points(regret, cov_m, nec, cov_2n))
    return out


def _plot_points(regret, cov_m, nec, cov_2n):
    i4, i8, m4 = N_GRID.index(4.0), N_GRID.index(8.0), M_GRID.index(4.0)
    return {"nec_regret_N4": nec[..., i4], "cov_2N_N4": cov_2n[..., i4],
            "regret_N8": regret[..., i8], "cov_M4": cov_m[..., m4]}


# ---------------------------------------------------------------------------
# mode_tradeoff checkpoints


@jax.jit
def _checkpoint_quantities(thetas):
    inst = mt.instance()
    truth_lp = mt.position_tables(inst.features, inst.info["theta_star"])
    target = inst.info["target_y"]
    mu = inst.mu
    s_truth = success_probability(inst.truth, target)
    n_grid, m_grid = jnp.asarray(N_GRID), jnp.asarray(M_GRID)

    def one(theta):
        model_lp = mt.position_tables(inst.features, theta)
        s = success_probability(inst.model(theta), target)
        keep = (1 - s)[:, None] ** n_grid[None, :]  # (P, N)
        regret_d = jnp.sum(mu[:, None] * (s_truth[:, None] - 1 + keep), axis=0)
        regret_point = jnp.sum(mu[:, None] * keep, axis=0)
        cov_d = mt.coverage_positionwise(truth_lp, model_lp, mu, m_grid)
        cov_point = jnp.sum(mu[:, None] * (-jnp.log(s)[:, None] >= jnp.log(m_grid)[None, :] - covsim.exact.TIE_TOLERANCE), axis=0)
        ratio = truth_lp - model_lp
        mass_t = independent_tail(truth_lp, ratio, None, 2 * n_grid)  # (P, N): π_D(S_x)
        mass_hat = independent_tail(model_lp, ratio, None, 2 * n_grid)  # (P, N): π̂(S_x)
        nec = jnp.sum(mu[:, None] * (mass_t - 1 + (1 - mass_hat) ** n_grid[None, :]), axis=0)
        cov_2n = jnp.sum(mu[:, None] * mass_t, axis=0)
        return regret_d, cov_d, regret_point, cov_point, nec, cov_2n

    return jax.lax.map(one, thetas)


def _checkpoint_cell(cell, key, num_seeds):
    checkpoints = tuple(t for t in mt.SIZES["full"]["checkpoints"] if t <= cell["num_steps"])
    thetas = mt.trajectories(key, num_seeds, num_steps=cell["num_steps"], checkpoints=checkpoints)
    flat = thetas.reshape(-1, thetas.shape[-1])
    regret_d, cov_d, regret_p, cov_p, nec, cov_2n = (np.asarray(v, float).reshape(num_seeds, len(checkpoints), -1)
                                                     for v in _checkpoint_quantities(flat))
    out = {}
    both = _violations(np.concatenate([regret_d, regret_p], axis=1), np.concatenate([cov_d, cov_p], axis=1),
                       np.concatenate([nec, nec], axis=1), np.concatenate([cov_2n, cov_2n], axis=1))
    for name, value in both.items():  # sum / max over checkpoints and both comparators
        out[name] = value.sum(axis=1) if name.startswith("viol") else value.max(axis=1)
    out["viol_necessity"] = out["viol_necessity"] / 2  # the necessity pair was listed twice
    out["checks_sufficiency"] = np.full(num_seeds, 2.0 * len(checkpoints) * len(N_GRID) * len(M_GRID))
    out["checks_necessity"] = np.full(num_seeds, float(len(checkpoints) * len(N_GRID)))
    points = _plot_points(regret_d, cov_d, nec, cov_2n)
    for c, t in enumerate(checkpoints):
        for name, value in points.items():
            out[f"{name}@t{t}"] = value[:, c]
    return out


# ---------------------------------------------------------------------------
# the check


def grid(size: str) -> list[dict]:
    shapes = [(1.0, 0.0, 0.3), (3.0, 0.25, 1.0), (8.0, 0.1, 0.1), (2.0, 0.5, 2.0), (0.5, 0.0, 0.05),
              (5.0, 0.3, 0.5), (1.5, 0.1, 3.0), (10.0, 0.2, 0.2)][: SIZES[size]["random_cells"]]
    cells = [dict(kind="random", temperature=t, zero_frac=z, perturb=p, num_steps=0) for t, z, p in shapes]
    cells.append(dict(kind="checkpoints", temperature=0.0, zero_frac=0.0, perturb=0.0,
                      num_steps=SIZES[size]["num_steps"]))
    return cells


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    if cell["kind"] == "checkpoints":
        return _checkpoint_cell(cell, key, num_seeds)
    return _random_rows(cell, key, num_seeds)


RANDOM_PER_ROW = 16


def _random_rows(cell, key, num_seeds):
    """RANDOM_PER_ROW random triples per seed row: counts summed, slack maxed, one plot point."""
    raw = _random_cell(cell, key, num_seeds * RANDOM_PER_ROW)
    out = {}
    for name, value in raw.items():
        v = value.reshape(num_seeds, RANDOM_PER_ROW)
        out[name] = v.sum(1) if name.startswith("viol") else (v.max(1) if name.startswith("tight") else v[:, 0])
    out["checks_sufficiency"] = np.full(num_seeds, float(RANDOM_PER_ROW * len(N_GRID) * len(M_GRID)))
    out["checks_necessity"] = np.full(num_seeds, float(RANDOM_PER_ROW * len(N_GRID)))
    return out


def analyze(table, size: str) -> Summary:
    assertions, details = [], {}
    for kind, what in (("random", "random tiny laws"), ("checkpoints", "mode_tradeoff checkpoints")):
        sub = table.select(kind=kind)
        if not len(sub):
            continue
        for bound, ref in (("sufficiency", "v2 Prop. D.6, binary form (THEORY §4.1)"),
                           ("necessity", "v2 Prop. D.7 (THEORY §4.2)")):
            viol = int(np.sum(sub.column(f"viol_{bound}").astype(float)))
            checked = int(np.sum(sub.column(f"checks_{bound}").astype(float)))
            assertions.append(zero_violation_assertion(f"{bound}_{kind}", viol, checked, what=f"{ref} on {what}"))
            tight = sub.column(f"tight_{bound}").astype(float)
            details[f"{bound}_{kind}_max_tightness"] = float(np.nanmax(tight))
    return Summary(assertions, details)


def plot(table, summary, out):
    from matplotlib.figure import Figure

    from covsim.plotting import _save

    fig = Figure(figsize=(11.0, 4.3), layout="constrained")
    ax_n, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for kind, marker in (("random", "o"), ("checkpoints", "^")):
        sub = table.select(kind=kind)
        if not len(sub):
            continue
        cols = [c for c in sub.columns if c.startswith("cov_2N_N4")]
        xs = np.concatenate([sub.column(c).astype(float) for c in cols])
        ys = np.concatenate([sub.column(c.replace("cov_2N_N4", "nec_regret_N4")).astype(float) for c in cols])
        ax_n.scatter(xs, ys, s=12, marker=marker, alpha=0.6, label=kind)
        cols = [c for c in sub.columns if c.startswith("cov_M4")]
        xs = np.concatenate([sub.column(c).astype(float) for c in cols])
        ys = np.concatenate([sub.column(c.replace("cov_M4", "regret_N8")).astype(float) for c in cols])
        ax_s.scatter(xs, ys, s=12, marker=marker, alpha=0.6, label=kind)
    grid_x = np.linspace(0, 1, 50)
    ax_n.plot(grid_x, grid_x / 2, "k--", label="½·Cov_{2N} (Prop. D.7, exact)")
    ax_n.set(xlabel="Cov_8(π_T‖π̂)", ylabel="BoN_4 regret, reward 1{π_T/π̂ ≥ 8}",
             title="Necessity: regret ≥ ½·Cov_{2N}")
    ax_s.plot(grid_x, np.minimum(grid_x + math.exp(-8 / 4), 1.5), "k--", label="Cov_4 + e^{-N/M} (Prop. D.6, binary)")
    ax_s.set(xlabel="Cov_4(π_T‖π̂)", ylabel="BoN_8 regret (binary reward)", title="Sufficiency: regret ≤ Cov_M + e^{-N/M}")
    for ax in (ax_n, ax_s):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return [_save(fig, out / "regret_vs_cov.png")]


CHECK = Check(
    name="best_of_n",
    claim="Best-of-N regret lies between ½·Cov_{2N} (necessity reward) and Cov_M + e^{-N/M} (any binary "
          "reward) on random tiny laws and along the mode_tradeoff checkpoints: zero violations.",
    reference="arXiv 2510.15020 v2, Props. D.6-D.7 (ICLR: F.6-F.7)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 4, "full": 16},
)
