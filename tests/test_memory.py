"""Monte-Carlo coverage at long horizons stays within memory: samples are drawn in chunks
of ⌊token_budget / H⌋ sequences (``covsim.metrics.DEFAULT_TOKEN_BUDGET`` = 2^24 tokens), so
the peak does not grow with the number of samples.

Measured once (shared 2-core CPU, V = 2 law below): H = 10^5 with 20 000 samples (chunks of
167 sequences): peak RSS 0.73 GB, 411 s wall (75 s of CPU); H = 10^4 with 20 000 samples
(chunks of 1 677): peak RSS 0.74 GB, 51 s. The test runs H = 10^4 with the same budget and three chunks (the
last one partial): the peak is one chunk's, whatever the number of samples.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from covsim.metrics import DEFAULT_TOKEN_BUDGET, mc_chunk

PEAK_LIMIT_KB = 3 * 1024 * 1024  # 3 GB

RUN = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    import covsim
    H, M = int(sys.argv[1]), int(sys.argv[2])
    # V = 2, one prompt, position and previous-token axes broadcast: the law costs nothing,
    # the samples (M x H tokens) are what could blow memory
    p = covsim.TabularModel(jnp.asarray(np.log([[[[0.5, 0.5]]]])), horizon=H)
    q = covsim.TabularModel(jnp.asarray(np.log([[[[0.6, 0.4]]]])), horizon=H)
    est = covsim.coverage(p, q, jnp.ones(1), jnp.asarray([2.0, 16.0]), method="mc",
                          num_samples=M, key=jax.random.PRNGKey(0))
    est = np.asarray(est)
    assert np.all(np.isfinite(est)) and np.all((est >= 0) & (est <= 1)), est
    # VmHWM: this process's own peak RSS (ru_maxrss would also count the parent's pages at
    # fork time: a test process that grew large makes it meaningless)
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
""")


def test_chunk_is_the_token_budget_over_the_horizon():
    assert mc_chunk(20_000, 10**5) == DEFAULT_TOKEN_BUDGET // 10**5 == 167
    assert mc_chunk(20_000, 10**4) == DEFAULT_TOKEN_BUDGET // 10**4 == 1677
    assert mc_chunk(100, 10**4) == 100  # never more than the samples asked for
    assert mc_chunk(20_000, 10**4, chunk_size=10) == 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
def test_mc_coverage_at_long_horizon_stays_under_3gb():
    H = 10**4
    chunk = DEFAULT_TOKEN_BUDGET // H
    M = 2 * chunk + 1  # three chunks, the last one partial
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", RUN, str(H), str(M)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    peak_kb = int(out.stdout.split()[-1])
    assert peak_kb < PEAK_LIMIT_KB, f"peak RSS {peak_kb / 2**20:.2f} GB"
