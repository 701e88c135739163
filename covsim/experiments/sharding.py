"""Seeds across local devices: the runner picks the devices, a check marks its seed axis.

The runner (:func:`~covsim.experiments.runner.run_check`) runs every cell inside
:func:`seed_devices`, which makes a one-axis :class:`jax.sharding.Mesh` named ``"seeds"``
over the chosen local devices the *active* one. A check opts in with one line where
it splits its cell key::

    keys = shard_seeds(jax.random.split(key, num_seeds))
    out = jax.vmap(one_seed)(keys)

On one device (or outside the runner) :func:`shard_seeds` returns its argument
unchanged, so nothing changes there. On ``K > 1`` devices it lays the seed axis (axis
0) out over the mesh with a ``NamedSharding(mesh, P("seeds"))``: inside ``jit`` by
``jax.lax.with_sharding_constraint`` (XLA pads a seed count that ``K`` does not divide
and drops the padding), outside ``jit`` by ``jax.device_put`` when ``K`` divides the
seed count. The keys, and therefore the numbers, are the same as on one device: only
where each seed is computed changes. :func:`seed_map` does the whole pattern (split,
pad to a multiple of ``K``, shard, vmap, trim) for checks written from scratch.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = ["seed_devices", "active_mesh", "seed_sharding", "shard_seeds", "seed_map",
           "select_devices", "AXIS"]

AXIS = "seeds"
_MESH: contextvars.ContextVar = contextvars.ContextVar("covsim_seed_mesh", default=None)


def select_devices(devices: int | Sequence | None = None) -> list:
    """The local devices to use: all of the default backend's (None), the first `K` (int),
    or the given list. ValueError if `K` is not in 1..available. With several processes
    (`jax.distributed`), every process's devices (None only)."""
    import jax

    local = jax.local_devices()
    if jax.process_count() > 1 and not isinstance(devices, (list, tuple)):
        if devices is not None:
            raise ValueError("--devices is for one process; with several, every device is used")
        return list(jax.devices())
    if devices is None:
        return list(local)
    if isinstance(devices, int):
        if not 1 <= devices <= len(local):
            raise ValueError(f"--devices must be in 1..{len(local)} (local {local[0].platform} "
                             f"devices), got {devices}")
        return list(local[:devices])
    return list(devices)


@contextlib.contextmanager
def seed_devices(devices: int | Sequence | None = None) -> Iterator[Any]:
    """Make a ``"seeds"`` mesh over `devices` (see :func:`select_devices`) the active one.

    Yields the mesh, or None when a single device is used (then :func:`shard_seeds` is
    the identity). With a mesh, it is also made JAX's context mesh (``jax.set_mesh``),
    which is part of ``jax.jit``'s cache key: a function traced under one device setting
    is traced again under another."""
    import jax
    from jax.sharding import Mesh

    devs = select_devices(devices)
    mesh = Mesh(np.asarray(devs, dtype=object), (AXIS,)) if len(devs) > 1 else None
    token = _MESH.set(mesh)
    try:
        with contextlib.ExitStack() as stack:
            if mesh is not None:
                setter = getattr(jax, "set_mesh", None) or getattr(jax.sharding, "use_mesh", None)
                stack.enter_context(setter(mesh) if setter is not None else mesh)
            yield mesh
    finally:
        _MESH.reset(token)


def active_mesh():
    """The active ``"seeds"`` mesh, or None (one device, or outside :func:`seed_devices`)."""
    return _MESH.get()


def seed_sharding(mesh=None):
    """``NamedSharding(mesh, P("seeds"))`` on the active (or given) mesh; None without one."""
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = active_mesh() if mesh is None else mesh
    return None if mesh is None else NamedSharding(mesh, PartitionSpec(AXIS))


def shard_seeds(keys):
    """Lay axis 0 of `keys` (a seed axis: split keys, or any per-seed array) over the
    active mesh; the identity on one device. Values are never changed."""
    import jax

    sharding = seed_sharding()
    if sharding is None:
        return keys
    if isinstance(keys, jax.core.Tracer):
        return jax.lax.with_sharding_constraint(keys, sharding)
    if keys.shape[0] % sharding.mesh.size == 0:
        return jax.device_put(keys, sharding)
    return keys  # uneven outside jit: left to the caller's jit (or use seed_map)


def seed_map(fn: Callable, key, num_seeds: int, *args: Any):
    """``jax.vmap(fn, in_axes=(0, None, ...))(split(key, num_seeds), *args)`` with the seeds
    padded to a multiple of the device count, sharded over the active mesh, and trimmed.

    The split is the one of ``jax.random.split(key, num_seeds)`` (the padding seeds are
    extra keys that are computed and dropped), so the numbers do not depend on the
    device count."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, num_seeds)
    mesh = active_mesh()
    k = 1 if mesh is None else mesh.size
    pad = (-num_seeds) % k
    if pad:
        keys = jnp.concatenate([keys, keys[:pad]], axis=0)
    keys = shard_seeds(keys)
    in_axes = (0,) + (None,) * len(args)
    out = jax.vmap(fn, in_axes=in_axes)(keys, *args)
    return jax.tree_util.tree_map(lambda a: a[:num_seeds], out) if pad else out
