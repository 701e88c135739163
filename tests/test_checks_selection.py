"""Selection / Best-of-N theory checks: tiny cells run and are sane; analyses can fail."""

import jax

jax.config.update("jax_enable_x64", True)

import itertools  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import covsim  # noqa: E402
from covsim.experiments.check import Verdict  # noqa: E402
from covsim.experiments.results import ResultTable  # noqa: E402
from theory_checks import best_of_n, mode_tradeoff, tournament  # noqa: E402

KEY = jax.random.PRNGKey(0)


def _finite(metrics, seeds):
    for name, value in metrics.items():
        assert value.shape == (seeds,), name
        assert np.all(np.isfinite(value)), name


# ---------------------------------------------------------------------------
# the exact per-position coverage used by three checks


def test_positionwise_tail_matches_enumeration():
    rng = np.random.default_rng(1)
    P, H, V = 2, 4, 3
    lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(P, H, V)) * 2), axis=-1)
    lq = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(P, H, V)) * 2), axis=-1)
    mu = jnp.asarray([0.3, 0.7])
    N = jnp.asarray([1.0, 2.0, 5.0, 30.0])
    mine = np.asarray(mode_tradeoff.coverage_positionwise(lp, lq, mu, N))
    p = covsim.TabularModel(lp[:, :, None, :], H)
    q = covsim.TabularModel(lq[:, :, None, :], H)
    ref = np.asarray(covsim.coverage(p, q, mu, N))
    np.testing.assert_allclose(mine, ref, atol=1e-12)
    # brute force with NumPy
    lpn, lqn = np.asarray(lp), np.asarray(lq)
    brute = np.zeros(N.shape)
    for x in range(P):
        for y in itertools.product(range(V), repeat=H):
            a = sum(lpn[x, h, y[h]] for h in range(H))
            b = sum(lqn[x, h, y[h]] for h in range(H))
            brute += float(mu[x]) * np.exp(a) * (a - b >= np.log(np.asarray(N)) - 1e-9)
    np.testing.assert_allclose(mine, brute, atol=1e-12)


def test_mode_tradeoff_coverage_inside_library_bracket():
    inst = mode_tradeoff.instance()
    theta = jnp.asarray([0.5, 0.2, 0.03])
    N = jnp.asarray([4.6, 16.0])
    exact = np.asarray(mode_tradeoff.checkpoint_metrics(theta[None])["cov"][0])
    lo, hi = covsim.coverage(inst.truth, inst.model(theta), inst.mu, N, method="bracket", bins=256)
    idx = [mode_tradeoff.COV_N.index(4.6), mode_tradeoff.COV_N.index(16.0)]
    assert np.all(np.asarray(lo) <= exact[idx] + 1e-12)
    assert np.all(exact[idx] <= np.asarray(hi) + 1e-12)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(3, 12)).astype(float)
    b = rng.normal(size=(3, 12))
    ours = mode_tradeoff.spearman(a, b)
    for i in range(3):
        assert ours[i] == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)


# ---------------------------------------------------------------------------
# tiny cells


def test_mode_tradeoff_cell_and_analysis_can_fail():
    metrics = mode_tradeoff.run_cell(dict(num_steps=30, kind="trajectory"), KEY, 2)
    _finite(metrics, 2)
    assert metrics["kl@t1"][0] == pytest.approx(metrics["kl@t1"][1])  # shared θ_1
    assert np.all(metrics["kl@t30"] < metrics["kl@t1"])
    for name, value in metrics.items():
        if name.startswith(("cov", "pass")):
            assert np.all((value >= -1e-12) & (value <= 1 + 1e-12)), name
    # synthetic: KL rising along the trajectory must fail
    steps = [1, 10, 100]
    rows = []
    for seed in range(3):
        row = {"num_steps": 100, "kind": "trajectory", "seed": seed}
        for c, t in enumerate(steps):
            row[f"kl@t{t}"] = 1.0 + c
            for lv in mode_tradeoff.COV_N:
                row[f"cov{lv:g}@t{t}"] = 0.5
            for lv in mode_tradeoff.PASS_N:
                row[f"pass{lv:g}@t{t}"] = 0.1 * (c + 1) + 0.01 * seed
        rows.append(row)
    summary = mode_tradeoff.analyze(ResultTable(rows), "quick")
    assert summary.verdict == Verdict.FAILS
    assert {a.name: a.verdict for a in summary.assertions}["kl_monotone"] == Verdict.FAILS


def test_tournament_cells_and_analysis_can_fail():
    metrics = tournament.run_cell(dict(kind="checkpoints", num_steps=30, n=tournament.HELDOUT), KEY, 2)
    _finite(metrics, 2)
    assert np.all(metrics["step_minkl"] == 30)  # KL falls along a short trajectory: min-KL = last
    rnd = tournament.run_cell(dict(kind="random", num_steps=0, n=256), KEY, 2)
    _finite(rnd, 2)
    assert np.all(rnd["violations"] <= rnd["classes"])
    rows = []
    for seed in range(4):
        row = {"kind": "checkpoints", "num_steps": 10, "n": 8, "seed": seed}
        for n_pass in tournament.PASS_N:
            for rule in [f"tour{lv:g}" for lv in tournament._levels()]:
                row[f"pass{n_pass:g}_{rule}"] = 0.5 + 0.001 * seed
            row[f"pass{n_pass:g}_minkl"] = 0.9
            row[f"pass{n_pass:g}_mince"] = 0.9
        for rule in [f"tour{lv:g}" for lv in tournament._levels()] + ["minkl", "mince"]:
            row[f"step_{rule}"] = 1.0
        rows.append(row)
    rows += [{"kind": "random", "num_steps": 0, "n": 8, "seed": s, "violations": 8.0, "classes": 8.0,
              "max_ratio": 2.0, "mean_cov_pick": 0.5, "mean_bound": 0.2} for s in range(4)]
    summary = tournament.analyze(ResultTable(rows), "quick")
    verdicts = {a.name: a.verdict for a in summary.assertions}
    assert verdicts["pass12_tour_vs_minkl"] == Verdict.FAILS
    assert verdicts["explicit_bound_frequency"] == Verdict.FAILS


def test_best_of_n_cells_and_analysis_can_fail():
    cell = dict(kind="random", temperature=3.0, zero_frac=0.25, perturb=1.0, num_steps=0)
    metrics = best_of_n.run_cell(cell, KEY, 2)
    _finite(metrics, 2)
    assert np.all(metrics["viol_sufficiency"] == 0) and np.all(metrics["viol_necessity"] == 0)
    cp = best_of_n.run_cell(dict(kind="checkpoints", temperature=0.0, zero_frac=0.0, perturb=0.0,
                                 num_steps=10), KEY, 2)
    _finite(cp, 2)
    assert np.all(cp["viol_sufficiency"] == 0) and np.all(cp["viol_necessity"] == 0)
    rows = [dict(cell, seed=s, viol_sufficiency=1.0, viol_necessity=0.0, tight_sufficiency=1.1,
                 tight_necessity=0.5, checks_sufficiency=36.0, checks_necessity=6.0) for s in range(2)]
    summary = best_of_n.analyze(ResultTable(rows), "quick")
    assert summary.verdict == Verdict.FAILS


def test_best_of_n_violation_counter_detects_a_violation():
    regret = np.full((1, len(best_of_n.N_GRID)), 2.0)  # regret above any bound ≤ 1 + 1
    cov = np.zeros((1, len(best_of_n.M_GRID)))
    out = best_of_n._violations(regret, cov, np.zeros((1, len(best_of_n.N_GRID))),
                                np.ones((1, len(best_of_n.N_GRID))))
    assert out["viol_sufficiency"][0] > 0 and out["viol_necessity"][0] == len(best_of_n.N_GRID)
