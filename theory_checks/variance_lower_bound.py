r"""σ⋆² is necessary: on the d = H construction E Cov_N of the MLE scales like H/(n log N).

Claim (arXiv 2510.15020 v2, Prop. I.1; ICLR: Prop. K.1; THEORY.md §5.7): there is an AR-linear
class with d = H, ‖ψ‖ ≤ B, Θ the unit ball and σ⋆² ≍ HB²·μ(+) on which every proper learner has

.. math:: E[\mathrm{Cov}_N(\hat\pi)] \gtrsim \min\Big\{1, \frac{H}{n\log N}\Big\}.

Instance: ``variance_lower_bound(n, H, N, B=8)`` (CONSTRUCTIONS §6): prompts {+, −} with
μ(+) = p = min{1, H/(4n log N)}; token h on prompt + is Ber(σ(Bθ⋆_h)), θ⋆ = ε·(random signs)
drawn afresh per seed. Pipeline per seed: ``covsim.sample`` (n_max samples, once) →
``covsim.fit_mle`` on the first n samples (0/1 weight mask) → ``covsim.coverage(method="bracket")``
(exact bounds; the features ignore the previous token). Before saturation
(n ≥ H/(4 log N)) the prediction is E Cov_N ∝ H/(n log N). A priori bands:

- slope of E Cov_N in H at fixed n in [0.7, 1.3];
- slope of E Cov_N in n at fixed H in [−1.3, −0.7].

Cross-check: CONSTRUCTIONS §6 reports E Cov_N ≈ 0.19·H/(n log N) (H ∈ [32, 512], n ∈ [200, 3200]);
the measured ratio E Cov_N/(H/(n log N)) is in the details.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import covsim
from covsim import bounds
from covsim.experiments.check import Assertion, Check, Summary, Verdict
from covsim.experiments.results import ResultTable
from covsim.experiments.stats import bracket_robust_assertion, loglog_slope, slope_assertion
from covsim.instances.statistical import variance_lower_bound

B = 8.0
BINS = 4096
H_BAND = (0.7, 1.3)
N_BAND = (-1.3, -0.7)
REPORTED_CONSTANT = 0.19  # CONSTRUCTIONS §6


def _anchors(size: str):
    if size == "quick":
        return dict(Hs=[16, 32, 64], ns=[100, 200, 400, 800], H0=32, n0=200, Ns=[16.0])
    return dict(Hs=[32, 64, 128, 256, 512], ns=[200, 400, 800, 1600, 3200], H0=64, n0=400, Ns=[16.0, 64.0])


def grid(size: str) -> list[dict]:
    a = _anchors(size)
    n_max = max(a["ns"])
    cells = {}
    for N in a["Ns"]:
        for n in a["ns"]:
            cells[(a["H0"], n, N)] = None
        for H in a["Hs"]:
            cells[(H, a["n0"], N)] = None
    return [dict(H=H, n=n, N=N, n_max=n_max) for (H, n, N) in cells]


def _fit_and_cover(key, features, eps, p, n, N, *, n_max):
    H = features.shape[1]
    k_truth, k_data = jax.random.split(key)
    theta_star = eps * jax.random.rademacher(k_truth, (H,), dtype=features.dtype)
    truth = covsim.LinearModel(features, theta_star, horizon=H)
    mu = jnp.stack([p, 1.0 - p])
    x, y = covsim.sample(truth, mu, n_max, key=k_data)
    mask = jnp.arange(n_max) < n
    fitted = covsim.fit_mle(covsim.LinearModel(features, jnp.zeros_like(theta_star)), x, y,
                            radius=1.0, weights=mask.astype(features.dtype))
    lo, hi = covsim.coverage(truth, fitted, mu, N, method="bracket", bins=BINS)
    plus_count = jnp.sum(mask & (x == 0)).astype(features.dtype)
    return lo, hi, plus_count, covsim.kl(truth, fitted, mu)


@partial(jax.jit, static_argnames=("n_max", "num_seeds"))
def _run_seeds(key, features, eps, p, n, N, *, n_max, num_seeds):
    """All seeds of one cell; compiled once per (H, n_max): n, N, ε and p are traced."""
    keys = jax.random.split(key, num_seeds)
    return jax.vmap(lambda k: _fit_and_cover(k, features, eps, p, n, N, n_max=n_max))(keys)


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    H, n, N = int(cell["H"]), int(cell["n"]), float(cell["N"])
    inst = variance_lower_bound(n, H, N, B=B, key=jax.random.PRNGKey(0))  # features, ε, p
    info = inst.info
    dtype = inst.features.dtype
    lo, hi, m, kl = _run_seeds(key, inst.features, jnp.asarray(info["epsilon"], dtype),
                               jnp.asarray(info["p"], dtype), jnp.asarray(n), jnp.asarray(N, dtype),
                               n_max=int(cell["n_max"]), num_seeds=num_seeds)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return {"cov": 0.5 * (lo + hi), "cov_halfwidth": 0.5 * (hi - lo), "plus_count": np.asarray(m, float),
            "kl": np.asarray(kl, float), "p": np.full(num_seeds, info["p"]),
            "sigma2": np.full(num_seeds, info["sigma2"]), "rate": np.full(num_seeds, info["rate"])}


def _bracket_end(table, end: str):
    if end == "mid":
        return table
    sign = -1.0 if end == "lower" else 1.0
    return ResultTable([dict(r, cov=max(float(r["cov"]) + sign * float(r["cov_halfwidth"]), 0.0))
                        for r in table.rows])


def _robust(name: str, table, judge) -> Assertion:
    """`judge` on the bracket midpoint, lower and upper ends; inconclusive if they disagree."""
    return bracket_robust_assertion(name, judge, lambda end: _bracket_end(table, end))


def _saturation_note(n_values, H_values, N) -> str | None:
    """Cells with n < H/(4 log N) are saturated (p = 1): the H/(n log N) law is not predicted there."""
    bad = [(H, n) for H in H_values for n in n_values if n < H / (4.0 * math.log(N))]
    return f"saturated cells (n < H/(4 log N)): {bad}" if bad else None


def analyze(table, size: str) -> Summary:
    a = _anchors(size)
    assertions, details = [], {}
    for N in table.unique("N"):
        tag = f"N{int(N)}"
        n_f = dict(H=a["H0"], N=N)
        H_f = dict(n=a["n0"], N=N)
        for name, x_name, filters, band, what in (
            (f"slope_in_H_{tag}", "H", H_f, H_BAND, f"E Cov_{int(N)} vs H at n={a['n0']}"),
            (f"slope_in_n_{tag}", "n", n_f, N_BAND, f"E Cov_{int(N)} vs n at H={a['H0']}"),
        ):
            xs = table.select(**filters).unique(x_name)
            sat = _saturation_note(xs if x_name == "n" else [a["n0"]], xs if x_name == "H" else [a["H0"]], N)

            def judge(t, x_name=x_name, filters=filters, band=band, what=what, name=name):
                x, _, _, per = t.group_mean(x_name, "cov", **filters)
                return slope_assertion(name, loglog_slope(x, per), *band, what=what)

            res = _robust(name, table, judge)
            if sat is not None and res.verdict != Verdict.INCONCLUSIVE:
                res = Assertion(name, Verdict.INCONCLUSIVE, f"{sat}; measured: {res.reason}", res.details)
            assertions.append(res)
            x, mean, _, per = table.group_mean(x_name, "cov", **filters)
            Hx = x if x_name == "H" else np.full(len(x), a["H0"], float)
            nx = x if x_name == "n" else np.full(len(x), a["n0"], float)
            rate = np.asarray(bounds.variance_lower_bound_rate(nx, N, Hx, 1.0))
            ratio = mean / rate
            details[name] = loglog_slope(x, per).to_dict() | {
                x_name: np.asarray(x).tolist(), "mean": mean.tolist(), "rate": rate.tolist(),
                "ratio_to_H_over_nlogN": ratio.tolist(), "c_fitted": float(np.exp(np.mean(np.log(ratio)))),
                "reported_constant": REPORTED_CONSTANT,
                "plus_count_mean": [float(np.mean(table.select(**filters, **{x_name: v}).column("plus_count")))
                                    for v in x]}
    return Summary(assertions, details)


def plot(table, summary, out_dir) -> list:
    import pathlib

    from covsim.plotting import Curve, loglog_figure, series_from_table

    out_dir = pathlib.Path(out_dir)
    paths = []
    for N in table.unique("N"):
        tag = f"N{int(N)}"
        for x_name, fixed in (("H", "n"), ("n", "H")):
            d = summary.details[f"slope_in_{x_name}_{tag}"]
            fixed_value = table.select(N=N).unique(fixed)
            filters = {"N": N}
            key_sel = f"slope_in_{x_name}_{tag}"
            x = np.asarray(d[x_name], float)
            others = {r[fixed] for r in table.select(N=N).rows if r[x_name] in d[x_name]}
            fv = [v for v in fixed_value if v in others and len(table.select(N=N, **{fixed: v}).unique(x_name)) == len(x)]
            filters[fixed] = fv[0]
            s = series_from_table(table, x_name, "cov", label=f"E Cov_{int(N)}", fit=d, **filters)
            c = d["c_fitted"]
            curves = [Curve(x, c * np.asarray(d["rate"]), label=f"c·min{{1, H/(n log N)}}, c = {c:.3g} fitted"),
                      Curve(x, REPORTED_CONSTANT * np.asarray(d["rate"]), label="0.19·H/(n log N) (CONSTRUCTIONS §6)")]
            paths.append(loglog_figure(out_dir / f"coverage_vs_{x_name}_{tag}.png", [s], xlabel=x_name,
                                       ylabel="E Cov_N", bounds=curves,
                                       title=f"MLE on variance_lower_bound ({fixed}={filters[fixed]}, N={N:g}); {key_sel}"))
    return paths


CHECK = Check(
    name="variance_lower_bound",
    claim="on the d = H construction the MLE's E Cov_N grows like H/(n log N): slope +1 in H, -1 in n",
    reference="arXiv 2510.15020 v2, Prop. I.1 (ICLR: Prop. K.1); THEORY.md §5.7; CONSTRUCTIONS §6",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    plot=plot,
    seeds={"quick": 32, "full": 256},
)
