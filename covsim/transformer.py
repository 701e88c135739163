r"""A GPT-2-style causal transformer (equinox), its training loop (optax) and exact metrics
on the layered-DAG path task of :mod:`covsim.graphs` (THEORY.md §8).

**Model.** Token + learned absolute position embeddings, ``depth`` pre-LayerNorm blocks
(causal multi-head self-attention, then a 4×width GeLU MLP, residual around each), a final
LayerNorm and an *untied* unembedding (untied: the response vocabulary is tiny and the
paper does not say; untied keeps the output layer free). Heads, depth and width are
parameters.

**Training** (:func:`train`): next-token cross-entropy on the response tokens only, optax
AdamW at a fixed learning rate with weight decay 0.01 (the paper's Adam + wd 0.01),
fresh prompts from π_D at every step; the whole loop is one jitted ``lax.scan`` over
steps (outer scan over checkpoints, inner over the steps between them), returning the
model at each checkpoint. Seeds are vmapped (:func:`train_seeds`).

**Exact metrics** (:func:`exact_metrics`): for each evaluation prompt every path of π_D's
support (≤ 16, :func:`covsim.graphs.support`) is scored in one batched forward pass, so
KL(π_D‖π̂) = Σ_y π_D(y)(log π_D(y) − log π̂(y)) and Cov_N = Σ_y π_D(y)·1[π_D(y)/π̂(y) ≥ N]
are exact given the prompts; Pass@N with success "y ∈ supp π_D" (the path π_D would
produce) is 1 − (1 − π̂(supp π_D|x))^N exactly. Class averages are weighted by the class
probabilities (:func:`class_weighted`).

**Normalized updates.** :func:`covsim.fit.sgd.normalize_by_norm` (THEORY §6.3,
u ↦ u/(λ + ‖u‖₂) over the whole parameter pytree) is an optax transformation that applies
to any pytree; :func:`make_optimizer` exposes ``"normalized"`` next to ``"adam"``.
"""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from covsim import graphs as G

__all__ = ["GPT", "init_gpt", "log_probs", "sequence_log_probs", "make_optimizer", "train",
           "train_seeds", "exact_metrics", "class_weighted", "uniform_mixture_log_probs"]


class Block(eqx.Module):
    ln1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    ln2: eqx.nn.LayerNorm
    fc: eqx.nn.Linear
    proj: eqx.nn.Linear

    def __init__(self, width, heads, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.ln1 = eqx.nn.LayerNorm(width)
        self.attn = eqx.nn.MultiheadAttention(heads, width, key=k1)
        self.ln2 = eqx.nn.LayerNorm(width)
        self.fc = eqx.nn.Linear(width, 4 * width, key=k2)
        self.proj = eqx.nn.Linear(4 * width, width, key=k3)

    def __call__(self, x, mask):
        h = jax.vmap(self.ln1)(x)
        x = x + self.attn(h, h, h, mask=mask)
        h = jax.vmap(self.ln2)(x)
        return x + jax.vmap(lambda v: self.proj(jax.nn.gelu(self.fc(v))))(h)


class GPT(eqx.Module):
    tok: jax.Array
    pos: jax.Array
    blocks: list
    ln_f: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __call__(self, tokens):
        """Logits (T, V) for one sequence of tokens (T,)."""
        T = tokens.shape[0]
        x = self.tok[tokens] + self.pos[:T]
        mask = jnp.tril(jnp.ones((T, T), bool))
        for blk in self.blocks:
            x = blk(x, mask)
        return jax.vmap(lambda v: self.head(self.ln_f(v)))(x)


def init_gpt(key, vocab: int, max_len: int, *, width: int = 64, depth: int = 2, heads: int = 4) -> GPT:
    """A fresh GPT (embeddings N(0, 0.02²))."""
    kt, kp, kh, *kb = jax.random.split(key, 3 + depth)
    return GPT(tok=0.02 * jax.random.normal(kt, (vocab, width)),
               pos=0.02 * jax.random.normal(kp, (max_len, width)),
               blocks=[Block(width, heads, k) for k in kb],
               ln_f=eqx.nn.LayerNorm(width),
               head=eqx.nn.Linear(width, vocab, key=kh))


def sequence_log_probs(model: GPT, prompts, responses):
    """log π̂(response | prompt) per token: (B, R) from prompts (B, P) and responses (B, R)."""
    P = prompts.shape[1]
    seq = jnp.concatenate([prompts, responses], 1)
    logits = jax.vmap(model)(seq[:, :-1])[:, P - 1:]
    lp = jax.nn.log_softmax(logits, -1)
    return jnp.take_along_axis(lp, responses[..., None], -1)[..., 0]


def log_probs(model: GPT, prompts, responses):
    """log π̂(response | prompt), (B,)."""
    return sequence_log_probs(model, prompts, responses).sum(-1)


def make_optimizer(method: str = "adam", learning_rate: float = 1e-3, weight_decay: float = 0.01,
                   lam: float = 1.0):
    """"adam": AdamW(lr, weight decay 0.01); "normalized": u/(λ+‖u‖) then SGD at lr (THEORY §6.3)."""
    if method == "adam":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    if method == "normalized":
        from covsim.fit.sgd import normalize_by_norm
        return optax.chain(normalize_by_norm(lam), optax.sgd(learning_rate))
    raise ValueError(f"method must be 'adam' or 'normalized', got {method!r}")


def _loss(model, x, y):
    return -sequence_log_probs(model, x, y).sum(-1).mean()


def train(model: GPT, task: G.GraphTask, key, *, steps: int, batch: int = 64, checkpoints: int = 1,
          optimizer=None):
    """Train on fresh samples of `task` for `steps` steps (one jitted nested lax.scan).

    Returns (final model, losses (steps,), models stacked at `checkpoints` evenly spaced
    steps (the last = final)). `steps` must be a multiple of `checkpoints`.
    """
    if steps % checkpoints:
        raise ValueError(f"steps ({steps}) must be a multiple of checkpoints ({checkpoints})")
    opt = optimizer if optimizer is not None else make_optimizer()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    inner = steps // checkpoints

    def step(carry, k):
        p, s = carry
        _, x, y = G.sample_batch(k, task, batch)
        loss, grads = jax.value_and_grad(lambda q: _loss(eqx.combine(q, static), x, y))(p)
        upd, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, upd), s), loss

    def chunk(carry, k):
        carry, losses = jax.lax.scan(step, carry, jax.random.split(k, inner))
        return carry, (carry[0], losses)

    (p, _), (ckpts, losses) = jax.lax.scan(chunk, (params, opt.init(params)),
                                            jax.random.split(key, checkpoints))
    return eqx.combine(p, static), losses.reshape(-1), eqx.combine(ckpts, static)


def train_seeds(keys, task: G.GraphTask, *, steps: int, batch: int = 64, width: int = 64,
                depth: int = 2, heads: int = 4, learning_rate: float = 1e-3, method: str = "adam"):
    """Init and train one model per key (vmapped over seeds); returns (models, losses (S, steps))."""
    opt = make_optimizer(method, learning_rate)
    max_len = task.prompt_len + task.response_len

    def one(k):
        ki, kt = jax.random.split(k)
        m = init_gpt(ki, task.vocab, max_len, width=width, depth=depth, heads=heads)
        m, losses, _ = train(m, task, kt, steps=steps, batch=batch, optimizer=opt)
        return eqx.filter(m, eqx.is_array), losses

    init0 = init_gpt(jax.random.PRNGKey(0), task.vocab, max_len, width=width, depth=depth, heads=heads)
    static = eqx.partition(init0, eqx.is_array)[1]
    params, losses = eqx.filter_jit(jax.vmap(one))(keys)
    return eqx.combine(params, static), losses


def metrics_from_support(lp_D, lq, log_N):
    """Per-prompt exact KL, Cov_N (one per log N) and Pass@N from support log-probs.

    lp_D, lq: (B, S) log π_D and log π̂ on the support slots (lp_D = −inf on padding).
    Returns dict kl (B,), cov (B, n_N), pass (B, n_N), log_ratio (B, S).
    """
    pD = jnp.exp(lp_D)
    on = jnp.isfinite(lp_D)
    lr = jnp.where(on, lp_D - lq, 0.0)
    kl = jnp.sum(jnp.where(on, pD * lr, 0.0), -1)
    logN = jnp.asarray(log_N)
    cov = jnp.sum(jnp.where(on[..., None], pD[..., None] * (lr[..., None] >= logN), 0.0), 1)
    q_sup = jnp.sum(jnp.where(on, jnp.exp(lq), 0.0), -1)
    Ns = jnp.exp(logN)
    passN = 1.0 - jnp.exp(Ns[None] * jnp.log1p(-jnp.clip(q_sup, 0.0, 1.0))[:, None])
    return {"kl": kl, "cov": cov, "pass": passN, "log_ratio": lr}


def exact_metrics(model: GPT, task: G.GraphTask, g, Ns):
    """Exact metrics of `model` on graphs `g` (all ≤ 16 support paths per prompt in one pass)."""
    x = G.prompt_tokens(task, g)
    paths, lp_D = G.support(task, g)
    B, S, R = paths.shape
    xr = jnp.repeat(x, S, 0)
    lq = log_probs(model, xr, paths.reshape(B * S, R)).reshape(B, S)
    return metrics_from_support(lp_D, lq, jnp.log(jnp.asarray(Ns, float)))


def uniform_mixture_log_probs(task: G.GraphTask, paths, lp_D, eps: float):
    """log π̂ on the support paths for π̂ = per-token (1−ε)·π_D(·|prefix) + ε·U(layer's 4 nodes).

    The per-token conditionals of π_D are computed exactly from the support (prefix sums);
    s and t are kept deterministic. On a path with π_D-conditionals equal to 1 the log-ratio
    is −L·log(1 − 3ε/4), linear in L.
    """
    pD = jnp.where(jnp.isfinite(lp_D), jnp.exp(lp_D), 0.0)  # (B, S)
    inner = paths[:, :, 1:-1]  # (B, S, L)
    same = inner[:, :, None, :] == inner[:, None, :, :]  # (B, S, S', L)
    prefix_eq = jnp.cumprod(same, -1)  # match on tokens ≤ h
    pref = jnp.einsum("bstl,bt->bsl", prefix_eq, pD)  # π_D(y_{≤h})
    prev = jnp.concatenate([jnp.sum(pD, -1, keepdims=True)[..., None].repeat(inner.shape[1], 1),
                            pref[..., :-1]], -1)
    cond = jnp.where(prev > 0, pref / jnp.where(prev > 0, prev, 1.0), 0.0)
    tok = jnp.log((1 - eps) * cond + eps / 4.0)
    return tok.sum(-1)


def class_weighted(per_class, weights):
    """Σ_c w_c · per_class[c] (per_class: (3, …) class means)."""
    w = jnp.asarray(weights)
    return jnp.tensordot(w, jnp.asarray(per_class), axes=1)
