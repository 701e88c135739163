"""A second eager call with new values but the same shapes compiles nothing.

Compilations are counted with ``jax.monitoring``: JAX records the event
``/jax/core/compile/backend_compile_duration`` once per XLA compilation (jitted functions
and eager primitives alike), so a call that hits every cache records none.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

import covsim
from covsim.fit import sgd
from covsim.instances._base import Ball
from covsim.selection import tournament

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_EVENTS: list[str] = []
monitoring.register_event_duration_secs_listener(lambda name, *_a, **_k: _EVENTS.append(name))


def compiles(call) -> int:
    """Number of XLA compilations while running ``call()`` (results blocked on)."""
    start = len(_EVENTS)
    jax.block_until_ready(call())
    return sum(1 for name in _EVENTS[start:] if name == COMPILE_EVENT)


P, H, V, D = 2, 3, 2, 2


def _inputs(seed):
    """Fresh values of the same shapes (NumPy first, then placed: placing compiles nothing)."""
    rng = np.random.default_rng(seed)
    mu = rng.random(P)
    mu = mu / mu.sum()
    out = {
        "p": covsim.TabularModel(jnp.asarray(rng.normal(size=(P, H, V + 1, V)))),
        "q": covsim.TabularModel(jnp.asarray(rng.normal(size=(P, H, V + 1, V)))),
        "mu": jnp.asarray(mu),
        "N": jnp.asarray(rng.uniform(1.5, 8.0, size=(3,))),
        "key": jax.random.PRNGKey(seed),
        "features": jnp.asarray(rng.normal(size=(P, H, V + 1, V, D))),
        "theta": jnp.asarray(rng.normal(size=(D,)) * 0.3),
        "x": jnp.asarray(rng.integers(0, P, size=16)),
        "y": jnp.asarray(rng.integers(0, V, size=(16, H))),
        "logliks": jnp.asarray(rng.normal(size=(4, 32))),
        "eta": float(rng.uniform(0.05, 0.2)),
    }
    return out


CALLS = {
    "sample": lambda a: covsim.sample(a["p"], a["mu"], 8, key=a["key"]),
    "log_prob": lambda a: covsim.log_prob(a["p"], a["x"][0], a["y"][0]),
    "kl": lambda a: covsim.kl(a["p"], a["q"], a["mu"]),
    "coverage_exact": lambda a: covsim.coverage(a["p"], a["q"], a["mu"], a["N"]),
    "coverage_mc": lambda a: covsim.coverage(a["p"], a["q"], a["mu"], a["N"], method="mc",
                                             num_samples=64, key=a["key"]),
    "coverage_bracket": lambda a: covsim.coverage(a["p"], a["q"], a["mu"], a["N"],
                                                  method="bracket", bins=64).upper,
    "fit_mle": lambda a: covsim.fit_mle(covsim.LinearModel(a["features"], jnp.zeros(D)),
                                        a["x"], a["y"], max_iter=20).theta,
    "sgd_train": lambda a: sgd.train(
        covsim.LinearModel(a["features"], jnp.zeros(D)),
        covsim.LinearModel(a["features"], a["theta"]), a["mu"],
        sgd.SGDConfig("vanilla", a["eta"]), num_steps=8, key=a["key"], constraint=Ball(1.0)).theta,
    "tournament": lambda a: tournament(a["logliks"], 2.0),
}


def test_the_counter_sees_a_compilation():
    f = jax.jit(lambda x: x * 3 + 1)
    a, b, c = (jnp.asarray(np.full(n, v)) for n, v in ((5, 1.0), (5, 2.0), (6, 1.0)))
    assert compiles(lambda: f(a)) == 1
    assert compiles(lambda: f(b)) == 0
    assert compiles(lambda: f(c)) == 1  # a new shape compiles


@pytest.mark.parametrize("name", list(CALLS))
def test_second_call_with_new_values_compiles_nothing(name):
    call = CALLS[name]
    first, second = _inputs(1), _inputs(2)
    assert compiles(lambda: call(first)) >= 0  # warm up (compiles what it needs)
    count = compiles(lambda: call(second))
    assert count == 0, f"{name}: the second call compiled {count} time(s)"


SAMPLE_LOOP = textwrap.dedent("""
    import resource, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax import monitoring
    import covsim
    events = []
    monitoring.register_event_duration_secs_listener(lambda name, *a, **k: events.append(name))
    model = covsim.TabularModel(jnp.zeros((1, 1, 1, 2)), horizon=2)
    mu = jnp.asarray(np.array([1.0]))
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    jax.block_until_ready(covsim.sample(model, mu, 4, key=keys[0]))
    warm = events.count("/jax/core/compile/backend_compile_duration")
    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    rss = []
    for i in range(1, 2000):
        jax.block_until_ready(covsim.sample(model, mu, 4, key=keys[i]))
        if i in (200, 1999):
            rss.append(rss_kb())
    after = events.count("/jax/core/compile/backend_compile_duration") - warm
    print(warm, after, rss[0], rss[1])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_sample_loop_compiles_once_and_keeps_memory_flat():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SAMPLE_LOOP], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    warm, after, rss_200, rss_end = map(int, out.stdout.split()[-4:])
    assert warm >= 1 and after == 0, (warm, after)
    # 1,800 more calls: memory flat (a leak of one small buffer per call would show)
    assert rss_end - rss_200 < 20 * 1024, f"RSS grew by {(rss_end - rss_200) / 1024:.1f} MiB"
