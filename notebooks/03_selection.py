# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Selecting checkpoints: tournament vs min-KL vs min-cross-entropy
#
# On the `mode_tradeoff` instance (CONSTRUCTIONS.md §11, the project's analogue of Figure 1 of
# arXiv 2510.15020) online SGD lowers the KL to π_D monotonically, but late in training it
# sacrifices the minority class, so coverage — and Pass@N for larger N — gets worse again.
# We use its *continuum* variant (the one the `mode_tradeoff` / `tournament` / `best_of_n`
# checks use): 64 prompts with 1–2 pivotal positions, per-prompt class margins and shared-mode
# strengths, so coverage along the trajectory takes a continuum of values.
# We save checkpoints along one trajectory and pick one three ways:
#
# - **simple tournament** (v2 Eqs. 28–29, Thm 6.3): only held-out log-likelihoods, no access to π_D;
# - **min cross-entropy** on the same held-out sample (what a validation loss would choose);
# - **min KL** (an oracle: needs π_D's densities).
#
# Then we compare the Pass@N curves of the three picks (exact Pass@N, THEORY.md §4.3).

# %%
import os
import pathlib
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path.cwd()
if not (ROOT / "covsim").exists() and (ROOT.parent / "covsim").exists():
    ROOT = ROOT.parent
sys.path.insert(0, str(ROOT))

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import covsim  # noqa: E402
from covsim.bon import pass_at_n_exact  # noqa: E402
from covsim.fit.sgd import SGDConfig, train  # noqa: E402
from covsim.exact import independent_tail  # noqa: E402
from covsim.instances.selection import mode_tradeoff  # noqa: E402
from covsim.selection import heldout_logliks, select_min_cross_entropy, select_min_kl, tournament  # noqa: E402

CI = os.environ.get("CI") == "true"
NUM_STEPS = 300 if CI else 5000
HELDOUT = 256 if CI else 2048
FIGURES = pathlib.Path(tempfile.mkdtemp(prefix="covsim_03_selection_"))
print("steps", NUM_STEPS, "held-out", HELDOUT, "figures in", FIGURES)

# %% [markdown]
# ## Fine-tuning trajectory
# Vanilla SGD, batch 128, η = 2/(H·B_v²) on the mean per-sequence log-likelihood (`train`
# averages the batch gradient), from the "early-stopped" θ₁ = (0.05, 0, 0).

# %%
COV_N = (2.0, 4.0, 4.6, 5.7, 6.0, 8.0, 16.0)
inst = mode_tradeoff(R=32, pivot_counts=(1, 2), class_scale=(0.3, 1.0), B_s=1.0, shared_scale=(0.5, 2.0),
                     avoid_N=COV_N)
checkpoints = tuple(t for t in (1, 3, 10, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000) if t <= NUM_STEPS)
config = SGDConfig(method="vanilla", learning_rate=inst.info["eta"], batch_size=inst.info["batch_size"])
result = train(inst.model(inst.info["theta_init"]), inst.truth, inst.mu, config, num_steps=NUM_STEPS,
               key=jax.random.PRNGKey(0), constraint=inst.constraint, theta_init=inst.info["theta_init"],
               checkpoints=checkpoints)
thetas = result.checkpoint_thetas
stacked = eqx.filter_vmap(lambda th: covsim.LinearModel(inst.features, th, inst.horizon))(thetas)
kls = np.asarray(jax.vmap(lambda th: covsim.kl(inst.truth, inst.model(th), inst.mu))(thetas))
for t, k in zip(checkpoints, kls):
    print(f"t = {t:5d}  KL = {k:.3f}")

# %% [markdown]
# ## Three selection rules on one held-out sample

# %%
x, y = covsim.sample(inst.truth, inst.mu, HELDOUT, key=jax.random.PRNGKey(1))
logliks = heldout_logliks(stacked, x, y)
picks = {
    "tournament (N = 8)": int(tournament(logliks, 8.0)[0]),
    "tournament (N = 2)": int(tournament(logliks, 2.0)[0]),
    "min cross-entropy": int(select_min_cross_entropy(logliks)[0]),
    "min KL (oracle)": int(select_min_kl(stacked, inst.truth, inst.mu)[0]),
}
for rule, index in picks.items():
    print(f"{rule:20s} -> checkpoint t = {checkpoints[index]}")

# %% [markdown]
# ## Pass@N of the picks
# Pass@N = E_x[1 − (1 − π̂(y⋆(x)|x))^N] with y⋆ the intended response (exact).

# %%
Ns = jnp.asarray([1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 32.0])
fig, ax = plt.subplots(figsize=(6, 4))
for rule, index in picks.items():
    curve = np.asarray(pass_at_n_exact(inst.model(thetas[index]), inst.mu, inst.info["target_y"], Ns))
    ax.plot(np.asarray(Ns), curve, "o-", label=f"{rule} (t = {checkpoints[index]})")
    print(rule, np.round(curve, 4))
ax.set_xscale("log")
ax.set(xlabel="N", ylabel="Pass@N", title="mode_tradeoff: Pass@N of the selected checkpoint")
ax.legend(fontsize=8)
fig.savefig(FIGURES / "pass_at_n_by_rule.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## Pass@N along the trajectory
# KL falls monotonically, while Pass@N for the larger N peaks mid-training: the last
# checkpoint (min KL / min CE) is not the best for large N.

# %%
passes = np.asarray(jax.vmap(lambda th: pass_at_n_exact(inst.model(th), inst.mu, inst.info["target_y"],
                                                         jnp.asarray([4.0, 8.0, 12.0])))(thetas))
fig, ax = plt.subplots(figsize=(6, 4))
for j, n in enumerate((4, 8, 12)):
    ax.plot(checkpoints, passes[:, j], "o-", label=f"Pass@{n}")
for rule, index in picks.items():
    ax.axvline(checkpoints[index], ls=":", color="gray")
ax2 = ax.twinx()
ax2.plot(checkpoints, kls, "k--", label="KL")
ax2.set_yscale("log")
ax.set_xscale("log")
ax.set(xlabel="SGD iteration t", ylabel="Pass@N")
ax2.set_ylabel("KL (dashed)")
ax.legend(fontsize=8, loc="lower right")
fig.savefig(FIGURES / "pass_along_trajectory.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## Coverage along the trajectory
# Exact Cov_N by meet in the middle over the per-position log-ratios (the features ignore the
# previous token). Mid-range N: 1 at the start, 0 mid-training, then a gradual rise once the
# minority class is traded away — while KL keeps falling.

# %%
def tables(theta):
    return jax.nn.log_softmax(jnp.einsum("phuvd,d->phuv", inst.features, theta), axis=-1)[:, :, 0, :]


truth_lp = tables(inst.info["theta_star"])
covs = np.stack([np.asarray(independent_tail(truth_lp, truth_lp - tables(th), inst.mu, jnp.asarray(COV_N)))
                 for th in thetas])
fig, ax = plt.subplots(figsize=(6, 4))
for j, n in enumerate(COV_N):
    if n in (4.6, 5.7, 8.0, 16.0):
        ax.plot(checkpoints, covs[:, j], "o-", label=f"Cov_{n:g}")
ax.set_xscale("log")
ax.set(xlabel="SGD iteration t", ylabel="Cov_N(π_D‖π_t)")
ax.legend(fontsize=8)
fig.savefig(FIGURES / "coverage_along_trajectory.png", dpi=100)
plt.close(fig)
print(np.round(covs, 3))
print("figures:", sorted(p.name for p in FIGURES.iterdir()))
