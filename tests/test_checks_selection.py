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
from covsim.instances.selection import mode_tradeoff as mode_tradeoff_instance  # noqa: E402
from theory_checks import _figure1, best_of_n, mode_tradeoff, tournament  # noqa: E402

KEY = jax.random.PRNGKey(0)


def _finite(metrics, seeds):
    for name, value in metrics.items():
        assert value.shape == (seeds,), name
        assert np.all(np.isfinite(value)), name


# ---------------------------------------------------------------------------
# the exact per-position coverage of the Figure 1 checks (theory_checks._figure1)


def test_positionwise_tail_matches_enumeration():
    rng = np.random.default_rng(1)
    P, H, V = 2, 4, 3
    lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(P, H, V)) * 2), axis=-1)
    lq = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(P, H, V)) * 2), axis=-1)
    mu = jnp.asarray([0.3, 0.7])
    N = jnp.asarray([1.0, 2.0, 5.0, 30.0])
    mine = np.asarray(_figure1.coverage_positionwise(lp, lq, mu, N))
    p = covsim.TabularModel(lp[:, :, None, :], H)
    q = covsim.TabularModel(lq[:, :, None, :], H)
    ref = np.asarray(covsim.coverage(p, q, mu, N))
    np.testing.assert_allclose(mine, ref, atol=1e-12)
    lpn, lqn = np.asarray(lp), np.asarray(lq)
    brute = np.zeros(N.shape)
    for x in range(P):
        for y in itertools.product(range(V), repeat=H):
            a = sum(lpn[x, h, y[h]] for h in range(H))
            b = sum(lqn[x, h, y[h]] for h in range(H))
            brute += float(mu[x]) * np.exp(a) * (a - b >= np.log(np.asarray(N)) - 1e-9)
    np.testing.assert_allclose(mine, brute, atol=1e-12)


@pytest.mark.parametrize("theta", [(0.5, 0.2, 0.01), (0.3, 0.0, 0.0), (0.6, 0.9, 0.05), (0.05, 0.0, 0.0)])
def test_compressed_tables_are_exact(theta):
    inst = _figure1.instance()
    truth_lp = _figure1.position_tables(inst.features, inst.info["theta_star"])
    model_lp = _figure1.position_tables(inst.features, jnp.asarray(theta))
    N = jnp.asarray(_figure1.COV_N)
    np.testing.assert_allclose(np.asarray(_figure1.coverage_fast(truth_lp, model_lp, inst.mu, N)),
                               np.asarray(_figure1.coverage_positionwise(truth_lp, model_lp, inst.mu, N)),
                               atol=1e-12)
    mass = _figure1.tail_compressed(model_lp, truth_lp, model_lp, None, N)
    ref = covsim.exact.independent_tail(model_lp, truth_lp - model_lp, None, N)
    np.testing.assert_allclose(np.asarray(mass), np.asarray(ref), atol=1e-12)


def test_figure1_coverage_inside_library_bracket():
    inst = _figure1.instance()
    theta = jnp.asarray([0.5, 0.2, 0.03])
    N = jnp.asarray([4.6, 16.0])
    exact = np.asarray(_figure1.checkpoint_metrics(theta[None])["cov"][0])
    lo, hi = covsim.coverage(inst.truth, inst.model(theta), inst.mu, N, method="bracket", bins=256)
    idx = [_figure1.COV_N.index(4.6), _figure1.COV_N.index(16.0)]
    assert np.all(np.asarray(lo) <= exact[idx] + 1e-12)
    assert np.all(exact[idx] <= np.asarray(hi) + 1e-12)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(3, 12)).astype(float)
    b = rng.normal(size=(3, 12))
    ours = _figure1.spearman(a, b)
    for i in range(3):
        assert ours[i] == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)


# ---------------------------------------------------------------------------
# the continuum instance


def test_continuum_instance_avoids_tested_levels_and_keeps_defaults():
    from covsim.instances.selection import AVOID_MARGIN

    inst = _figure1.instance()
    info = inst.info
    counts = np.asarray(info["pivot_count"])
    assert set(counts.tolist()) == {1, 2}
    scale = np.asarray(info["class_scale"])
    assert np.all((scale >= 0.3) & (scale <= 1.0)) and np.unique(scale).size == scale.size
    # mid-training log-ratios (pivots 50/50 at θ = (0.6, 0, 0)) stay away from every tested log N
    truth_lp = np.asarray(_figure1.position_tables(inst.features, inst.info["theta_star"]))
    mid_lp = np.asarray(_figure1.position_tables(inst.features, jnp.asarray([0.6, 0.0, 0.0])))
    target = np.asarray(info["target_y"])
    pivotal = np.asarray(info["pivotal"])
    allowed = np.asarray(info["allowed"])
    log_n = np.log(np.asarray(_figure1.COV_N))
    for x in range(inst.mu.shape[0]):
        per_pos = []
        for h in np.flatnonzero(pivotal[x]):
            right = target[x, h]
            wrong = [v for v in np.flatnonzero(allowed[x, h]) if v != right][0]
            per_pos.append([truth_lp[x, h, right] - mid_lp[x, h, right], truth_lp[x, h, wrong] - mid_lp[x, h, wrong]])
        for combo in itertools.product(*per_pos):
            assert np.min(np.abs(sum(combo) - log_n)) >= AVOID_MARGIN - 1e-9
    default = mode_tradeoff_instance()
    assert np.asarray(default.features).shape == (32, 8, 1, 8, 3)
    np.testing.assert_array_equal(np.asarray(default.info["class_scale"]), 1.0)


def test_reference_dip_at_t_mid():
    """T_MID sits inside the noiseless reference's coverage dip for every U-shape level."""
    from covsim.instances.selection import mode_tradeoff_reference_trajectory

    inst = _figure1.instance()
    cps = (1, 20, _figure1.T_MID, 100, 5000)
    thetas = mode_tradeoff_reference_trajectory(inst, cps)
    cov = np.asarray(_figure1.checkpoint_metrics(thetas)["cov"])  # (C, len(COV_N))
    idx = [_figure1.COV_N.index(n) for n in _figure1.U_SHAPE_N]
    assert np.all(cov[2, idx] <= 0.01)  # Cov_4.6 = 0.006 (its minimum over the grid), the others 0
    assert np.all(cov[0, idx] > 0.9)
    assert np.all(cov[-1, idx] > 0.02)


# ---------------------------------------------------------------------------
# mode_tradeoff


def _trajectory_rows(kl, cov, pas, seeds=8, noise=0.0):
    steps = [1, 10, _figure1.T_MID, 300, 1000]
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        row = {"num_steps": 1000, "variant": "main", "seed": seed}
        for c, t in enumerate(steps):
            row[f"kl@t{t}"] = kl[c] + noise * rng.random()
            for lv in _figure1.COV_N:
                row[f"cov{lv:g}@t{t}"] = cov[c] + noise * rng.random()
            for lv in _figure1.PASS_N:
                row[f"pass{lv:g}@t{t}"] = pas[c] + noise * rng.random()
        rows.append(row)
    return ResultTable(rows)


def _verdicts(check, analysis):
    return {a.name: a.verdict for a in check.judge(analysis).assertions}


def test_mode_tradeoff_cell_and_analysis_can_fail():
    metrics = mode_tradeoff.run_cell(dict(num_steps=30, variant="main"), KEY, 2)
    _finite(metrics, 2)
    assert metrics["kl@t1"][0] == pytest.approx(metrics["kl@t1"][1])  # shared θ_1
    assert np.all(metrics["kl@t10"] < metrics["kl@t1"])
    for name, value in metrics.items():
        if name.startswith(("cov", "pass")):
            assert np.all((value >= -1e-12) & (value <= 1 + 1e-12)), name
    # the U-shape with Pass following coverage: every rule holds
    good = _trajectory_rows(kl=[5, 2, 1, 0.8, 0.7], cov=[1.0, 0.3, 0.0, 0.05, 0.08],
                            pas=[0.1, 0.7, 0.99, 0.96, 0.93], noise=1e-4)
    assert mode_tradeoff.CHECK.judge(mode_tradeoff.analyze(good, "quick")).verdict == Verdict.HOLDS
    # KL rising, coverage never rising again: fails
    bad = _trajectory_rows(kl=[1, 2, 3, 4, 5], cov=[1.0, 0.3, 0.0, 0.0, 0.0], pas=[0.5, 0.4, 0.3, 0.2, 0.1],
                           noise=1e-4)
    verdicts = _verdicts(mode_tradeoff.CHECK, mode_tradeoff.analyze(bad, "quick"))
    assert verdicts["kl_monotone"] == Verdict.FAILS
    assert verdicts["cov8_rises"] == Verdict.FAILS
    assert verdicts["pass8_tracks_cov"] == Verdict.FAILS


# ---------------------------------------------------------------------------
# tournament


def test_count_tournament_matches_library_tournament():
    from covsim.selection import tournament as library_tournament

    truth_lp, cand_lp, _ = tournament.candidate_laws()
    rng = np.random.default_rng(0)
    for n in (20, 300, 3000, 20000):
        y = rng.choice(truth_lp.size, size=n, p=np.exp(truth_lp) / np.exp(truth_lp).sum())
        a_idx, a_scores = library_tournament(jnp.asarray(cand_lp)[:, y], tournament.N_LEVEL)
        counts = jnp.asarray(np.bincount(y, minlength=truth_lp.size), float)
        b_idx, b_scores = tournament.count_tournament(counts, jnp.asarray(cand_lp), tournament.N_LEVEL)
        assert int(a_idx) == int(b_idx)
        np.testing.assert_allclose(np.asarray(a_scores), np.asarray(b_scores), atol=1e-12)


def test_adversarial_class_exact_facts():
    cov_pick, cov_prime = tournament.exact_coverages()
    assert cov_prime.min() == 0.0  # π⋆ is log-ratio close to π_D
    q_f = 0.9 / (2 * tournament.N_LEVEL)
    assert cov_pick[2] == pytest.approx(q_f / 3)  # π_b
    np.testing.assert_allclose(cov_pick[3:], 0.03 * 2.0 ** -np.arange(tournament.NUM_RARE))
    for n in tournament.EXPLICIT_N:  # the explicit bound bites in every rule cell
        assert tournament.explicit_bound(n) < 1.0


def test_tournament_cells_and_analysis_can_fail():
    adv = tournament.run_cell(dict(kind="adversarial", n=64, n_max=256, num_steps=0, variant="main"), KEY, 2)
    _finite(adv, 2)
    assert np.all(adv["held"] <= adv["reps"])
    cp = tournament.run_cell(dict(kind="checkpoints", n=256, n_max=0, num_steps=30, variant="main"), KEY, 2)
    _finite(cp, 2)
    assert np.all(cp["step_minkl"] == 30)  # KL falls along a short trajectory: min-KL = last
    for n_pass in tournament.PASS_N:
        assert np.all(cp[f"pass{n_pass:g}_best"] >= cp[f"pass{n_pass:g}_tour{n_pass / 2:g}"] - 1e-12)
    rows = []
    for n in (32, 128, 512, 1024):
        for seed in range(8):
            rows.append({"kind": "adversarial", "n": n, "seed": seed, "excess_mean": 0.01 * (1 + 0.01 * seed),
                         "held": 4.0, "reps": 8.0, "bound": tournament.explicit_bound(n), "max_ratio": 2.0})
    for seed in range(8):
        row = {"kind": "checkpoints", "n": 2048, "seed": seed}
        for n_pass in tournament.PASS_N:
            for level in tournament._levels():
                row[f"pass{n_pass:g}_tour{level:g}"] = 0.5 + 0.001 * seed
            row[f"pass{n_pass:g}_minkl"] = 0.9
            row[f"pass{n_pass:g}_mince"] = 0.9
            row[f"pass{n_pass:g}_best"] = 0.95
        for rule in [f"tour{lv:g}" for lv in tournament._levels()] + ["minkl", "mince"]:
            row[f"step_{rule}"] = 1.0
        rows.append(row)
    verdicts = _verdicts(tournament.CHECK, tournament.analyze(ResultTable(rows), "quick"))
    assert verdicts["pass12_tour_vs_minkl"] == Verdict.FAILS
    assert verdicts["explicit_bound_n1024"] == Verdict.FAILS  # 50% of samples above the bound
    assert verdicts["excess_slope"] == Verdict.FAILS  # flat in n


# ---------------------------------------------------------------------------
# best_of_n


def test_general_bon_value_matches_brute_force():
    rng = np.random.default_rng(3)
    reward = rng.random((2, 5)) ** 2
    reward[0, 1] = reward[0, 3]  # a tie
    q = rng.dirichlet(np.ones(5), size=2)
    N = np.asarray([1.0, 2.0, 3.0])
    mine = np.asarray(best_of_n.bon_value_general(jnp.asarray(reward), jnp.asarray(q), jnp.asarray(N)))
    for x in range(2):
        for j, n in enumerate(N.astype(int)):
            brute = sum(np.prod([q[x, i] for i in draw]) * max(reward[x, i] for i in draw)
                        for draw in itertools.product(range(5), repeat=n))
            assert mine[x, j] == pytest.approx(brute, abs=1e-12)


def test_best_of_n_cells_and_analysis_can_fail():
    cell = dict(kind="random", temperature=3.0, zero_frac=0.25, perturb=1.0, num_steps=0, variant="main")
    metrics = best_of_n.run_cell(cell, KEY, 2)
    _finite(metrics, 2)
    assert np.all(metrics["viol_sufficiency"] == 0) and np.all(metrics["viol_necessity"] == 0)
    assert np.all(metrics["viol_general"] == 0) and np.all(metrics["checks_general"] > 0)
    cp = best_of_n.run_cell(dict(kind="checkpoints", temperature=0.0, zero_frac=0.0, perturb=0.0,
                                 num_steps=10, variant="main"), KEY, 2)
    _finite(cp, 2)
    assert np.all(cp["viol_sufficiency"] == 0) and np.all(cp["viol_necessity"] == 0)
    rows = [dict(cell, seed=s, viol_sufficiency=1.0, viol_necessity=0.0, viol_general=0.0,
                 checks_sufficiency=36.0, checks_necessity=6.0, checks_general=10.0, bound_sufficiency=0.5,
                 bound_general=0.5, tight_sufficiency=1.1, tight_necessity=0.5, tight_general=0.5)
            for s in range(8)]
    verdicts = _verdicts(best_of_n.CHECK, best_of_n.analyze(ResultTable(rows), "quick"))
    assert verdicts["sufficiency_binary_random"] == Verdict.FAILS
    assert verdicts["sufficiency_general_random"] == Verdict.HOLDS


def test_best_of_n_violation_counter_detects_a_violation():
    regret = np.full((1, len(best_of_n.N_GRID)), 2.0)  # regret above any bound <= 1 + 1
    cov = np.zeros((1, len(best_of_n.M_GRID)))
    out = best_of_n._violations(regret, cov, np.zeros((1, len(best_of_n.N_GRID))),
                                np.ones((1, len(best_of_n.N_GRID))), regret)
    assert out["viol_sufficiency"][0] > 0 and out["viol_necessity"][0] == len(best_of_n.N_GRID)
    assert out["viol_general"][0] == out["checks_general"][0] > 0


def test_best_of_n_vectorized_necessity_matches_library():
    from covsim.bon import necessity_regret

    P, H, V = best_of_n.TINY["P"], best_of_n.TINY["H"], best_of_n.TINY["V"]
    shape = (P, H, V + 1, V)
    for s in range(2):
        key = jax.random.PRNGKey(s)
        out = best_of_n._tiny_seed(key, 3.0, 0.25, 1.0)
        k1, k2, k3, k4, k5, _, _ = jax.random.split(key, 7)  # the draws of _tiny_seed
        logits = jax.random.normal(k1, shape) * 3.0
        drop = (jax.random.uniform(k2, shape) < 0.25) & (
            jnp.arange(V) != jax.random.randint(k3, shape[:-1], 0, V)[..., None])
        model = covsim.TabularModel(jnp.where(drop, -jnp.inf, logits), H)
        comparator = covsim.TabularModel(logits + jax.random.normal(k4, shape) * 1.0, H)
        mu = jax.random.dirichlet(k5, jnp.ones(P))
        ref = np.array([float(necessity_regret(model, comparator, mu, n)) for n in best_of_n.N_GRID])
        np.testing.assert_allclose(np.asarray(out[2]), ref, atol=1e-12)
