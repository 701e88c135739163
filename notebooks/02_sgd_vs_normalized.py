# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Vanilla vs normalized SGD: the horizon separation
#
# arXiv 2510.15020 v2, Prop. 5.1 (vanilla SGD, lower bound) vs Thm 5.1 (normalized SGD);
# THEORY.md §6.2–6.3.
#
# The instance `two_prompts` (`theory_checks/_separation.py`, B = 1) has the mechanism of the
# vanilla-SGD lower bound: a *dense* prompt informative at all H positions (its sequence
# gradient scales with H, so vanilla SGD is stable only for η ≲ 1/H) and a *sparse* prompt
# informative at k = 8 positions (with η ≲ 1/H it needs Ω(H) visits). Vanilla SGD is run at
# every constant η of a grid; normalized SGD at the theorem's own η = min{1/(128B), …} and
# λ = log N/(16η) (λ ≥ 8B log N, ηλ ≤ log N/16), on the same data streams. Coverage is exact
# (closed-form binomial sums) at every iterate inside the training scan.
#
# Sizes are small; set `CI=true` for the smallest setting. The theory checks
# `sgd_horizon`, `sgd_lower_bound` and `normalized_sgd_rates` are the full versions.

# %%
import os
import pathlib
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

try:  # the repository root holds `theory_checks` (run from the root or from notebooks/)
    ROOT = pathlib.Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter
    ROOT = pathlib.Path.cwd().parent if pathlib.Path.cwd().name == "notebooks" else pathlib.Path.cwd()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from theory_checks._separation import SPARSE_K, sigma2_star, theorem_normalized, train_grid  # noqa: E402

SMALL = os.environ.get("CI") == "true"
HORIZONS = [8, 64] if SMALL else [8, 32, 128]
T = 500 if SMALL else 5000
ETAS = [2.0 ** -j for j in ((5, 8) if SMALL else (4, 5, 6, 7, 8, 9, 10, 11))]
N, SEEDS = 4.0, 4
FIGURES = pathlib.Path(os.environ.get("COVSIM_FIGURES", tempfile.mkdtemp(prefix="covsim_nb02_")))
print(f"SMALL={SMALL}, H={HORIZONS}, T={T}, {len(ETAS)} step sizes, seeds={SEEDS}; figures -> {FIGURES}")

# %% [markdown]
# ## Step sizes
#
# Normalized SGD: the theorem's constants (the cap 1/(128B) binds at these T). Vanilla: a
# constant-η grid; the lower bound quantifies over η, so we keep the best η at each H.

# %%
for H in HORIZONS:
    eta, lam = theorem_normalized(N, sigma2=sigma2_star(H), T=T)
    print(f"H={H:4d}  σ⋆²={sigma2_star(H):6.2f}   normalized η={eta:.3e}, λ={lam:.2f}, ηλ={eta * lam:.4f}")

# %% [markdown]
# ## Train and measure (exact iterate-averaged Cov_N)

# %%
key = jax.random.PRNGKey(0)  # the same seed keys for every H, η and method: the same data streams
vanilla, normalized = {}, {}
for H in HORIZONS:
    res = train_grid(H=H, k=SPARSE_K, N=N, T=T, method="vanilla", etas=ETAS, key=key, num_seeds=SEEDS)
    vanilla[H] = np.asarray(res.metrics["cov"])  # (E, S)
    eta, lam = theorem_normalized(N, sigma2=sigma2_star(H), T=T)
    res = train_grid(H=H, k=SPARSE_K, N=N, T=T, method="normalized", etas=[eta], lams=[lam], key=key,
                     num_seeds=SEEDS)
    normalized[H] = np.asarray(res.metrics["cov"][0])
    best = int(np.argmin(vanilla[H].mean(axis=1)))
    print(f"H={H:4d}  vanilla best η={ETAS[best]:.2e}: avg Cov_{N:g} = {vanilla[H][best].mean():.4f}   "
          f"normalized: {normalized[H].mean():.4f}")

# %% [markdown]
# ## The separation
#
# Left: vanilla's averaged coverage at every η (one curve per H) — the best η moves like 1/H
# and the best value rises. Right: the best-η vanilla curve grows with H, normalized SGD's is flat.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for H in HORIZONS:
    axes[0].plot(ETAS, np.maximum(vanilla[H].mean(axis=1), 1e-6), "o-", label=f"H={H}")
axes[0].set(xscale="log", yscale="log", xlabel="constant step size η", ylabel=f"avg Cov_{N:g} (vanilla)")
best = np.array([vanilla[H].mean(axis=1).min() for H in HORIZONS])
norm = np.array([normalized[H].mean() for H in HORIZONS])
axes[1].plot(HORIZONS, np.maximum(best, 1e-6), "o-", label="vanilla, best η")
axes[1].plot(HORIZONS, np.maximum(norm, 1e-6), "s-", label="normalized (Thm 5.1 η, λ)")
axes[1].set(xscale="log", yscale="log", xlabel="horizon H", ylabel=f"iterate-averaged Cov_{N:g}")
for ax in axes:
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
path = FIGURES / "sgd_vs_normalized_vs_H.png"
fig.savefig(path, dpi=100)
plt.close(fig)
print("saved", path)

# %%
slope_v = np.polyfit(np.log(HORIZONS), np.log(np.maximum(best, 1e-12)), 1)[0]
slope_n = np.polyfit(np.log(HORIZONS), np.log(np.maximum(norm, 1e-12)), 1)[0]
print(f"log-log slope in H: vanilla (best η) {slope_v:.2f}, normalized {slope_n:.2f}")
