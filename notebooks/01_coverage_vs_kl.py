# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Coverage vs KL across the horizon (arXiv 2510.15020 v2, Prop. 3.2 and Figure 2)
#
# The MLE on `kl_horizon_lower_bound` and `horizon_mixture`: sequence KL grows linearly in H,
# while the coverage profile Cov_N stays flat. Sweep H and n, plot both with the bounds.
# Set `CI=true` for tiny sizes.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

jax.config.update("jax_enable_x64", True)
import covsim  # noqa: E402
from covsim import bounds  # noqa: E402
from covsim.instances import statistical as inst  # noqa: E402

SMALL = os.environ.get("CI") == "true"
HORIZONS = [8, 32, 128] if SMALL else [8, 16, 32, 64, 128, 256]
SEEDS = 8 if SMALL else 64
N_GRID = jnp.array([2.0, 16.0, 256.0])
OUT = tempfile.mkdtemp(prefix="covsim_nb01_")

# %%
def mle_metrics(instance, n, key):
    """Sample n sequences, fit the constrained MLE, return exact KL and bracketed Cov_N."""
    x, y = covsim.sample(instance.truth, instance.mu, n, key=key)
    model = covsim.fit_mle(instance.model(jnp.zeros(instance.features.shape[-1])), x, y,
                           **instance.fit_kwargs())
    lo, hi = covsim.coverage(instance.truth, model, instance.mu, N_GRID, method="bracket", bins=256)
    return covsim.kl(instance.truth, model, instance.mu), 0.5 * (lo + hi)


def sweep_kl_horizon(n, B=1.0):
    rows = []
    for H in HORIZONS:
        def one(k):
            k1, k2 = jax.random.split(k)
            return mle_metrics(inst.kl_horizon_lower_bound(n, H, B=B, key=k1), n, k2)
        kl, cov = jax.vmap(one)(jax.random.split(jax.random.PRNGKey(H), SEEDS))
        rows.append((H, float(kl.mean()), cov.mean(0)))
    return rows


# %%
n = 100
rows = sweep_kl_horizon(n)
for H, kl, cov in rows:
    print(f"H={H:4d}  KL={kl:.4f}  Cov_N(2,16,256)={[round(float(c), 5) for c in cov]}")

# %%
Hs = jnp.array([r[0] for r in rows], dtype=float)
fig, ax = plt.subplots(1, 2, figsize=(10, 4))
ax[0].loglog(Hs, [r[1] for r in rows], "o-", label="E KL (MLE)")
ax[0].loglog(Hs, bounds.kl_horizon_lower_bound(Hs, n, B=1.0), "--", label="κ(B)H/(2n)")
ax[0].set(xlabel="H", ylabel="sequence KL", title="KL grows with H")
for j, N in enumerate(N_GRID):
    ax[1].semilogx(Hs, [float(r[2][j]) for r in rows], "o-", label=f"Cov_{float(N):g}")
ax[1].axhline(float(bounds.kl_horizon_coverage_upper(n)), ls="--", color="k", label="1/(2n)")
ax[1].set(xlabel="H", ylabel="Cov_N", title="coverage does not")
for a in ax:
    a.legend()
fig.savefig(os.path.join(OUT, "kl_horizon.png"))
print("figure written to", OUT)

# %% [markdown]
# The mixture (Figure 2 analogue): an unseen hard prompt costs (H/2)·log 2 nats of KL but only
# its probability in coverage.

# %%
for H in HORIZONS[:2] if SMALL else HORIZONS[:4]:
    instance = inst.horizon_mixture(128, H, M=8 if SMALL else 32)
    kl, cov = mle_metrics(instance, 128, jax.random.PRNGKey(0))
    print(f"H={H:4d}  KL={float(kl):.4f}  Cov_16={float(cov[1]):.4f}  KL/Cov_16={float(kl / cov[1]):.1f}")
