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


# jitted once per task (GraphTask is hashable): eager dispatch of these small functions
# compiled op by op and dominated the module's time
_sample = jax.jit(G.sample_graphs, static_argnums=(1, 2, 3))
_support = jax.jit(G.support, static_argnums=0)
_path_log_prob = jax.jit(G.path_log_prob, static_argnums=0)


def _all_paths(L):
    return np.array([[0] + [1 + 4 * l + j for l, j in enumerate(js)] + [4 * L + 1]
                     for js in itertools.product(range(4), repeat=L)])


@pytest.mark.parametrize("task", [G.horizon_task(4), G.horizon_task(6), G.horizon_task(8),
                                  G.tradeoff_task(4), G.tradeoff_task(5, (1 / 3, 1 / 3, 1 / 3))],
                         ids=lambda t: f"{t.family}{t.L}")
def test_support_matches_brute_force(task):
    nb = 6  # prompts checked against all 4^L paths

    @jax.jit
    def run(key):
        g = G.sample_graphs(key, task, 24)
        paths, lp = G.support(task, g)
        allp = jnp.asarray(_all_paths(task.L))
        gb = {k: jnp.repeat(v[:nb], len(allp), 0) for k, v in g.items()}
        bl = G.path_log_prob(task, gb, jnp.tile(allp, (nb, 1))).reshape(nb, len(allp))
        return g, paths, lp, bl

    g, paths, lp, bl_all = run(jax.random.PRNGKey(0))
    assert paths.shape == (24, G.MAX_SUPPORT, task.L + 2)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-12)
    allp = _all_paths(task.L)
    for b in range(nb):
        bl = np.asarray(bl_all[b])
        bf = {tuple(p): v for p, v in zip(allp, bl) if np.isfinite(v)}
        sup = {tuple(p): v for p, v in zip(np.asarray(paths[b]), np.asarray(lp[b])) if np.isfinite(v)}
        assert sup.keys() == bf.keys()
        for k in sup:
            assert abs(sup[k] - bf[k]) < 1e-12
        # every support path is valid: passable nodes only
        for p in sup:
            j = np.array(p[1:-1]) - 1 - 4 * np.arange(task.L)
            assert np.all((j == np.asarray(g["a"][b])) | (j == np.asarray(g["b"][b])))


@pytest.fixture(scope="module")
def horizon6():
    """64 graphs of each class of horizon_task(6), their posteriors, and G_{H,2}'s support
    (one compilation shared by the tests that use them)."""
    task = G.horizon_task(6)

    @jax.jit
    def run(key):
        gs = [G.sample_graphs(jax.random.fold_in(key, c), task, 64, cls=c) for c in range(3)]
        return gs, [G.class_posterior(task, g) for g in gs], G.support(task, gs[1])

    gs, post, sup2 = run(jax.random.PRNGKey(0))
    return task, gs, post, sup2


def test_class_structure_and_rules(horizon6):
    task, gs, post, (paths, lp) = horizon6
    for c, k in enumerate((0, 3, 4)):
        g = gs[c]
        assert np.all(np.asarray(g["doubled"].sum(-1)) == k)
        dbl = np.asarray(g["doubled"])
        a, b = np.asarray(g["a"]), np.asarray(g["b"])
        assert np.all((a[dbl] % 2 == 0) & (b[dbl] % 2 == 1))  # odd id node, even id node
        assert np.all(a[~dbl] == b[~dbl])
        np.testing.assert_allclose(post[c][:, c], 1.0)
    # G_{H,2}'s rule by hand: parity(v) = parity(i) xor XOR(parities of passable nodes)
    g = gs[1]
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

    @jax.jit
    def tradeoff(key):
        g = G.sample_graphs(key, t1, 200)
        return g, G.hidden_parity(t1, g)

    g, h = tradeoff(jax.random.PRNGKey(3))
    h = np.asarray(h)
    assert np.all(h[np.asarray(g["cls"]) == 0] == 1) and np.all(h[np.asarray(g["cls"]) == 1] == 0)
    assert np.all(np.asarray(g["doubled"].sum(-1)) == 2)


def test_teacher_forced_doubled_layers(horizon6):
    """graph_horizon's shortcut observation reads pi_hat at the right response positions:
    a position-free fake model that favours odd ids by e^5 gives, at each doubled layer,
    e^5/Z or 1/Z according to the parity of pi_D's node there (checked by hand)."""
    from theory_checks.graph_horizon import _teacher_forced_doubled
    task, gs, _, (paths, lp) = horizon6
    g = gs[1]
    V = task.vocab
    odd = (np.arange(V) % 2 == 1)
    logits = jnp.asarray(5.0 * odd)
    fake = lambda tokens: jnp.broadcast_to(logits, (tokens.shape[0], V))  # noqa: E731
    x = jax.jit(G.prompt_tokens, static_argnums=0)(task, g)
    out = _teacher_forced_doubled(fake, task, g, x, paths, lp)
    Z = odd.sum() * math.exp(5.0) + (~odd).sum()
    best = np.take_along_axis(np.asarray(paths), np.argmax(np.asarray(lp), -1)[:, None, None], 1)[:, 0]
    dbl = np.asarray(g["doubled"])
    pr = np.where(best[:, 1:-1] % 2 == 1, math.exp(5.0), 1.0) / Z
    rank = np.cumsum(dbl, -1) - 1
    np.testing.assert_allclose(float(out["tf_first"]), pr[dbl & (rank == 0)].mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out["tf_later"]), pr[dbl & (rank >= 1)].mean(), rtol=1e-12)
    assert 0.0 < float(out["tf_first"]) < 1.0


def test_prompt_and_batch():
    task = G.horizon_task(4)
    g, x, y = jax.jit(G.sample_batch, static_argnums=(1, 2))(jax.random.PRNGKey(1), task, 32)
    assert x.shape == (32, task.prompt_len) and y.shape == (32, task.response_len)
    assert int(x.max()) < task.vocab and int(y.max()) < task.vocab
    np.testing.assert_array_equal(x[:, -4:], np.broadcast_to([4 * 4 + 3, 0, 4 * 4 + 1, 4 * 4 + 4], (32, 4)))
    assert np.all(np.isfinite(np.asarray(_path_log_prob(task, g, y))))


def _sample_responses(model, x, key, R):
    """R response tokens sampled autoregressively from `model` after prompts x (M, P): one
    fixed-shape forward per position in a scan (the causal mask ignores the zero padding)."""
    M, P = x.shape
    seq0 = jnp.concatenate([x, jnp.zeros((M, R), jnp.int32)], 1)

    def step(seq, hk):
        h, k = hk
        logits = jax.vmap(model)(seq[:, :-1])[:, P - 1 + h]
        return seq.at[:, P + h].set(jax.random.categorical(k, logits).astype(jnp.int32)), None

    seq, _ = jax.lax.scan(step, seq0, (jnp.arange(R), jax.random.split(key, R)))
    return seq[:, P:]


def test_exact_metrics_against_monte_carlo():
    task = G.horizon_task(4)
    M = 4000

    @jax.jit
    def run(k_model, k_graph, k_mc):
        model = T.init_gpt(k_model, task.vocab, task.prompt_len + task.response_len,
                           width=16, depth=1, heads=2)
        g = G.sample_graphs(k_graph, task, 1, cls=2)
        m = T.exact_metrics(model, task, g, [2.0, 4.0])
        x = G.prompt_tokens(task, g)
        resp = _sample_responses(model, jnp.repeat(x, M, 0), k_mc, task.response_len)
        gm = {k: jnp.repeat(v, M, 0) for k, v in g.items()}
        in_sup = jnp.isfinite(G.path_log_prob(task, gm, resp))
        paths, lp = G.support(task, g)
        lq = T.log_probs(model, jnp.repeat(x, G.MAX_SUPPORT, 0), paths[0])
        return m, in_sup, lp[0], lq

    m, in_sup, lp, lq = run(jax.random.PRNGKey(0), jax.random.PRNGKey(2), jax.random.PRNGKey(5))
    # Pass@N: the model's mass on pi_D's support, by Monte Carlo from the model
    q_sup = float(np.mean(np.asarray(in_sup)))
    se = math.sqrt(q_sup * (1 - q_sup) / M) + 1e-3
    exact_q = 1 - (1 - float(m["pass"][0, 0])) ** (1 / 2.0)
    assert abs(q_sup - exact_q) < 5 * se
    # KL: the explicit sum over pi_D's support equals the exact metric
    lp, lq = np.asarray(lp), np.asarray(lq)
    on = np.isfinite(lp)
    kl = float(np.sum(np.exp(lp[on]) * (lp[on] - lq[on])))
    assert abs(kl - float(m["kl"][0])) < 1e-9


def test_uniform_mixture_log_ratio_linear():
    eps = 0.15

    def ratios(L, classes):
        """(lp, lq at eps, lq at eps = 0) per class, one compilation per L."""
        task = G.horizon_task(L)

        @jax.jit
        def run(key):
            out = []
            for c in classes:
                g = G.sample_graphs(jax.random.fold_in(key, c), task, 8, cls=c)
                paths, lp = G.support(task, g)
                out.append((lp, T.uniform_mixture_log_probs(task, paths, lp, eps),
                            T.uniform_mixture_log_probs(task, paths, lp, 0.0)))
            return out

        return run(jax.random.PRNGKey(L))

    res = {L: ratios(L, (0, 2) if L == 4 else (0,)) for L in (4, 6, 8)}
    for L, r in res.items():
        lp, lq, _ = r[0]
        np.testing.assert_allclose(np.asarray(lp[:, 0] - lq[:, 0]), -L * math.log(1 - 3 * eps / 4), rtol=1e-12)
    # at eps = 0 each per-token conditional is pi_D's exactly (on G_{H,3}'s 16-path support)
    lp, _, lq0 = res[4][1]
    on = np.isfinite(np.asarray(lp))
    np.testing.assert_allclose(np.asarray(lq0)[on], np.asarray(lp)[on], atol=1e-12)


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
            rows.append({"H": H, "seed": s, "kl": klh[s], "cov_2": ch[s], "tf_first": 0.5,
                         "tf_later": 0.5 + 0.01 * s})
    return ResultTable(rows)


def test_graph_horizon_rules_can_hold_and_fail():
    from theory_checks.graph_horizon import CHECK
    rng = np.random.default_rng(0)
    S = 16
    H = np.array([4, 8, 12])
    kl = [0.05 * h / 2 * math.log(2) * (1 + 0.05 * rng.standard_normal(S)) for h in H]
    flat = [0.05 + 0.002 * rng.standard_normal(S) for _ in H]
    a = CHECK.analyze(_table(kl, flat), "quick")
    s = CHECK.judge(a)
    assert s.verdict.value == "holds", s.reason
    obs = {o.name: o.value for o in a.observations}  # the shortcut columns: observations only
    assert obs["teacher_forced_first_doubled_by_H"] == [0.5] * 3
    assert obs["teacher_forced_later_doubled_by_H"] == [round(0.5 + 0.01 * (S - 1) / 2, 4)] * 3
    assert not any("tf_" in r.name for r in CHECK.rules)
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
