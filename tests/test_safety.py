"""Every bad input of issue 10's table raises on every path users take.

Each row is a function ``f(arg)`` with a good and a bad argument; the bad one must raise
  - eagerly: ``ValueError`` whose message matches the row's pattern;
  - under ``jax.jit(f)``: an error (equinox's run-time check: ``EqxRuntimeError`` /
    ``jax.errors.JaxRuntimeError``) whose text matches the same pattern;
  - under ``jax.vmap(f)`` over a batch ``[good, bad]`` (one bad element): the same.
Rows whose bad value sits in a model's parameters build the model inside ``f``, so the
eager path refuses at construction and the traced paths refuse at run time.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import covsim
from covsim.metrics import LooseBracketWarning

P, H, V, D = 2, 3, 2, 2
KEY = jax.random.PRNGKey(0)
MU = jnp.array([0.5, 0.5])
MU_07 = jnp.array([0.35, 0.35])  # sums to 0.7
MU_NEG = jnp.array([1.5, -0.5])  # sums to 1, one negative entry

_rng = np.random.default_rng(0)
LOGITS_P = jnp.asarray(_rng.normal(size=(P, H, V + 1, V)))
LOGITS_Q = jnp.asarray(_rng.normal(size=(P, H, V + 1, V)))
P_MODEL = covsim.TabularModel(LOGITS_P)
Q_MODEL = covsim.TabularModel(LOGITS_Q)
LOGITS_NAN = LOGITS_Q.at[1, 2, 0, 1].set(jnp.nan)
LOGITS_NEGINF_ROW = LOGITS_Q.at[0, 1, 2, :].set(-jnp.inf)  # one context, every logit -inf

FEATURES = jnp.asarray(_rng.normal(size=(P, H, V + 1, V, D)))
THETA = jnp.array([0.3, -0.2])
TRUTH_LIN = covsim.LinearModel(FEATURES, THETA)
FEATURES_NAN = FEATURES.at[0, 0, 2, 1, 0].set(jnp.nan)
THETA_NAN = THETA.at[1].set(jnp.nan)
X, Y = covsim.sample(TRUTH_LIN, MU, 16, key=KEY)
Y_BAD = Y.at[3, 1].set(V)  # a token >= V


def _fit(model, y=Y):
    return covsim.fit_mle(model, X, y, max_iter=20).theta


MODEL_MSG = r"logits must have no NaN or \+inf and at least one finite logit per context"

# (id, f, good argument, bad argument, pattern of the message)
ROWS = [
    ("kl_mu_sum_0.7", lambda mu: covsim.kl(P_MODEL, Q_MODEL, mu), MU, MU_07,
     r"kl: mu must .*sum to 1"),
    ("coverage_exact_N_0.5", lambda N: covsim.coverage(P_MODEL, Q_MODEL, MU, N),
     jnp.asarray(2.0), jnp.asarray(0.5), r"coverage: N must be >= 1"),
    ("coverage_mc_mu_sum_0.7",
     lambda mu: covsim.coverage(P_MODEL, Q_MODEL, mu, 2.0, method="mc", num_samples=64, key=KEY),
     MU, MU_07, r"mu must .*sum to 1"),
    ("sample_mu_sum_0.7", lambda mu: covsim.sample(P_MODEL, mu, 8, key=KEY)[1], MU, MU_07,
     r"sample: mu must .*sum to 1"),
    ("sample_mu_negative", lambda mu: covsim.sample(P_MODEL, mu, 8, key=KEY)[1], MU, MU_NEG,
     r"sample: mu must be non-negative"),
    ("fit_mle_token_ge_V", lambda y: _fit(covsim.LinearModel(FEATURES, jnp.zeros(D)), y), Y, Y_BAD,
     r"fit_mle: y must hold tokens in \[0, 2\)"),
    ("kl_nan_logit", lambda L: covsim.kl(P_MODEL, covsim.TabularModel(L), MU), LOGITS_Q, LOGITS_NAN,
     MODEL_MSG),
    ("coverage_exact_nan_logit",
     lambda L: covsim.coverage(P_MODEL, covsim.TabularModel(L), MU, 2.0), LOGITS_Q, LOGITS_NAN,
     MODEL_MSG),
    ("coverage_bracket_nan_logit",
     lambda L: covsim.coverage(P_MODEL, covsim.TabularModel(L), MU, 2.0, method="bracket", bins=64).upper,
     LOGITS_Q, LOGITS_NAN, MODEL_MSG),
    ("sample_nan_logit", lambda L: covsim.sample(covsim.TabularModel(L), MU, 8, key=KEY)[1],
     LOGITS_Q, LOGITS_NAN, MODEL_MSG),
    ("kl_all_neginf_context", lambda L: covsim.kl(P_MODEL, covsim.TabularModel(L), MU), LOGITS_Q,
     LOGITS_NEGINF_ROW, MODEL_MSG),
    ("sample_all_neginf_context",
     lambda L: covsim.sample(covsim.TabularModel(L), MU, 8, key=KEY)[1], LOGITS_Q, LOGITS_NEGINF_ROW,
     MODEL_MSG),
    ("fit_mle_nan_feature", lambda F: _fit(covsim.LinearModel(F, jnp.zeros(D))), FEATURES, FEATURES_NAN,
     r"features must be finite"),
    ("kl_linear_nan_theta", lambda t: covsim.kl(TRUTH_LIN, covsim.LinearModel(FEATURES, t), MU), THETA,
     THETA_NAN, r"theta must be finite"),
]


def _raises(call, pattern, types=(Exception,)):
    with pytest.raises(types) as info:
        jax.block_until_ready(call())
    text = str(info.value)
    assert re.search(pattern, text), f"message {text!r} does not match {pattern!r}"


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_good_argument_runs(row):
    _, f, good, _, _ = row
    jax.block_until_ready(f(good))
    jax.block_until_ready(jax.jit(f)(good))
    jax.block_until_ready(jax.vmap(f)(jnp.stack([good, good])))


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_argument_eager(row):
    _, f, _, bad, pattern = row
    _raises(lambda: f(bad), pattern, ValueError)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_argument_jit(row):
    _, f, _, bad, pattern = row
    _raises(lambda: jax.jit(f)(bad), pattern)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_argument_vmap(row):
    _, f, good, bad, pattern = row
    _raises(lambda: jax.vmap(f)(jnp.stack([good, bad])), pattern)


def test_kl_over_a_batch_of_mus_one_bad():
    mus = jnp.stack([MU, MU_07, jnp.array([0.9, 0.1])])
    pattern = r"kl: mu must .*sum to 1"
    _raises(lambda: [covsim.kl(P_MODEL, Q_MODEL, m) for m in mus], pattern, ValueError)
    _raises(lambda: jax.vmap(lambda m: covsim.kl(P_MODEL, Q_MODEL, m))(mus), pattern)
    _raises(lambda: jax.jit(jax.vmap(lambda m: covsim.kl(P_MODEL, Q_MODEL, m)))(mus), pattern)


def test_exact_coverage_refuses_return_stderr():
    with pytest.raises(ValueError, match="return_stderr"):
        covsim.coverage(P_MODEL, Q_MODEL, MU, 2.0, method="exact", return_stderr=True)


def test_pass_at_k_never_negative_zero():
    value = float(covsim.pass_at_k(10, 0, 2))
    assert value == 0.0 and math.copysign(1.0, value) == 1.0


def test_mc_stderr_with_zero_hits_is_three_over_m():
    # q = p: no sequence has p/q > N = 4, so the estimate is 0 and its stderr 3/M
    M = 256
    est, se = covsim.coverage(P_MODEL, P_MODEL, MU, 4.0, method="mc", num_samples=M, key=KEY,
                              return_stderr=True)
    assert float(est) == 0.0
    assert float(se) == pytest.approx(3.0 / M)


def test_loose_bracket_warning_is_a_warning_class():
    assert issubclass(LooseBracketWarning, Warning)
