r"""The paper's layered-DAG path task (THEORY.md §8; arXiv 2510.15020 v2 App. C).

**Graph.** L + 2 layers: layer 1 = {s}, layers 2..L+1 hold 4 nodes each, layer L+2 = {t}.
A node is *passable* when it has out-degree > 0; passable nodes connect to every node of
the next layer, the others are dead ends. A valid path is (s, v_2, …, v_{L+1}, t) with
every v_i passable. covsim fixes the node ids (the paper leaves m open): s = 0,
node j ∈ {0,1,2,3} of intermediate layer ℓ ∈ {0..L−1} has id 1 + 4ℓ + j, t = 4L + 1;
so id parity is odd for j ∈ {0, 2}, even for j ∈ {1, 3}. A layer is *single* (one passable
node, uniform over the 4) or *doubled* (two passable nodes: one of odd id, one of even id,
each uniform over its 2 candidates), so every graph of a class with the same doubled set
has probability 4^{-L}. The layer at path position i = ℓ + 2 has parity(i) = ℓ mod 2.

**Prompt (compact encoding).** Since passable nodes connect to *all* of the next layer,
the edge list ``u1 v1 | … | uk vk`` is determined by the passable set of each layer. The
compact prompt lists, per intermediate layer, its two passable ids in increasing order (the
single passable id twice for a single layer), then ``/ s t =``:
``a_1 b_1 a_2 b_2 … a_L b_L / s t =`` — length 2L + 4 instead of ≈ 3·(4 + 16(L−1) + 4)
tokens for the plain edge list (sequence length dominates a transformer's cost).
Vocabulary: ids 0..4L+1, then ``|`` = 4L+2 (unused by the compact encoding), ``/`` = 4L+3,
``=`` = 4L+4; size 4L + 5. The response is the path's node sequence (s, v_2, …, v_{L+1}, t),
length L + 2.

**Classes.** ``"horizon"`` (Figure 2, weights 0.94 / 0.05 / 0.01):
G_{H,1}: every layer single (unique path); G_{H,2}: L/2 uniformly random doubled layers,
π_D picks the node with parity(v) = parity(i) ⊕ X, X = XOR of the parities of all passable
intermediate nodes (deterministic, global); G_{H,3}: 4 random doubled layers, π_D uniform
over the 16 paths. H = L here (the paper's "H intermediate layers"). When L/2 = 4 (L = 8)
G_{H,2} and G_{H,3} have the same prompt law, so the prompt does not identify the class:
π_D(y|x) is then the posterior mixture (5/6 on G₂'s path, 1/6 uniform), computed exactly.
``"tradeoff"`` (Figure 1, weights (0.9, 0.1, 0) for fine-tuning, (⅓, ⅓, ⅓) for
pre-training): a uniformly random pair of doubled layers, all others single; G₁ picks in a
doubled layer the node with parity(v) = parity(i), G₂ the opposite parity, G₃ uniform over
the 4 valid paths. The class of a G₁/G₂ prompt is given by a hidden parity h(x) = XOR over
the passable nodes of a fixed half of the ids (:data:`HIDDEN_HALF_SEED` picks 2 of the 4
nodes of every layer): G₁ prompts have h = 1, G₂ prompts h = 0 (sampled exactly, by
choosing the first single layer's node uniformly among the 2 that give the required h).
G₃ prompts are unconditioned, so π_D(·|x) = posterior mixture ∝ (2w₁[h=1], 2w₂[h=0], w₃).

**Exact π_D.** :func:`support` enumerates, per prompt, the ≤ 16 paths that can carry π_D
mass (bit patterns over the first min(k, 4) doubled layers; further doubled layers — only
G_{H,2} has more than 4 — take G₂'s deterministic choice) with their exact log π_D
(−inf on padding slots). :func:`path_log_prob` gives log π_D(y|x) of any path.
"""

from __future__ import annotations

from dataclasses import dataclass
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GraphTask",
    "HIDDEN_HALF_SEED",
    "MAX_SUPPORT",
    "horizon_task",
    "tradeoff_task",
    "sample_graphs",
    "prompt_tokens",
    "support",
    "path_log_prob",
    "class_posterior",
    "deterministic_bits",
    "sample_batch",
]

HIDDEN_HALF_SEED = 20251015
MAX_SUPPORT = 16
_NEG = -jnp.inf


@dataclass(frozen=True)
class GraphTask:
    """A family of layered-DAG path tasks: `family` ("horizon" or "tradeoff"), L, class weights."""

    family: str
    L: int
    weights: tuple

    def __post_init__(self):
        if self.family not in ("horizon", "tradeoff"):
            raise ValueError(f"family must be 'horizon' or 'tradeoff', got {self.family!r}")
        if self.family == "horizon" and (self.L < 4 or self.L % 2):
            raise ValueError(f"horizon tasks need an even L >= 4, got {self.L}")
        if self.family == "tradeoff" and self.L < 3:
            raise ValueError(f"tradeoff tasks need L >= 3, got {self.L}")
        w = np.asarray(self.weights, float)
        if w.shape != (3,) or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
            raise ValueError(f"weights must be 3 nonnegative numbers summing to 1, got {self.weights}")

    @property
    def vocab(self) -> int:
        return 4 * self.L + 5

    @property
    def prompt_len(self) -> int:
        return 2 * self.L + 4

    @property
    def response_len(self) -> int:
        return self.L + 2

    @property
    def class_doubled(self) -> tuple:
        """Number of doubled layers of each class."""
        if self.family == "horizon":
            return (0, self.L // 2, 4)
        return (2, 2, 2)


def horizon_task(L: int, weights=(0.94, 0.05, 0.01)) -> GraphTask:
    """Figure 2's mixture G_{H,1} / G_{H,2} / G_{H,3} with H = L intermediate layers."""
    return GraphTask("horizon", int(L), tuple(float(w) for w in weights))


def tradeoff_task(L: int = 8, weights=(0.9, 0.1, 0.0)) -> GraphTask:
    """Figure 1's classes G₁ / G₂ / G₃ (fine-tuning weights by default)."""
    return GraphTask("tradeoff", int(L), tuple(float(w) for w in weights))


def hidden_half(L: int) -> np.ndarray:
    """(L, 4) bool: the fixed half of the node ids (2 per layer) of Figure 1's hidden parity."""
    rng = np.random.default_rng(HIDDEN_HALF_SEED)
    out = np.zeros((L, 4), bool)
    for l in range(L):
        out[l, rng.permutation(4)[:2]] = True
    return out


def _sample_one(u, task: GraphTask, cls):
    """One graph from uniforms u (L, 5) (one PRNG draw per batch keeps compilation small)."""
    L = task.L
    k = jnp.asarray(task.class_doubled)[cls]
    ranks = jnp.argsort(jnp.argsort(u[:, 0]))
    doubled = ranks < k  # uniform subset of size k
    single = jnp.minimum((u[:, 1] * 4).astype(jnp.int32), 3)
    odd = 2 * (u[:, 2] < 0.5)          # j in {0, 2}: odd id
    even = 1 + 2 * (u[:, 3] < 0.5)     # j in {1, 3}: even id
    a = jnp.where(doubled, odd, single)
    b = jnp.where(doubled, even, single)
    if task.family == "tradeoff":
        half = jnp.asarray(hidden_half(L))
        rows = jnp.arange(L)
        contrib = jnp.where(doubled, half[rows, a] ^ half[rows, b], half[rows, a])
        first = jnp.argmax(~doubled)  # first single layer (exists: only 2 doubled, L >= 3)
        h_rest = jnp.bitwise_xor.reduce(jnp.where(rows == first, False, contrib))
        need = (cls == 0) ^ h_rest  # hidden-half membership the first single node needs
        cand = jnp.argsort(jnp.where(half[first] == need, 0, 1))[:2]  # the 2 nodes with it
        pick = cand[(u[0, 4] < 0.5).astype(jnp.int32)]
        pick = jnp.where(cls == 2, a[first], pick).astype(a.dtype)  # G3 unconditioned
        a = a.at[first].set(pick)
        b = b.at[first].set(pick)
    return {"a": a, "b": b, "doubled": doubled, "cls": cls}


def sample_graphs(key, task: GraphTask, batch: int, cls=None):
    """A batch of graphs: dict a, b (B, L) node indices j (a = b on single layers; on
    doubled layers a is the odd-id node, b the even-id one), doubled (B, L), cls (B,).

    `cls`: None (classes drawn from the task's weights) or an int (every graph of that class).
    """
    kc, kg = jax.random.split(key)
    if cls is None:
        cw = jnp.cumsum(jnp.asarray(task.weights))
        c = jnp.minimum(jnp.searchsorted(cw, jax.random.uniform(kc, (batch,)) * cw[-1], side="right"), 2)
    else:
        c = jnp.full((batch,), int(cls), jnp.int32)
    u = jax.random.uniform(kg, (batch, task.L, 5))
    return jax.vmap(lambda ui, ci: _sample_one(ui, task, ci))(u, c.astype(jnp.int32))


def _ids(task: GraphTask, j):
    return 1 + 4 * jnp.arange(task.L) + j


def prompt_tokens(task: GraphTask, g):
    """(B, 2L + 4) compact prompts ``a_1 b_1 … a_L b_L / s t =`` (ids sorted per layer)."""
    ia, ib = _ids(task, g["a"]), _ids(task, g["b"])
    lo, hi = jnp.minimum(ia, ib), jnp.maximum(ia, ib)
    body = jnp.stack([lo, hi], -1).reshape(lo.shape[0], -1)
    B = lo.shape[0]
    tail = jnp.broadcast_to(jnp.asarray([4 * task.L + 3, 0, 4 * task.L + 1, 4 * task.L + 4]), (B, 4))
    return jnp.concatenate([body, tail], axis=1).astype(jnp.int32)


def _parity_id(j):
    """Parity of the id 1 + 4ℓ + j: 1 (odd) for j in {0, 2}."""
    return 1 - (j % 2)


def hidden_parity(task: GraphTask, g):
    """Figure 1's h(x) (B,) bool: XOR of the hidden-half membership of all passable nodes."""
    half = jnp.asarray(hidden_half(task.L))
    rows = jnp.arange(task.L)
    ma, mb = half[rows, g["a"]], half[rows, g["b"]]
    contrib = jnp.where(g["doubled"], ma ^ mb, ma)
    return jnp.bitwise_xor.reduce(contrib, axis=-1)


def class_posterior(task: GraphTask, g):
    """(B, 3) P(class | prompt), exact (the class-conditional prompt laws in the module doc)."""
    w = jnp.asarray(task.weights)
    k = g["doubled"].sum(-1)
    if task.family == "horizon":
        lik = jnp.stack([(k == kc).astype(float) for kc in task.class_doubled], -1)
    else:
        h = hidden_parity(task, g).astype(float)
        lik = jnp.stack([2 * h, 2 * (1 - h), jnp.ones_like(h)], -1)
    post = w * lik
    return post / post.sum(-1, keepdims=True)


def deterministic_bits(task: GraphTask, g):
    """(B, 2, L) target parities of the chosen node in each layer for classes 1 and 2 (G₁, G₂).

    Only doubled layers matter. horizon: G_{H,1} has no doubled layer; G_{H,2}:
    parity(i) ⊕ X. tradeoff: G₁ parity(i), G₂ 1 − parity(i).
    """
    L = task.L
    par_i = jnp.arange(L) % 2
    if task.family == "horizon":
        pa = _parity_id(g["a"])
        X = jnp.bitwise_xor.reduce(jnp.where(g["doubled"], 1, pa), axis=-1)
        t2 = par_i[None] ^ X[:, None]
        return jnp.stack([t2, t2], 1)  # class 0 has no doubled layer
    B = g["a"].shape[0]
    t1 = jnp.broadcast_to(par_i, (B, L))
    return jnp.stack([t1, 1 - t1], 1)


def _chosen_parity(g, path_j):
    """Parity of the chosen node per layer, (…, L)."""
    return _parity_id(path_j)


def path_log_prob(task: GraphTask, g, path):
    """log π_D(path | prompt) for paths (B, L + 2) of node ids (any path; −inf if invalid)."""
    L = task.L
    ids = path[:, 1:-1]
    j = ids - 1 - 4 * jnp.arange(L)
    valid = (path[:, 0] == 0) & (path[:, -1] == 4 * L + 1)
    valid &= jnp.all((j >= 0) & (j < 4) & ((j == g["a"]) | (j == g["b"])), -1)
    par = _parity_id(jnp.clip(j, 0, 3))
    det = deterministic_bits(task, g)
    dbl = g["doubled"]
    k = dbl.sum(-1)
    follows = jnp.all(~dbl[:, None] | (par[:, None] == det), -1)  # (B, 2)
    post = class_posterior(task, g)
    if task.family == "horizon":
        p = post[:, 0] * (k == 0) + post[:, 1] * follows[:, 1] + post[:, 2] * 0.5 ** k
        p = jnp.where(k == 0, 1.0, p)
    else:
        p = post[:, 0] * follows[:, 0] + post[:, 1] * follows[:, 1] + post[:, 2] * 0.5 ** k
    return jnp.where(valid & (p > 0), jnp.log(jnp.where(p > 0, p, 1.0)), _NEG)


def support(task: GraphTask, g):
    """π_D's support per prompt: paths (B, 16, L + 2) of node ids and log π_D (B, 16).

    Slot b enumerates the choices in the first min(k, 4) doubled layers by its bits;
    later doubled layers take G₂'s deterministic choice. Padding and zero-mass slots
    have log π_D = −inf. Every path with π_D > 0 appears exactly once.
    """
    L = task.L
    dbl = g["doubled"]
    B = dbl.shape[0]
    order = jnp.cumsum(dbl, -1) - 1  # rank of each doubled layer
    det2 = deterministic_bits(task, g)[:, 1]  # (B, L)
    slots = jnp.arange(MAX_SUPPORT)
    bit = (slots[None, :, None] >> jnp.clip(order, 0, 30)[:, None, :]) & 1  # (B, S, L): 1 -> odd
    enum = dbl[:, None, :] & (order[:, None, :] < 4)
    par = jnp.where(enum, bit, det2[:, None, :])
    j = jnp.where(dbl[:, None, :], jnp.where(par == 1, g["a"][:, None], g["b"][:, None]), g["a"][:, None])
    ids = 1 + 4 * jnp.arange(L) + j
    paths = jnp.concatenate([jnp.zeros((B, MAX_SUPPORT, 1), ids.dtype), ids,
                             jnp.full((B, MAX_SUPPORT, 1), 4 * L + 1, ids.dtype)], -1)
    k = dbl.sum(-1)
    used = slots[None] < 2 ** jnp.minimum(k, 4)[:, None]
    gg = {key: jnp.repeat(v, MAX_SUPPORT, 0) for key, v in g.items()}
    lp = path_log_prob(task, gg, paths.reshape(B * MAX_SUPPORT, L + 2)).reshape(B, MAX_SUPPORT)
    return paths.astype(jnp.int32), jnp.where(used, lp, _NEG)


def sample_batch(key, task: GraphTask, batch: int, cls=None):
    """Training data: graphs, prompts (B, 2L+4) and responses (B, L+2) drawn from π_D."""
    kg, ky = jax.random.split(key)
    g = sample_graphs(kg, task, batch, cls)
    paths, lp = support(task, g)
    idx = jax.random.categorical(ky, lp, axis=-1)
    y = jnp.take_along_axis(paths, idx[:, None, None], 1)[:, 0]
    return g, prompt_tokens(task, g), y
