"""covsim.testing (strategies, adversarial search) and the `inequalities` check built on it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import covsim
import covsim.testing as ct
from covsim.experiments.check import Verdict
from covsim.experiments.results import ResultTable

# ---------------------------------------------------------------------------------------
# ratio


def test_ratio_conventions():
    a = jnp.array([1.0, 0.0, 2.0, 1.0, jnp.inf, jnp.nan, 3.0])
    b = jnp.array([2.0, 0.0, 0.0, jnp.inf, jnp.inf, 1.0, 3.0])
    np.testing.assert_array_equal(np.asarray(ct.ratio(a, b)), [0.5, 0.0, np.inf, 0.0, -np.inf, -np.inf, 1.0])
    # with a tolerance, a rounding-level excess over a zero bound is not a huge ratio
    assert float(ct.ratio(1e-31, 0.0, 1e-9)) < 1e-20
    assert float(ct.ratio(1.0, 1.0, 1e-9)) < 1.0 < float(ct.ratio(1.0 + 1e-8, 1.0, 1e-9))


# ---------------------------------------------------------------------------------------
# adversarial search on Bernoulli pairs (H = 1, V = 2): Prop. D.1 is tight on Ber(p)‖Ber(p/N)

N_TEST = jnp.array([16.0])


def _pair_models(z):
    return covsim.TabularModel(z["p"], 1), covsim.TabularModel(z["q"], 1)


def _init(key):
    kp, kq = jax.random.split(key)
    return {"p": jax.random.normal(kp, (1, 1, 3, 2)) * 3, "q": jax.random.normal(kq, (1, 1, 3, 2)) * 3}


def _kl_pair(factor):
    def pair(z):
        p, q = _pair_models(z)
        mu = jnp.ones(1)
        return covsim.coverage(p, q, mu, N_TEST), factor * covsim.bounds.kl_to_coverage(covsim.kl(p, q, mu), N_TEST)
    return pair


def test_search_approaches_a_tight_bound_without_violating_it():
    res = ct.adversarial_search(_kl_pair(1.0), None, _init, key=jax.random.PRNGKey(0), steps=120, restarts=8,
                                use_grad=False)
    assert 0.9 <= float(res.ratio) <= 1.0 + 1e-9
    assert not bool(res.violated) and not bool(jnp.any(res.restart_violated))
    assert res.restart_ratios.shape == (8,) and res.restart_actual.shape == (8, 1)
    assert float(res.ratio) == pytest.approx(float(jnp.max(res.restart_ratios)))
    # the instance returned attains the ratio
    a, b = _kl_pair(1.0)(res.instance)
    assert float(ct.ratio(a, b, 1e-9)[0]) == pytest.approx(float(res.ratio), rel=1e-12)
    assert float(a[0] / b[0]) == pytest.approx(float(res.ratio), rel=1e-6)


def test_search_finds_a_counterexample_to_a_too_tight_bound():
    actual = lambda z: _kl_pair(0.8)(z)[0]  # noqa: E731
    bound = lambda z: _kl_pair(0.8)(z)[1]  # noqa: E731
    res = ct.adversarial_search(actual, bound, _init, key=jax.random.PRNGKey(1), steps=60, restarts=4)
    assert float(res.ratio) > 1.0 and bool(res.violated)


def test_search_keeps_minus_inf_entries_and_validates_effort():
    def init(key):
        z = jax.random.normal(key, (1, 1, 1, 3))
        return {"p": z.at[..., 2].set(-jnp.inf), "q": z}

    def pair(z):
        p, q = covsim.TabularModel(z["p"], 1), covsim.TabularModel(z["q"], 1)
        return covsim.coverage(p, q, jnp.ones(1), 2.0), jnp.ones(())

    res = ct.adversarial_search(pair, None, init, key=jax.random.PRNGKey(2), steps=5, restarts=2, use_grad=False)
    assert bool(jnp.all(jnp.isneginf(res.instance["p"][..., 2])))
    assert bool(jnp.all(jnp.isfinite(res.instance["p"][..., :2])))
    with pytest.raises(ValueError, match="steps and restarts"):
        ct.adversarial_search(pair, None, init, key=jax.random.PRNGKey(2), steps=0)


# ---------------------------------------------------------------------------------------
# strategies


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4).flatmap(lambda P: st.tuples(st.just(P), ct.prompt_distributions(P))))
def test_prompt_distributions(drawn):
    P, mu = drawn
    mu = np.asarray(mu)
    assert mu.shape == (P,) and np.all(mu >= 0) and abs(mu.sum() - 1) < 1e-12


@settings(max_examples=30, deadline=None)
@given(ct.logit_tables(2, 3, 3))
def test_logit_tables_never_mask_a_whole_row(logits):
    logits = np.asarray(logits)
    assert logits.shape == (2, 3, 4, 3)
    assert np.all(np.any(np.isfinite(logits), axis=-1)) and not np.any(np.isnan(logits))
    assert not np.any(np.isposinf(logits))


@settings(max_examples=25, deadline=None)
@given(ct.tabular_pairs(max_prompts=3, max_horizon=5, max_vocab=3, max_sequences=200))
def test_tabular_pairs_are_valid_laws(pair):
    p, q, mu = pair
    assert isinstance(p, covsim.TabularModel) and p.logits.shape == q.logits.shape
    assert p.num_prompts * p.vocab_size ** p.horizon <= 200 or p.horizon == 1
    lp = np.asarray(covsim.next_token_log_probs(p))
    assert np.allclose(np.exp(lp).sum(-1), 1.0)
    assert float(covsim.kl(p, q, mu)) >= -1e-12
    cov = np.asarray(covsim.coverage(p, q, mu, jnp.array([1.0, 4.0])))
    assert np.all((cov >= -1e-12) & (cov <= 1 + 1e-12)) and cov[0] >= cov[1] - 1e-12


@settings(max_examples=20, deadline=None)
@given(ct.linear_pairs(max_prompts=2, max_horizon=3, max_vocab=3, max_dim=3))
def test_linear_pairs_are_valid_ar_linear_models(pair):
    p, q, mu = pair
    assert isinstance(p, covsim.LinearModel) and p.features.shape == q.features.shape
    assert float(jnp.linalg.norm(p.theta)) <= 1 + 1e-12 and float(jnp.linalg.norm(q.theta)) <= 1 + 1e-12
    kl = float(covsim.kl(p, q, mu))
    assert math.isfinite(kl) and kl >= -1e-9


def test_strategy_arguments_are_checked():
    with pytest.raises(ValueError, match="num_prompts"):
        ct.prompt_distributions(0)


# ---------------------------------------------------------------------------------------
# the inequalities check


def test_inequalities_grid_and_control():
    from theory_checks import inequalities as m

    for size in ("tiny", "quick", "full"):
        cells, control = m.grid(size), m.control_grid(size)
        assert {c["inequality"] for c in cells if c["kind"] == "adversarial"} == set(m.NAMES)
        assert all(c["variant"] == "claim" for c in cells) and all(c["variant"] == "control" for c in control)
        assert len(cells) == len(control)
    names = {r.name for r in m.RULES}
    assert all(n in names and f"{n}_tight" in names for n in m.NAMES)
    assert all(r.threshold == 0.9 for r in m.RULES if r.name.endswith("_tight"))


def test_inequalities_bernoulli_cell_and_tightness_pair():
    from theory_checks import inequalities as m

    cell = [c for c in m.grid("tiny") if c["kind"] == "bernoulli"][0]
    out = m.run_cell(cell, jax.random.PRNGKey(0), 8)
    assert out["viol_tightness_pair"].shape == (8,) and np.all(out["viol_tightness_pair"] == 0)
    assert np.all(out["tie_counted_error"] < 1e-12)
    assert np.all((out["tight_tightness_pair"] > 0) & (out["tight_tightness_pair"] <= 1))
    # exact: on Ber(p)‖Ber(p/N) the ratio bound/Cov_N is KL/(p(log N − ½ + 1/(2N)))
    p, N = 0.01, 1e4
    (num, den), err, cov, kl = m._bernoulli_pair(jnp.asarray(p), jnp.asarray(N), 1.0)
    kl_exact = p * math.log(N) + (1 - p) * math.log((1 - p) / (1 - p / N))
    assert float(kl) == pytest.approx(kl_exact, rel=1e-10) and float(cov) == pytest.approx(p)
    assert float(num[0] / den[0]) == pytest.approx(kl_exact / (p * (math.log(N) - 0.5 + 0.5 / N)), rel=1e-10)


def _synthetic(ratio, violations=0):
    from theory_checks import inequalities as m

    rows = []
    for s in range(8):
        rows.append({"kind": "tiny", "seed": s, **{f"viol_{n}": 0.0 for n in m.NAMES},
                     **{f"tight_{n}": 0.5 for n in m.NAMES}, **{f"bound_{n}": 0.3 for n in m.NAMES}})
        rows.append({"kind": "medium", "seed": s, "bracket_order_viol": 0.0, "bracket_width": 0.01})
        rows.append({"kind": "bernoulli", "seed": s, "tie_counted_error": 0.0})
        for n in m.NAMES:
            rows.append({"kind": "adversarial", "inequality": n, "seed": s, "restarts": 4, "adv_ratio": ratio,
                         "adv_viol": float(violations if s == 0 else 0), "adv_num": 0.2 * ratio, "adv_den": 0.2,
                         "adv_restart_ratio_median": ratio})
    return ResultTable(rows)


def test_inequalities_analyze_holds_and_fails_on_synthetic_tables():
    from theory_checks.inequalities import CHECK

    good = CHECK.judge(CHECK.analyze(_synthetic(0.95), "quick"))
    assert good.verdict == Verdict.HOLDS, good.reason
    loose = CHECK.judge(CHECK.analyze(_synthetic(0.5), "quick"))
    assert loose.verdict == Verdict.FAILS
    assert {a.name for a in loose.assertions if a.verdict == Verdict.FAILS} == {
        f"{n}_tight" for n in CHECK.analyze(_synthetic(0.5), "quick").evidence if not n.endswith("_tight")
        and n not in ("bracket_order", "tie_convention")}
    violated = CHECK.judge(CHECK.analyze(_synthetic(1.05, violations=1), "quick"))
    assert violated.verdict == Verdict.FAILS
    assert any(a.name == "kl_full" and a.verdict == Verdict.FAILS for a in violated.assertions)
