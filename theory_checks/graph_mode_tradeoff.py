r"""Figure 1 with a transformer: along fine-tuning KL falls while mid-range coverage dips, then rises.

Claim (arXiv 2510.15020 v2 §3 / Figure 1, App. C.2; THEORY.md §8 "Figure 1", §9 rows
"Fig. 1" and "7.1", §4.3): a transformer pre-trained by next-token cross-entropy on the
uniform mixture of G₁ / G₂ / G₃ and then fine-tuned online on (0.9, 0.1, 0) — where the
class of a G₁/G₂ prompt is a hidden parity too hard to learn, so the model must trade the
two modes off — has, along fine-tuning, a KL to the known π_D that falls monotonically,
while Cov_N for mid-range N first dips (the majority class G₁ is learned) and then rises
(the minority G₂ is sacrificed); across checkpoints Pass@N ranks like Cov_{N/2} better than
like KL for the larger N; and the simple tournament's checkpoint has a Pass@8 at least the
min-KL checkpoint's (the paper reads about 1.00 against 0.96).

Mechanism (THEORY §8, [project] reading): a model blind to the hidden parity h(x) puts
mass q₁ on G₁'s path and q₂ on G₂'s on every prompt; pre-training's optimum is
q₁ = q₂ = 5/12 (ratio 2.4 to the fine-tuning π_D on both classes), fine-tuning's is
q₁ = 0.9, q₂ = 0.1 (ratio 1.11 on G₁, 10 on G₂). For 2.4 < N < 10,
Cov_N ≈ 0.9·P[q₁ ≤ 1/N] + 0.1·P[q₂ ≤ 1/N]: the G₁ term vanishes as q₁ grows, the G₂
term (0.1) enters once q₂ < 1/N; Pass@N = 0.9·(1 − (1 − q₁)^N) + 0.1·(1 − (1 − q₂)^N)
peaks in between (≈ 0.99 at q₁ = 0.7 for N = 8) and ends at 0.957 — so the KL-optimal end
is not the Pass@8-best checkpoint.

Instance (``covsim.graphs.tradeoff_task``, CONSTRUCTIONS §16): L intermediate layers of 4
nodes, two random doubled layers, compact prompts (2L + 4 tokens), responses = paths
(L + 2 tokens). Model (``covsim.transformer``): GPT-2 style, pre-LN, GeLU, learned absolute
positions, untied unembedding; AdamW (weight decay 0.01) at a fixed learning rate.
Pre-training: on a fixed dataset of ``dataset`` prompts/responses drawn once per seed from
the uniform mixture (minibatches drawn from it with replacement). Fine-tuning: from the
last pre-training model with a fresh AdamW state, online (fresh samples of (0.9, 0.1, 0)
every step), ``ft_ckpts`` evenly spaced checkpoints plus the start (c = 0). At every
checkpoint, on the same ``n_eval`` fresh prompts of the fine-tuning mixture, every support
path of π_D is scored (exact KL, Cov_N for N ∈ {2, 3, 4, 4.6, 5.7, 6} and Pass@N for
N ∈ {4, 8, 12} with success y ∈ supp π_D); class means are combined with the fine-tuning
weights (stratified). The tournament (THEORY §7.1, ``covsim.selection.tournament``) sees
only the checkpoints' log-likelihoods on ``n_heldout`` other fresh samples of the
fine-tuning π_D; the min-KL pick is the oracle (exact KL).

Rules (declared before any run; paired over the same seeds; S seeds, c = 0..C):

- ``kl_decreases`` [cap 0]: KL(c = C) − KL(c = 0), paired per seed (THEORY §8: KL falls).
- ``kl_monotone`` [zero_violations]: no consecutive pair of checkpoints whose paired 95%
  t-CI of KL_{c+1} − KL_c lies entirely above 0 (THEORY §8: "monotonically").
- ``cov{N}_dips_then_rises`` [paired ≥ 0.01], N ∈ {3, 4, 4.6, 5.7} (the paper's levels inside
  (2.4, 10), where the h-blind picture above predicts a rise): per seed
  min(Cov_N(c = 0), Cov_N(c = C)) − min_{0<c<C} Cov_N(c) — an interior minimum below both ends.
  0.01 = a tenth of the minority mass 0.1 (the size of the rise the mechanism predicts); a
  trajectory with no interior dip gives ≤ 0.
- ``pass{N}_tracks_cov`` [paired ≥ 0], N ∈ {8, 12}: per seed, over the checkpoints,
  Spearman(Pass@N, −Cov_{N/2}) − Spearman(Pass@N, −KL) (THEORY §4.3 pairs Pass@N with
  Cov_{N/2}; N = 4 is an observation).
- ``pass8_tournament_vs_minkl`` [paired ≥ 0]: Pass@8(tournament pick at level 4) −
  Pass@8(min-KL pick) (THEORY §9 row "7.1"; Figure 1).

Observations: per-checkpoint medians over seeds of KL, Cov_N, Pass@N and the class-wise
single-draw success q₁, q₂ (the mechanism), the picks, the pre-training loss.

Control (``variant="pretrain_mix"``): fine-tuning (and evaluation) on the pre-training
mixture (⅓, ⅓, ⅓) itself: π_D has no minority mode to sacrifice (the h-blind optimum has
ratios 1.8, 1, 1 and 0.2: Cov_N = 0 for N ≥ 2), so coverage only falls as the model
improves and the ``dips_then_rises`` rules must fail. It shares the main run's seed keys
(``paired_over=("variant",)``) and so its pre-trained models (cached within a process).

Sizes: tiny (test suite): L = 3, a one-layer width-16 model, 40 + 20 steps — not
meaningful (Cov_N = 1 throughout; ≈ 20 s for both runs, the control reusing the main run's
compiled functions and pre-trained models). quick: L = 4, width 32, 3 layers, 2 heads,
batch 32; fixed dataset of 8000, 1500 pre-training steps at lr 3e-3; 600 fine-tuning steps at
lr 3e-5, 24 checkpoints (every 25 steps); 640 eval prompts, 512 held-out samples; 8 seeds.
(At the fine-tuning lr 3e-4 the whole trade-off happened inside the first 50 steps — q₂ 0.42
→ 0.06 — so no checkpoint saw it; the paper's fine-tuning lr is 1/20 of its pre-training lr.
The dip lasts ≈ 100 steps, hence checkpoints every 25.)
full: the paper's sizes (6 layers, width 384, 4 heads, L = 8, fixed dataset 8 × 64,000,
200k pre-training steps at lr 1e-4, 50k fine-tuning steps at lr 5e-6 with 25 checkpoints,
batch 128, 16 seeds, 8192 eval prompts, 2048 held-out samples), for an accelerator only
(not run; no device was available to this session).

Implementation: training runs in chunks of K = ft_steps / ft_ckpts AdamW steps (one
compiled ``lax.scan`` shared by pre-training, fine-tuning and the control; the learning rate
is data), seeds vmapped and sharded (``shard_seeds``). Fine-tuning is online: each chunk's
K·batch samples are fresh. The pre-training dataset is the paper's protocol; its minibatches
are drawn with replacement (the paper does not say how it iterates).

Measured (``--quick``, 2 shared CPU cores: 131 s wall, 205 s CPU; control 132 s, its own
pre-training included): **fails**, on N = 3; N = 4, 4.6 and 5.7 are inconclusive.
Pre-training ends at loss 1.32 (h-blind optimum 1.14) with q₁ = 0.39, q₂ = 0.33 (medians).
Along fine-tuning q₁ rises 0.39 → 0.47 → 0.53 → … → 0.83 and q₂ falls 0.33 → 0.27 → 0.22 →
… → 0.061 (below the h-blind optimum 0.1; KL 1.03 → 0.46, still falling).

- ``kl_decreases`` holds (−0.62 [−0.79, −0.46]); ``kl_monotone`` holds (0 of 24).
- ``cov3_dips_then_rises`` **fails** (0.003 [−0.001, 0.006]): Cov_3 falls 0.36 → 0.22 → 0.14
  → … → 0.10 and stays. The G₂ term (q₂ < 1/3 from the start) is in before the G₁ term
  (q₁ ≤ 1/3 on some G₁ prompts) has gone, so there is no interior minimum. The mechanism
  above predicts this near N = 2.4: with q₁ + q₂ ≈ 0.7–0.9, both exceed 1/3 only while q₂ is
  in (1/3, ≈ 0.5), and the pre-trained start has q₂ near 1/3 already.
- ``cov4`` 0.018 [0.003, 0.034], ``cov4.6`` 0.020 [−0.000, 0.040], ``cov5.7`` 0.025
  [0.001, 0.049]: inconclusive (each straddles 0.01). Medians: Cov_4 0.17 → 0.094 (c = 3)
  → 0.10; Cov_4.6 0.11 → 0.076 (c = 1) → 0.10; Cov_5.7 0.061 → 0.047 (c = 1) → 0.099.
  The dip is there in the medians but shallow: its depth is the start's coverage, i.e. how
  far the under-trained pre-trained model sits from q = 5/12, which varies by seed.
- ``pass8_tracks_cov`` holds (1.19 [0.80, 1.59]) and ``pass12_tracks_cov`` holds (1.66
  [1.51, 1.82]): Pass@8 peaks at 0.967 (c = 3) and ends at 0.938, Pass@12 0.984 (c = 1) →
  0.950, while KL keeps falling, so Spearman(Pass@N, −KL) is negative. Pass@4 (an
  observation) rises to 0.92 and stays: difference 0.06.
- ``pass8_tournament_vs_minkl`` holds (+0.028 [0.023, 0.033]): the level-4 tournament picks
  c = 2–5 (Pass@8 0.966), min-KL always the last checkpoint (0.938) — the paper's 1.00
  against 0.96.

With ``--seeds 16`` (the same cell keys, 8 more seeds; 467 s wall, 392 s CPU, under load)
the three inconclusive levels hold: N = 4 0.019 [0.010, 0.027], N = 4.6 0.028 [0.016, 0.040],
N = 5.7 0.034 [0.021, 0.047]; N = 3 still fails (0.002 [0.000, 0.004]), the other rules hold
(tournament +0.028 [0.025, 0.030]); verdict *fails* on N = 3 alone. So at this size the
dip-then-rise shows for N ≥ 4 given 16 seeds; at N = 3 it was not seen at any setting tried.

An earlier run with 12 checkpoints (every 50 steps; other cell keys, so other pre-trained
models: q₁ = 0.33, q₂ = 0.37 at the start) gave the same picture with deeper dips: N = 3
fails (0.001 [−0.001, 0.003]), N = 4 inconclusive (0.019 [0.007, 0.030]), N = 4.6 holds
(0.037 [0.022, 0.052]), N = 5.7 holds (0.043 [0.021, 0.065]); the other rules hold
(tournament +0.030 [0.028, 0.033]).

Control (quick): **fails** as it must. All four ``dips_then_rises`` rules fail (≤ 0.003, CIs
below 0.01: Cov_3 0.21 → 0.027, Cov_5.7 0.057 → 0, falling throughout), and so does
``pass8_tracks_cov``; KL still falls (0.50 → 0.36) and Pass@N = 1 at every checkpoint.
"""

from __future__ import annotations

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from covsim import graphs as G
from covsim import transformer as T
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.sharding import shard_seeds
from covsim.selection import tournament
from theory_checks._figure1 import paired_t, spearman

COV_N = (2.0, 3.0, 4.0, 4.6, 5.7, 6.0)
PASS_N = (4.0, 8.0, 12.0)
U_SHAPE_N = (3.0, 4.0, 4.6, 5.7)
TRACK_N = (8.0, 12.0)
TOUR_N = 8.0
DIP_FLOOR = 0.01
PRE_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
FT_WEIGHTS = (0.9, 0.1, 0.0)
_LEVELS = COV_N + PASS_N + (1.0,)  # 1.0: single-draw success q = π̂(supp π_D | x)
_SUPPORT = 4  # two doubled layers: at most 4 paths carry π_D mass (slots >= 4 are padding)

_FIG1 = "THEORY §8 Figure 1 / §9 row 'Fig. 1'"
RULES = (
    Rule("kl_decreases", "cap", "KL(last checkpoint) - KL(start of fine-tuning), paired per seed", 0.0,
         regime="c = 0 and c = C of the fine-tuning trajectory",
         theory=f"{_FIG1}: KL falls along fine-tuning"),
    Rule("kl_monotone", "zero_violations",
         "consecutive checkpoints whose paired 95% t-CI of KL_{c+1} - KL_c lies entirely above 0", None,
         regime="every consecutive checkpoint pair", theory=f"{_FIG1}: 'KL falls monotonically'"),
    *(Rule(f"cov{n:g}_dips_then_rises", "paired",
           f"min(Cov_{n:g}(c=0), Cov_{n:g}(c=C)) - min over 0<c<C of Cov_{n:g}(c), per seed", DIP_FLOOR,
           regime="all checkpoints (interior minimum against both ends)",
           theory=f"{_FIG1}: 'Cov_N dips, then rises as the minority class is sacrificed' (N in (2.4, 10))")
      for n in U_SHAPE_N),
    *(Rule(f"pass{n:g}_tracks_cov", "paired",
           f"Spearman(Pass@{n:g}, -Cov_{n / 2:g}) - Spearman(Pass@{n:g}, -KL) over checkpoints, per seed",
           0.0, regime="all checkpoints of each seed's trajectory",
           theory="THEORY §4.3 / §8: 'coverage predicts Pass@N better for large N' (Pass@N with Cov_{N/2})")
      for n in TRACK_N),
    Rule("pass8_tournament_vs_minkl", "paired",
         "Pass@8(tournament pick at level 4) - Pass@8(min-KL pick), paired per seed", 0.0,
         regime="all checkpoints as candidates; tournament on held-out samples of the fine-tuning pi_D",
         theory="THEORY §9 row '7.1' / §8 Figure 1: tournament pick's Pass@N >= the min-KL pick's"),
)

_SIZES = {
    "tiny": dict(L=3, width=16, depth=1, heads=2, batch=16, dataset=256, pre_steps=40, pre_lr=3e-3,
                 ft_steps=20, ft_ckpts=5, ft_lr=3e-4, n_eval=64, n_heldout=64),
    "quick": dict(L=4, width=32, depth=3, heads=2, batch=32, dataset=8000, pre_steps=1500, pre_lr=3e-3,
                  ft_steps=600, ft_ckpts=24, ft_lr=3e-5, n_eval=640, n_heldout=512),
    "full": dict(L=8, width=384, depth=6, heads=4, batch=128, dataset=512000, pre_steps=200000,
                 pre_lr=1e-4, ft_steps=50000, ft_ckpts=25, ft_lr=5e-6, n_eval=8192, n_heldout=2048),
}


def grid(size: str) -> list[dict]:
    return [dict(_SIZES[size], variant="main")]


def control_grid(size: str) -> list[dict]:
    return [dict(_SIZES[size], variant="pretrain_mix")]


def _ft_weights(variant: str):
    if variant not in ("main", "pretrain_mix"):
        raise ValueError(f"variant must be 'main' or 'pretrain_mix', got {variant!r}")
    return FT_WEIGHTS if variant == "main" else PRE_WEIGHTS


_DIRECTION = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.01))
"""AdamW's update direction; the step is −lr × direction, i.e. exactly ``optax.adamw(lr, weight_decay=0.01)``
(``covsim.transformer.make_optimizer("adam", lr)``) with the learning rate passed as data, so one
compiled training loop serves pre-training, fine-tuning and the control."""


def _model(cell, key):
    task = G.tradeoff_task(int(cell["L"]), PRE_WEIGHTS)
    return T.init_gpt(key, task.vocab, task.prompt_len + task.response_len, width=int(cell["width"]),
                      depth=int(cell["depth"]), heads=int(cell["heads"]))


def _static(cell):
    """The model's non-array part (no arrays computed: ``filter_eval_shape``)."""
    shapes = eqx.filter_eval_shape(_model, cell, jax.random.PRNGKey(0))
    return eqx.partition(shapes, lambda v: isinstance(v, jax.ShapeDtypeStruct))[1]


@eqx.filter_jit
def _init_state(keys, width, depth, heads, L):
    """Fresh models (S seeds, ``covsim.transformer.init_gpt``'s initialization laws) and AdamW states.

    Each seed's key seeds an ``rbg`` key for the initialization: the same laws, but XLA compiles
    its generator in a third of threefry's time (the init dominated the tiny run's compile)."""
    cell = dict(L=L, width=width, depth=depth, heads=heads)

    def one(k):
        kr = jax.random.wrap_key_data(jax.random.bits(k, (4,), jnp.uint32), impl="rbg")
        return eqx.filter(_model(cell, kr), eqx.is_array)

    params = jax.vmap(one)(shard_seeds(keys))
    return params, jax.vmap(_DIRECTION.init)(params)


@eqx.filter_jit
def _fresh_opt(params):
    return jax.vmap(_DIRECTION.init)(params)


@eqx.filter_jit
def _train_chunk(params, state, static, xs, ys, lr):
    """K AdamW steps per seed on minibatches xs (S, K, B, P), ys (S, K, B, R): next-token
    cross-entropy on the response tokens (``covsim.transformer``'s loss); one lax.scan."""

    def one(p, s, x, y):
        def step(carry, xy):
            p, s = carry
            loss, g = jax.value_and_grad(
                lambda q: -T.sequence_log_probs(eqx.combine(q, static), *xy).sum(-1).mean())(p)
            u, s = _DIRECTION.update(g, s, p)
            return (jax.tree_util.tree_map(lambda a, b: a - lr * b, p, u), s), loss

        (p, s), losses = jax.lax.scan(step, (p, s), (x, y))
        return p, s, losses

    return jax.vmap(one)(params, state, shard_seeds(xs), shard_seeds(ys))


@eqx.filter_jit
def _fresh(key, *, task, K, B, num_seeds):
    """K·B fresh samples of `task`'s π_D per seed: x (S, K, B, P), y (S, K, B, R), the class
    cls (S, K, B) and π_D's support paths (S, K, B, 4, R) with log π_D (S, K, B, 4) (as
    ``covsim.graphs.sample_batch``, keeping what the exact metrics need; slots ≥ 4 are padding
    for the tradeoff classes, which have two doubled layers)."""
    def one(k):
        kg, ky = jax.random.split(k)
        g = G.sample_graphs(kg, task, K * B)
        paths, lp = G.support(task, g)
        paths, lp = paths[:, :_SUPPORT], lp[:, :_SUPPORT]
        idx = jax.random.categorical(ky, lp, axis=-1)
        y = jnp.take_along_axis(paths, idx[:, None, None], 1)[:, 0]
        x = G.prompt_tokens(task, g)
        return {"x": x.reshape(K, B, -1), "y": y.reshape(K, B, -1), "cls": g["cls"].reshape(K, B),
                "paths": paths.reshape(K, B, _SUPPORT, -1), "lp": lp.reshape(K, B, _SUPPORT)}
    return jax.vmap(one)(shard_seeds(jax.random.split(key, num_seeds)))


def _flat(d, n):
    """The first n of the K·B samples of a `_fresh` output, per seed."""
    return {k: v.reshape((v.shape[0], -1) + v.shape[3:])[:, :n] for k, v in d.items()}


@eqx.filter_jit
def _gather(dx, dy, key, *, K, B):
    """K minibatches of B rows drawn with replacement from each seed's fixed dataset (S, M, ·)."""
    S, M = dx.shape[:2]
    idx = jax.random.randint(key, (S, K, B), 0, M)
    take = jax.vmap(lambda d, i: d[i])
    return take(dx, idx), take(dy, idx)


def _chunk(cell):
    return int(cell["ft_steps"]) // int(cell["ft_ckpts"])


_PRE_KEYS = ("L", "width", "depth", "heads", "batch", "dataset", "pre_steps", "pre_lr", "ft_steps", "ft_ckpts")
_PRETRAINED: dict = {}


def _key_bytes(key):
    k = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(k).tobytes()


def _pretrain(cell: dict, key, num_seeds: int):
    """Pre-trained parameters (stacked over seeds) and the mean of the last 10% of losses.

    Each seed draws a fixed dataset of ``dataset`` prompts/responses from the uniform mixture
    (in pieces of K·B), then trains ``pre_steps`` AdamW steps on minibatches drawn from it with
    replacement. Cached within a process (main and control cells share their keys, so the
    control reuses the main run's models)."""
    ident = (json.dumps({k: cell[k] for k in _PRE_KEYS}, sort_keys=True), _key_bytes(key), int(num_seeds))
    if ident in _PRETRAINED:
        return _PRETRAINED[ident]
    task = G.tradeoff_task(int(cell["L"]), PRE_WEIGHTS)
    K, B, S = _chunk(cell), int(cell["batch"]), int(num_seeds)
    pieces, steps = int(cell["dataset"]) // (K * B), int(cell["pre_steps"])
    if pieces < 1 or pieces * K * B != int(cell["dataset"]) or steps % K:
        raise ValueError(f"dataset ({cell['dataset']}) must be a multiple of K·B = {K * B} and "
                         f"pre_steps ({steps}) of K = {K}")
    k_init, k_data, k_train = jax.random.split(key, 3)
    data = [_fresh(jax.random.fold_in(k_data, i), task=task, K=K, B=B, num_seeds=S) for i in range(pieces)]
    dx = jnp.concatenate([d["x"].reshape(S, K * B, -1) for d in data], 1)
    dy = jnp.concatenate([d["y"].reshape(S, K * B, -1) for d in data], 1)
    static = _static(cell)
    params, state = _init_state(jax.random.split(k_init, S), int(cell["width"]), int(cell["depth"]),
                                int(cell["heads"]), int(cell["L"]))
    lr = jnp.asarray(float(cell["pre_lr"]))
    losses = []
    for i in range(steps // K):
        xs, ys = _gather(dx, dy, jax.random.fold_in(k_train, i), K=K, B=B)
        params, state, loss = _train_chunk(params, state, static, xs, ys, lr)
        losses.append(loss)
    tail = np.concatenate([np.asarray(v) for v in losses], 1)[:, -max(1, steps // 10):]
    out = (params, tail.mean(1))
    _PRETRAINED.clear()  # keep one entry: the latest cell's models
    _PRETRAINED[ident] = out
    return out


_BLOCK = 256
"""Prompts scored per block (``lax.map``): bounds the forward pass's memory at the full size."""


def _blocks(v, blk):
    return v.reshape((v.shape[0] // blk, blk) + v.shape[1:])


@eqx.filter_jit
def _score(params, static, ev, held):
    """Per seed: class sums (S, 3, ...) of the exact per-prompt metrics on the eval prompts
    (every support path scored in one pass, ``covsim.transformer.metrics_from_support``, levels
    ``_LEVELS``), the class counts (S, 3), and the held-out log-likelihoods (S, n_heldout)."""
    logN = jnp.log(jnp.asarray(_LEVELS))
    n_eval, n_held = ev["x"].shape[1], held["x"].shape[1]
    be, bh = math.gcd(n_eval, _BLOCK), math.gcd(n_held, _BLOCK)

    def one(p, e, h):
        m = eqx.combine(p, static)

        def block(b):
            n, S, R = b["paths"].shape
            lq = T.log_probs(m, jnp.repeat(b["x"], S, 0), b["paths"].reshape(n * S, R)).reshape(n, S)
            met = T.metrics_from_support(b["lp"], lq, logN)
            onehot = jax.nn.one_hot(b["cls"], 3)
            return {k: jnp.tensordot(onehot, v, axes=(0, 0)) for k, v in met.items() if k != "log_ratio"}

        sums = jax.tree_util.tree_map(lambda v: v.sum(0),
                                      jax.lax.map(block, {k: _blocks(v, be) for k, v in e.items()}))
        ll = jax.lax.map(lambda b: T.log_probs(m, b["x"], b["y"]), {k: _blocks(v, bh) for k, v in h.items()})
        return sums, jax.nn.one_hot(e["cls"], 3).sum(0), ll.reshape(-1)

    return jax.vmap(one)(params, ev, held)


@eqx.filter_jit
def _tournaments(logliks, *, levels):
    """Tournament picks (S, n_levels) from held-out log-likelihoods (S, C+1, n) (THEORY §7.1)."""
    return jax.vmap(lambda l: jnp.stack([tournament(l, v)[0] for v in levels]))(logliks)


def _finetune(cell: dict, params, key, num_seeds: int):
    """Fine-tune every seed's pre-trained model online, scoring every checkpoint exactly.

    Eval prompts: the first ``n_eval`` of K·B fresh prompts of the fine-tuning mixture (the
    same at every checkpoint); class means are combined with the class weights (stratified).
    Held-out: the first ``n_heldout`` of another K·B fresh samples."""
    weights = _ft_weights(cell["variant"])
    task = G.tradeoff_task(int(cell["L"]), weights)
    K, B, S, C = _chunk(cell), int(cell["batch"]), int(num_seeds), int(cell["ft_ckpts"])
    n_eval, n_held = int(cell["n_eval"]), int(cell["n_heldout"])
    if max(n_eval, n_held) > K * B:
        raise ValueError(f"n_eval and n_heldout must be at most K·B = {K * B}")
    static = _static(cell)
    k_train, k_eval, k_held = jax.random.split(jax.random.fold_in(key, 1), 3)
    fresh = dict(task=task, K=K, B=B, num_seeds=S)
    ev = _flat(_fresh(k_eval, **fresh), n_eval)
    held = {k: v for k, v in _flat(_fresh(k_held, **fresh), n_held).items() if k in ("x", "y")}
    state = _fresh_opt(params)
    lr = jnp.asarray(float(cell["ft_lr"]))
    sums, counts, lls = [], None, []
    for c in range(C + 1):
        su, counts, ll = _score(params, static, ev, held)
        sums.append(jax.tree_util.tree_map(np.asarray, su))
        lls.append(ll)
        if c < C:
            d = _fresh(jax.random.fold_in(k_train, c), **fresh)
            params, state, _ = _train_chunk(params, state, static, d["x"], d["y"], lr)
    counts = np.asarray(counts)  # (S, 3)
    classes = tuple(c for c in range(3) if weights[c] > 0)
    per = {}
    for name in sums[0]:
        v = np.stack([su[name] for su in sums], 1)  # (S, C+1, 3, ...)
        cnt = counts.reshape(counts.shape[:1] + (1, 3) + (1,) * (v.ndim - 3))
        per[name] = (v / np.maximum(cnt, 1))[:, :, list(classes)]
    picks = _tournaments(jnp.stack(lls, 1), levels=tuple(n / 2 for n in PASS_N))
    return classes, weights, per, picks


def _name(kind: str, c: int, level: float | None = None) -> str:
    return f"{kind}{'' if level is None else f'{level:g}'}@c{c}"


def run_cell(cell: dict, key, num_seeds: int) -> dict:
    params, pre_loss = _pretrain(cell, key, num_seeds)
    classes, weights, per, picks = _finetune(cell, params, key, num_seeds)
    w = np.asarray([weights[c] for c in classes])
    kl = np.einsum("c,scC->sC", w, np.asarray(per["kl"]).transpose(0, 2, 1))  # (S, C+1)
    cov = np.einsum("c,sCcn->sCn", w, np.asarray(per["cov"]))                 # (S, C+1, levels)
    res = {"pretrain_loss": np.asarray(pre_loss, float)}
    C1 = kl.shape[1]
    for c in range(C1):
        res[_name("kl", c)] = kl[:, c]
        for i, n in enumerate(_LEVELS):
            if n in COV_N:
                res[_name("cov", c, n)] = cov[:, c, i]
            if n in PASS_N:
                pas = np.einsum("c,sc->s", w, np.asarray(per["pass"])[:, c, :, i])
                res[_name("pass", c, n)] = pas
        q = np.asarray(per["pass"])[:, c, :, _LEVELS.index(1.0)]  # (S, n_classes): mean π̂(supp|x)
        for j, cl in enumerate(classes):
            res[_name(f"q{cl + 1}_", c)] = q[:, j]
    picks = np.asarray(picks)
    res["pick_minkl"] = np.argmin(kl, axis=1).astype(float)
    for j, n in enumerate(PASS_N):
        res[f"pick_tour{n / 2:g}"] = picks[:, j].astype(float)
    return res


# ---------------------------------------------------------------------------
# analysis


def per_checkpoint(table, kind: str, level: float | None = None) -> np.ndarray:
    """(C+1, S) values of one metric over the checkpoints."""
    cs = sorted(int(n.split("@c")[1]) for n in table.columns if n.startswith("kl@c"))
    return np.stack([table.column(_name(kind, c, level)).astype(float) for c in cs])


def _steps(table, size):
    cell = grid(size)[0]
    C = per_checkpoint(table, "kl").shape[0] - 1
    steps = int(table.column("ft_steps")[0]) if "ft_steps" in table.columns else int(cell["ft_steps"])
    return np.arange(C + 1) * (steps // max(C, 1))


def analyze(table, size: str) -> Analysis:
    ev, obs, det = {}, [], {}
    kl = per_checkpoint(table, "kl")
    C1, S = kl.shape
    det["steps"] = _steps(table, size).tolist()
    ev["kl_decreases"] = Evidence.paired(kl[-1], kl[0], details={"kl_start": kl[0].mean(), "kl_end": kl[-1].mean()})
    mean, lo, hi = paired_t(np.diff(kl, axis=0))
    ev["kl_monotone"] = Evidence.count(int((lo > 0).sum()), C1 - 1, seeds=S,
                                       details={"step_mean": mean, "step_lo": lo})
    det["kl_median"] = np.median(kl, 1).tolist()
    obs.append(Observation("median_kl_by_checkpoint", [round(float(v), 4) for v in np.median(kl, 1)],
                           f"median over seeds at fine-tuning steps {det['steps']}"))
    for n in COV_N:
        cov = per_checkpoint(table, "cov", n)
        det[f"cov{n:g}_median"] = np.median(cov, 1).tolist()
        obs.append(Observation(f"median_cov{n:g}_by_checkpoint", [round(float(v), 4) for v in np.median(cov, 1)],
                               "median over seeds per checkpoint"))
        if n in U_SHAPE_N:
            if C1 < 3:
                ev[f"cov{n:g}_dips_then_rises"] = Evidence.invalid("fewer than 3 checkpoints", seeds=S)
                continue
            ends = np.minimum(cov[0], cov[-1])
            ev[f"cov{n:g}_dips_then_rises"] = Evidence.paired(
                ends, cov[1:-1].min(0), details={"argmin_interior": (1 + cov[1:-1].argmin(0)).tolist()})
    for n in PASS_N:
        pas = per_checkpoint(table, "pass", n)
        cov = per_checkpoint(table, "cov", n / 2)
        rho_cov, rho_kl = spearman(pas.T, -cov.T), spearman(pas.T, -kl.T)
        det[f"pass{n:g}_median"] = np.median(pas, 1).tolist()
        det[f"rho_pass{n:g}_cov"] = rho_cov.tolist()
        det[f"rho_pass{n:g}_kl"] = rho_kl.tolist()
        obs.append(Observation(f"median_pass{n:g}_by_checkpoint", [round(float(v), 4) for v in np.median(pas, 1)],
                               "median over seeds per checkpoint"))
        if n in TRACK_N:
            ev[f"pass{n:g}_tracks_cov"] = Evidence.paired(rho_cov, rho_kl)
        else:
            d = rho_cov - rho_kl
            ok = np.isfinite(d)
            obs.append(Observation(f"pass{n:g}_rho_difference", float(d[ok].mean()) if ok.any() else math.nan,
                                   f"Spearman(Pass@{n:g}, -Cov_{n / 2:g}) - Spearman(Pass@{n:g}, -KL), seed mean"))
        idx = np.arange(S)
        p_tour = pas[table.column(f"pick_tour{n / 2:g}").astype(int), idx]
        p_mkl = pas[table.column("pick_minkl").astype(int), idx]
        det[f"pass{n:g}_tour"], det[f"pass{n:g}_minkl"] = p_tour.tolist(), p_mkl.tolist()
        obs.append(Observation(f"pass{n:g}_tournament_minkl", [round(float(np.mean(p_tour)), 4),
                                                                round(float(np.mean(p_mkl)), 4)],
                               f"seed mean Pass@{n:g} of the tournament pick (level {n / 2:g}) and the min-KL pick"))
        if n == TOUR_N:
            ev["pass8_tournament_vs_minkl"] = Evidence.paired(p_tour, p_mkl)
    for name in ("q1_", "q2_"):
        if _name(name, 0) in table.columns:
            q = per_checkpoint(table, name)
            det[f"{name}median"] = np.median(q, 1).tolist()
            obs.append(Observation(f"median_{name}by_checkpoint", [round(float(v), 4) for v in np.median(q, 1)],
                                   f"class G{name[1]}: mean single-draw success pi_hat(supp pi_D | x)"))
    picks = {k: table.column(k).astype(int).tolist() for k in table.columns if k.startswith("pick_")}
    det["picks"] = picks
    obs.append(Observation("picks", picks, "checkpoint index per seed (c = 0 is the pre-trained start)"))
    obs.append(Observation("pretrain_loss", round(float(np.mean(table.column("pretrain_loss").astype(float))), 4),
                           "seed mean of the last 10% of pre-training losses"))
    return Analysis(ev, obs, det)


def plot(table, summary, out):
    from matplotlib.figure import Figure

    from covsim.plotting import _save

    d = summary.details
    steps = np.asarray(d["steps"])
    kl = per_checkpoint(table, "kl")

    def band(ax, values, color, label, marker="o"):
        q = np.quantile(values, [1 / 16, 15 / 16], axis=1)
        ax.fill_between(steps, q[0], q[1], color=color, alpha=0.2)
        ax.plot(steps, np.median(values, 1), "-" + marker, ms=3, color=color, label=label)

    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    band(ax, kl, "k", "KL (median; band 1/16-15/16 of seeds)")
    ax.set(xlabel="fine-tuning iteration", ylabel="KL(π_D‖π̂)", title="KL along fine-tuning")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    for n, color in zip(COV_N[:5], ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red")):
        band(ax, per_checkpoint(table, "cov", n), color, f"Cov_{n:g}")
    ax.set(xlabel="fine-tuning iteration", ylabel="Cov_N(π_D‖π̂)", title="coverage along fine-tuning")
    ax.legend(fontsize=7)
    paths = [_save(fig, out / "metrics_vs_iteration.png")]

    fig = Figure(figsize=(13.0, 4.2), layout="constrained")
    idx = np.arange(kl.shape[1])
    for j, n in enumerate(PASS_N):
        ax = fig.add_subplot(1, len(PASS_N), j + 1)
        pas = per_checkpoint(table, "pass", n)
        cov = per_checkpoint(table, "cov", n / 2)
        ax.plot(np.median(cov, 1), np.median(pas, 1), "-o", ms=3, color="tab:blue", label="median over seeds")
        ax.scatter(cov.ravel(), pas.ravel(), s=5, alpha=0.3, color="tab:blue")
        pt = table.column(f"pick_tour{n / 2:g}").astype(int)
        pk = table.column("pick_minkl").astype(int)
        ax.scatter(cov[pt, idx], pas[pt, idx], marker="*", s=60, color="tab:green",
                   label=f"tournament pick (level {n / 2:g})", zorder=3)
        ax.scatter(cov[pk, idx], pas[pk, idx], marker="x", s=40, color="tab:red", label="min-KL pick", zorder=3)
        ax.set(xlabel=f"Cov_{n / 2:g}", ylabel=f"Pass@{n:g}", title=f"Pass@{n:g} against Cov_{n / 2:g}")
        top = ax.twiny()
        top.plot(np.median(kl, 1), np.median(pas, 1), "s--", ms=3, color="gray")
        top.set_xlabel("KL (gray squares: medians)")
        ax.legend(fontsize=6, loc="lower left")
    paths.append(_save(fig, out / "pass_vs_cov.png"))
    return paths


CHECK = Check(
    name="graph_mode_tradeoff",
    claim="Fine-tuning a transformer pre-trained on Figure 1's layered-DAG mixture onto (0.9, 0.1): KL falls "
          "monotonically, mid-range Cov_N dips then rises, Pass@N ranks like Cov_{N/2} better than like KL "
          "(N = 8, 12), and the tournament's checkpoint has Pass@8 >= the min-KL checkpoint's.",
    reference="arXiv 2510.15020 v2, Figure 1 and App. C.2 (ICLR: App. D.2)",
    grid=grid,
    run_cell=run_cell,
    analyze=analyze,
    rules=RULES,
    control=Control("fine-tuning (and evaluation) on the pre-training mixture (1/3, 1/3, 1/3): no minority "
                    "mode to sacrifice (h-blind optimum has Cov_N = 0 for N >= 2), so coverage only falls "
                    "and the dips_then_rises rules fail", control_grid),
    plot=plot,
    seeds={"tiny": 8, "quick": 8, "full": 16},
    paired_over=("variant",),
)
