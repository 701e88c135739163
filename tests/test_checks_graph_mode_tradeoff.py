"""graph_mode_tradeoff's training step is AdamW (covsim.transformer.make_optimizer) with the
learning rate as data, and its analysis reads a dip-then-rise as such."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from covsim import transformer as T
from covsim.experiments.results import ResultTable
from theory_checks import graph_mode_tradeoff as gmt


def test_direction_times_lr_is_adamw():
    params = {"w": jnp.arange(6.0).reshape(2, 3) / 7, "b": jnp.ones(3)}
    lr = 3e-3
    ref, ours = T.make_optimizer("adam", lr), gmt._DIRECTION
    s_ref, s_ours = ref.init(params), ours.init(params)
    p_ref = p_ours = params
    for i in range(3):
        g = jax.tree_util.tree_map(lambda v: jnp.sin(v * (i + 1)), p_ref)
        u, s_ref = ref.update(g, s_ref, p_ref)
        p_ref = optax.apply_updates(p_ref, u)
        d, s_ours = ours.update(g, s_ours, p_ours)
        p_ours = jax.tree_util.tree_map(lambda a, b: a - lr * b, p_ours, d)
    for k in params:
        np.testing.assert_allclose(np.asarray(p_ours[k]), np.asarray(p_ref[k]), rtol=1e-12, atol=1e-15)


def _table(cov_by_c, S=8, noise=1e-3):
    rng = np.random.default_rng(0)
    rows = []
    for s in range(S):
        row = {"seed": s, "pretrain_loss": 1.0, "pick_minkl": 4.0, "pick_tour2": 2.0, "pick_tour4": 2.0,
               "pick_tour6": 2.0}
        for c, v in enumerate(cov_by_c):
            row[f"kl@c{c}"] = 1.0 - 0.1 * c + rng.normal() * noise
            for n in gmt.COV_N:
                row[f"cov{n:g}@c{c}"] = v + rng.normal() * noise
            for n in gmt.PASS_N:
                row[f"pass{n:g}@c{c}"] = 0.9 + 0.05 * (c == 2) + rng.normal() * noise
        rows.append(row)
    return ResultTable(rows)


def test_analysis_reads_a_dip_and_its_absence():
    dip = gmt.CHECK.judge(gmt.analyze(_table([0.5, 0.05, 0.02, 0.06, 0.1]), "quick"))
    flat = gmt.CHECK.judge(gmt.analyze(_table([0.5, 0.3, 0.2, 0.15, 0.1]), "quick"))
    verdicts = {a.name: a.verdict.value for a in dip.assertions}
    assert verdicts["cov4_dips_then_rises"] == "holds", dip.reason
    assert verdicts["kl_decreases"] == "holds" and verdicts["kl_monotone"] == "holds"
    assert verdicts["pass8_tournament_vs_minkl"] == "holds"
    assert {a.name: a.verdict.value for a in flat.assertions}["cov4_dips_then_rises"] == "fails"
