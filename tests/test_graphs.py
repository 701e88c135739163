"""covsim.graphs (the layered-DAG task), covsim.transformer (exact metrics) and the
graph_horizon check: brute-force path enumeration, Monte Carlo of the exact metrics,
synthetic tables for the rules."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from covsim import graphs as G
from covsim import transformer as T


def _all_paths(L):
    return np.array([[0] + [1 + 4 * l + j for l, j in enumerate(js)] + [4 * L + 1]
                     for js in itertools.product(range(4), repeat=L)])


@pytest.mark.parametrize("task", [G.horizon_task(4), G.horizon_task(6), G.horizon_task(8),
                                  G.tradeoff_task(4), G.tradeoff_task(5, (1 / 3, 1 / 3, 1 / 3))],
                         ids=lambda t: f"{t.family}{t.L}")
def test_support_matches_brute_force(task):
    g = G.sample_graphs(jax.random.PRNGKey(0), task, 24)
    paths, lp = G.support(task, g)
    assert paths.shape == (24, G.MAX_SUPPORT, task.L + 2)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-12)
    allp = _all_paths(task.L)
    for b in range(6):
        gb = {k: jnp.repeat(v[b:b + 1], len(allp), 0) for k, v in g.items()}
        bl = np.asarray(G.path_log_prob(task, gb, jnp.asarray(allp)))
        bf = {tuple(p): v for p, v in zip(allp, bl) if np.isfinite(v)}
        sup = {tuple(p): v for p, v in zip(np.asarray(paths[b]), np.asarray(lp[b])) if np.isfinite(v)}
        assert sup.keys() == bf.keys()
        for k in sup:
            assert abs(sup[k] - bf[k]) < 1e-12
        # every support path is valid: passable nodes only
        for p in sup:
            j = np.array(p[1:-1]) - 1 - 4 * np.arange(task.L)
            assert np.all((j == np.asarray(g["a"][b])) | (j == np.asarray(g["b"][b])))


def test_class_structure_and_rules():
    task = G.horizon_task(6)
    for c, k in enumerate((0, 3, 4)):
        g = G.sample_graphs(jax.random.PRNGKey(c), task, 64, cls=c)
        assert np.all(np.asarray(g["doubled"].sum(-1)) == k)
        dbl = np.asarray(g["doubled"])
        a, b = np.asarray(g["a"]), np.asarray(g["b"])
        assert np.all((a[dbl] % 2 == 0) & (b[dbl] % 2 == 1))  # odd id node, even id node
        assert np.all(a[~dbl] == b[~dbl])
        np.testing.assert_allclose(G.class_posterior(task, g)[:, c], 1.0)
    # G_{H,2}'s rule by hand: parity(v) = parity(i) xor XOR(parities of passable nodes)
    g = G.sample_graphs(jax.random.PRNGKey(9), task, 32, cls=1)
    paths, lp = G.support(task, g)
    for bi in range(32):
        best = np.asarray(paths[bi, np.argmax(np.asarray(lp[bi]))])
        dbl = np.asarray(g["doubled"][bi])
        ids_a = 1 + 4 * np.arange(6) + np.asarray(g["a"][bi])
        ids_b = 1 + 4 * np.arange(6) + np.asarray(g["b"][bi])
        passable = np.concatenate([ids_a, ids_b[dbl]])
        X = int(np.sum(passable % 2)) % 2
        for l in np.flatnonzero(dbl):
            i = l + 2  # path position, s at 1
            assert best[l + 1] % 2 == (i % 2) ^ X
    # Figure 1: hidden parity gives the class
    t1 = G.tradeoff_task(8)
    g = G.sample_graphs(jax.random.PRNGKey(3), t1, 200)
    h = np.asarray(G.hidden_parity(t1, g))
    assert np.all(h[np.asarray(g["cls"]) == 0] == 1) and np.all(h[np.asarray(g["cls"]) == 1] == 0)
    assert np.all(np.asarray(g["doubled"].sum(-1)) == 2)


def test_prompt_and_batch():
    task = G.horizon_task(4)
    g, x, y = G.sample_batch(jax.random.PRNGKey(1), task, 32)
    assert x.shape == (32, task.prompt_len) and y.shape == (32, task.response_len)
    assert int(x.max()) < task.vocab and int(y.max()) < task.vocab
    np.testing.assert_array_equal(x[:, -4:], np.broadcast_to([4 * 4 + 3, 0, 4 * 4 + 1, 4 * 4 + 4], (32, 4)))
    assert np.all(np.isfinite(np.asarray(G.path_log_prob(task, g, y))))


def test_exact_metrics_against_monte_carlo():
    task = G.horizon_task(4)
    model = T.init_gpt(jax.random.PRNGKey(0), task.vocab, task.prompt_len + task.response_len,
                       width=16, depth=1, heads=2)
    g = G.sample_graphs(jax.random.PRNGKey(2), task, 1, cls=2)
    m = T.exact_metrics(model, task, g, [2.0, 4.0])
    x = G.prompt_tokens(task, g)
    # sample responses from the model autoregressively
    M = 4000
    key = jax.random.PRNGKey(5)
    xs = jnp.repeat(x, M, 0)
    resp = jnp.zeros((M, 0), jnp.int32)
    for h in range(task.response_len):
        seq = jnp.concatenate([xs, resp], 1)
        logits = jax.vmap(model)(seq)[:, -1]
        key, k = jax.random.split(key)
        resp = jnp.concatenate([resp, jax.random.categorical(k, logits)[:, None].astype(jnp.int32)], 1)
    gm = {k: jnp.repeat(v, M, 0) for k, v in g.items()}
    in_sup = np.isfinite(np.asarray(G.path_log_prob(task, gm, resp)))
    q_sup = in_sup.mean()
    se = math.sqrt(q_sup * (1 - q_sup) / M) + 1e-3
    exact_q = 1 - (1 - float(m["pass"][0, 0])) ** (1 / 2.0)
    assert abs(q_sup - exact_q) < 5 * se
    # KL by MC over pi_D samples equals the exact sum
    paths, lp = G.support(task, g)
    lq = T.log_probs(model, jnp.repeat(x, G.MAX_SUPPORT, 0), paths[0])
    on = np.isfinite(np.asarray(lp[0]))
    kl = float(np.sum(np.exp(lp[0][on]) * (lp[0][on] - lq[on])))
    assert abs(kl - float(m["kl"][0])) < 1e-9


def test_uniform_mixture_log_ratio_linear():
    eps = 0.15
    for L in (4, 6, 8):
        task = G.horizon_task(L)
        g = G.sample_graphs(jax.random.PRNGKey(L), task, 8, cls=0)
        paths, lp = G.support(task, g)
        lq = T.uniform_mixture_log_probs(task, paths, lp, eps)
        np.testing.assert_allclose(np.asarray(lp[:, 0] - lq[:, 0]), -L * math.log(1 - 3 * eps / 4), rtol=1e-12)
    # uniform-mixture probabilities sum to <= 1 over the support and each conditional is exact
    task = G.horizon_task(4)
    g = G.sample_graphs(jax.random.PRNGKey(1), task, 4, cls=2)
    paths, lp = G.support(task, g)
    lq = T.uniform_mixture_log_probs(task, paths, lp, 0.0)
    on = np.isfinite(np.asarray(lp))
    np.testing.assert_allclose(np.asarray(lq)[on], np.asarray(lp)[on], atol=1e-12)


def test_train_runs_and_normalized_optimizer():
    task = G.horizon_task(4)
    m = T.init_gpt(jax.random.PRNGKey(0), task.vocab, task.prompt_len + task.response_len,
                   width=16, depth=1, heads=2)
    m2, losses, ck = T.train(m, task, jax.random.PRNGKey(1), steps=4, batch=8, checkpoints=2,
                             optimizer=T.make_optimizer("normalized", 0.1))
    assert losses.shape == (4,) and np.all(np.isfinite(np.asarray(losses)))
    assert ck.tok.shape[0] == 2


def _table(kl, cov2):
    from covsim.experiments.results import ResultTable
    rows = []
    for H, klh, ch in zip((4, 8, 12), kl, cov2):
        for s in range(len(klh)):
            rows.append({"H": H, "seed": s, "kl": klh[s], "cov_2": ch[s]})
    return ResultTable(rows)


def test_graph_horizon_rules_can_hold_and_fail():
    from theory_checks.graph_horizon import CHECK
    rng = np.random.default_rng(0)
    S = 16
    H = np.array([4, 8, 12])
    kl = [0.05 * h / 2 * math.log(2) * (1 + 0.05 * rng.standard_normal(S)) for h in H]
    flat = [0.05 + 0.002 * rng.standard_normal(S) for _ in H]
    s = CHECK.judge(CHECK.analyze(_table(kl, flat), "quick"))
    assert s.verdict.value == "holds", s.reason
    grow = [np.full(S, 0.05) + (h > 4) * 0.9 + 0.002 * rng.standard_normal(S) for h in H]
    s = CHECK.judge(CHECK.analyze(_table(kl, grow), "quick"))
    assert s.verdict.value == "fails"
    flat_kl = [np.full(S, 0.1) * (1 + 0.01 * rng.standard_normal(S)) for _ in H]
    s = CHECK.judge(CHECK.analyze(_table(flat_kl, flat), "quick"))
    assert s.verdict.value == "fails"


def test_graph_horizon_run_cell_tiny_control():
    from theory_checks.graph_horizon import control_grid, run_cell
    out = run_cell(control_grid("tiny")[0], jax.random.PRNGKey(0), 8)
    assert out["kl"].shape == (8,) and np.all(np.isfinite(out["kl"]))
    assert np.all((out["cov_2"] >= 0) & (out["cov_2"] <= 1))
