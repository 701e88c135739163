"""Shared fixtures: float64 for exact work (set here once for the whole suite), brute-force
references on tiny laws."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import covsim  # noqa: E402


def random_tabular(rng, P, H, V, *, scale=2.0, zero_frac=0.0, prev=True, broadcast_h=False):
    """Random logits (P, H|1, V+1|1, V) with a fraction of -inf entries (never a whole row)."""
    shape = (P, 1 if broadcast_h else H, V + 1 if prev else 1, V)
    logits = rng.normal(size=shape) * scale
    if zero_frac > 0:
        mask = rng.random(shape) < zero_frac
        keep = np.argmax(rng.random(shape), axis=-1)
        np.put_along_axis(mask, keep[..., None], False, axis=-1)
        logits = np.where(mask, -np.inf, logits)
    return covsim.TabularModel(jnp.asarray(logits), horizon=H)


def brute_force(p, q, mu):
    """All (weight, log p, log q, per-step KL sum) by explicit enumeration with NumPy."""
    lp = np.asarray(covsim.next_token_log_probs(p))
    lq = np.asarray(covsim.next_token_log_probs(q))
    H, V = p.horizon, p.vocab_size
    rows = []
    for x in range(len(mu)):
        for y in itertools.product(range(V), repeat=H):
            a = b = eps = 0.0
            prev = V
            for h, v in enumerate(y):
                cp = lp[min(x, lp.shape[0] - 1), min(h, lp.shape[1] - 1), min(prev, lp.shape[2] - 1)]
                cq = lq[min(x, lq.shape[0] - 1), min(h, lq.shape[1] - 1), min(prev, lq.shape[2] - 1)]
                with np.errstate(invalid="ignore", divide="ignore"):
                    pp = np.exp(cp)
                    terms = np.where(pp > 0, pp * (cp - cq), 0.0)
                eps += terms.sum()
                a += cp[v]
                b += cq[v]
                prev = v
            rows.append((mu[x] * np.exp(a), a, b, eps))
    return np.array(rows)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def runtime_checks_stay_on(monkeypatch):
    """The CLI switches covsim's traced value checks off unless COVSIM_RUNTIME_CHECKS is set;
    in-process CLI calls must not switch them off for the rest of the suite (a jitted
    function traced without them would keep that trace). Restored after every test."""
    monkeypatch.setenv("COVSIM_RUNTIME_CHECKS", "1")
    from covsim._validate import runtime_checks_enabled

    before = runtime_checks_enabled()
    yield
    covsim.runtime_checks(before)
