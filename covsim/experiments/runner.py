"""Run a :class:`~covsim.experiments.check.Check` over its grid: resumable, atomic, seeded.

Layout of the output folder (default `results/<check.name>`):

- `config.json`  — check, size, seeds, base_seed, cell list, versions, git commit, JAX setup
- `cells/<cell_id>.json` — one per finished cell: the cell, per-seed metrics, seconds
- `metrics.csv`  — one row per cell × seed (cell params, "seed", metrics)
- `summary.json` — verdict, reason, assertions with details, timing
- figures written by `check.plot`

Per-cell keys are `fold_in(PRNGKey(base_seed), stable_int_hash(cell))`, so the
results do not depend on cell order, on resuming, or on which other cells exist. The
parameters a check lists in `Check.paired_over` are left out of that hash: cells that
differ only in them share their seed keys (common random numbers).

Scale-out (the numbers never depend on it):

- every cell runs inside :func:`covsim.experiments.sharding.seed_devices`: a check that
  marks its split keys with :func:`~covsim.experiments.sharding.shard_seeds` has its
  seeds laid out over the local devices (`devices=K` restricts them);
- `shard=(i, k)` runs only the cells whose index is `i mod k` into the shared folder
  (a job array); a later run without `shard` finds them cached and analyses;
- `summary.json` timing reports the seconds JAX spent tracing, lowering and compiling
  (from `jax.monitoring` duration events), with or without the persistent cache.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Iterable

import numpy as np

from covsim.experiments.check import (
    Check,
    Summary,
    from_jsonable,
    summary_to_json,
    to_jsonable,
)
from covsim.experiments.results import ResultTable, atomic_write_json, read_json
from covsim._validate import runtime_checks_enabled

__all__ = [
    "run_check",
    "run_checks",
    "load_check",
    "plot_check",
    "stable_int_hash",
    "cell_id",
    "cell_key",
    "ConfigMismatchError",
    "compile_seconds",
    "shard_cells",
    "parse_shard",
    "plan_check",
]

_PACKAGES = ("jax", "jaxlib", "numpy", "optax", "equinox", "covsim")
_IDENTITY = ("check", "size", "seeds", "base_seed", "cells", "control")


class ConfigMismatchError(RuntimeError):
    """The output folder holds results of a different configuration."""


def _canonical(obj: Any) -> str:
    """Canonical JSON text of a cell (sorted keys, no whitespace)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def stable_int_hash(cell: dict) -> int:
    """A 31-bit integer hash of a cell dict, stable across processes and runs."""
    digest = hashlib.sha256(_canonical(cell).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def cell_id(cell: dict, num_seeds: int, base_seed: int) -> str:
    """Short stable file id of a cell for a given seed count and base seed."""
    text = _canonical({"cell": cell, "seeds": num_seeds, "base_seed": base_seed})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cell_key(cell: dict, base_seed: int):
    """`jax.random.fold_in(PRNGKey(base_seed), stable_int_hash(cell))`."""
    import jax

    return jax.random.fold_in(jax.random.PRNGKey(base_seed), stable_int_hash(cell))


def cell_label(check_name: str, cell: dict) -> str:
    """Short text for progress lines, e.g. "horizon H=64 n=100"."""
    return " ".join([check_name] + [f"{k}={v}" for k, v in cell.items()])


# -- environment --------------------------------------------------------------------
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


def _jax_info(used: list | None = None) -> dict:
    import jax

    used = list(jax.devices()) if used is None else used
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": used[0].device_kind if used else None,
        "device_count": len(used),  # devices the seeds are laid out over
        "process_count": jax.process_count(),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "runtime_checks": runtime_checks_enabled(),  # covsim's traced value checks compiled in
    }


# -- compile time -------------------------------------------------------------------
_COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "backend_compile_s",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_retrieval_s",
}
_COMPILE_TOTALS = dict.fromkeys(_COMPILE_EVENTS.values(), 0.0)
_COMPILE_LOCK = threading.Lock()
_LISTENING = False


def _on_duration(event: str, duration: float, **_: Any) -> None:
    name = _COMPILE_EVENTS.get(event)
    if name is not None:
        with _COMPILE_LOCK:
            _COMPILE_TOTALS[name] += float(duration)


def compile_seconds() -> dict[str, float]:
    """Seconds JAX spent so far in this process tracing, lowering, compiling (backend) and
    reading the persistent compilation cache (summed `jax.monitoring` duration events)."""
    global _LISTENING
    if not _LISTENING:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _LISTENING = True
    with _COMPILE_LOCK:
        return dict(_COMPILE_TOTALS)


def _compile_share(before: dict[str, float], cell_seconds: float) -> dict[str, float]:
    now = compile_seconds()
    out = {k: now[k] - before[k] for k in now}
    out["compile_s"] = sum(out.values())
    out["compile_share"] = out["compile_s"] / cell_seconds if cell_seconds > 0 else 0.0
    return out


# -- job arrays ---------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """"I/K" -> (I, K) with 0 <= I < K (ValueError otherwise)."""
    try:
        i, k = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard must be I/K with integers, e.g. 0/4, got {text!r}") from None
    if not (k >= 1 and 0 <= i < k):
        raise ValueError(f"shard I/K needs K >= 1 and 0 <= I < K, got {text!r}")
    return i, k


def shard_cells(n_cells: int, shard: tuple[int, int] | None) -> list[int]:
    """Indices (0-based, in grid order) of the cells a shard runs: those equal to I mod K."""
    if shard is None:
        return list(range(n_cells))
    i, k = shard
    return list(range(i, n_cells, k))


class _Progress:
    """One live tqdm bar when stderr is a terminal, else one line per cell; silent if off."""

    def __init__(self, name: str, total: int, enabled: bool):
        self.lines = enabled and not _isatty(sys.stderr)
        self.bar = None
        if enabled and not self.lines:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm missing: fall back on lines
                self.lines = True
            else:
                self.bar = tqdm(total=total, desc=name, unit="cell", file=sys.stderr,
                                dynamic_ncols=True, leave=True)

    def update(self, label: str, status: str) -> None:
        if self.lines:
            print(f"{label} {status}", file=sys.stderr, flush=True)
        elif self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _config(check: Check, size: str, seeds: int, base_seed: int, cells: list[dict],
            control: bool = False, used_devices: list | None = None) -> dict:
    return {
        "check": check.name,
        "claim": check.claim,
        "reference": check.reference,
        "control": bool(control),
        "control_description": check.control.description if (control and check.control) else None,
        "rules": [r.to_json() for r in check.rules],
        "size": size,
        "seeds": seeds,
        "base_seed": base_seed,
        "cells": cells,
        "versions": _versions(),
        "git_commit": _git_commit(),
        "jax": _jax_info(used_devices),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "argv": sys.argv,
    }


# -- output folder ------------------------------------------------------------------
def _prepare_folder(out: pathlib.Path, config: dict, fresh: bool) -> None:
    """Create `out`; refuse a folder with another configuration unless `fresh`."""
    cfg_path = out / "config.json"
    if fresh:
        shutil.rmtree(out / "cells", ignore_errors=True)
        for name in ("metrics.csv", "summary.json"):
            (out / name).unlink(missing_ok=True)
    elif cfg_path.exists():
        old = read_json(cfg_path)
        new = json.loads(json.dumps(to_jsonable(config)))
        diff = [k for k in _IDENTITY if old.get(k) != new.get(k)]
        if diff:
            raise ConfigMismatchError(
                f"{out} holds results of a different configuration (differs in: "
                f"{', '.join(diff)}); rerun with fresh=True (--fresh) to discard them, "
                "or choose another output folder"
            )
    (out / "cells").mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, config)


def _load_cell(path: pathlib.Path, cell: dict, seeds: int) -> dict[str, np.ndarray] | None:
    """Metrics of a finished cell file, or None if absent, unreadable or not this cell."""
    if not path.exists():
        return None
    try:
        obj = from_jsonable(read_json(path))
        if _canonical(obj["cell"]) != _canonical(cell) or obj["seeds"] != seeds:
            return None
        metrics = {k: np.asarray(v) for k, v in obj["metrics"].items()}
    except (ValueError, KeyError, TypeError) as err:
        print(f"warning: ignoring unreadable {path}: {err}", file=sys.stderr)
        return None
    if any(v.shape != (seeds,) for v in metrics.values()):
        return None
    return metrics


def _is_lead() -> bool:
    import jax

    return jax.process_index() == 0


def _to_host(value: Any) -> np.ndarray:
    """A metric as a NumPy array; an array spread over several processes is gathered."""
    import jax

    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def _agreed_cached(out: pathlib.Path, cells: list[dict], todo: set[int], seeds: int,
                   base_seed: int) -> set[int]:
    """Indices of the cells already saved, as process 0 sees them (every process runs the
    same cells, in step)."""
    import jax

    found = np.array([i in todo and _load_cell(out / "cells" / f"{cell_id(c, seeds, base_seed)}.json",
                                               c, seeds) is not None
                      for i, c in enumerate(cells)], dtype=np.int32)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        found = np.asarray(multihost_utils.broadcast_one_to_all(found))
    return {i for i, f in enumerate(found) if f}


def _validate_metrics(check: Check, cell: dict, raw: Any, seeds: int) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{check.name}.run_cell must return a non-empty dict, got {type(raw)}")
    out = {}
    for name, value in raw.items():
        arr = _to_host(value)
        if arr.shape != (seeds,):
            raise ValueError(
                f"{check.name}.run_cell metric {name!r} has shape {arr.shape}, expected ({seeds},)"
            )
        if name == "seed" or name in cell:
            raise ValueError(f"{check.name}: metric name {name!r} clashes with a cell parameter")
        if np.issubdtype(arr.dtype, np.inexact) and np.isnan(arr).any():
            raise ValueError(
                f"{check.name}.run_cell metric {name!r} is NaN for seed(s) "
                f"{np.flatnonzero(np.isnan(arr)).tolist()[:8]} of cell {cell}: NaN is never a "
                "result (+inf can be). If covsim's run-time value checks were off (the CLI's "
                "default), rerun with --runtime-checks to find the value that caused it"
            )
        out[name] = arr
    return out


def _run_one(check: Check, cell: dict, seeds: int, base_seed: int) -> tuple[dict, float]:
    start = time.perf_counter()
    raw = check.run_cell(dict(cell), cell_key(check.key_params(cell), base_seed), seeds)
    metrics = _validate_metrics(check, cell, raw, seeds)  # np.asarray waits for the device
    return metrics, time.perf_counter() - start


def _rows(cell: dict, metrics: dict[str, np.ndarray], seeds: int) -> list[dict]:
    return [
        {**cell, "seed": s, **{k: v[s].item() for k, v in metrics.items()}} for s in range(seeds)
    ]


# -- public -------------------------------------------------------------------------
def run_check(
    check: Check,
    *,
    size: str = "quick",
    seeds: int | None = None,
    out: str | os.PathLike | None = None,
    base_seed: int = 0,
    fresh: bool = False,
    progress: bool = True,
    control: bool = False,
    devices: int | None = None,
    shard: tuple[int, int] | str | None = None,
) -> Summary | None:
    """Run every cell of `check.grid(size)` (resuming finished ones), judge, plot.

    **Arguments**

    - `size`: "quick" or "full". `seeds`: seeds per cell (default `check.seeds[size]`).
    - `out`: output folder (default `results/<check.name>`, or `results/<check.name>/control`
      for the control, relative to the cwd).
    - `base_seed`: root of the per-cell keys. `fresh`: discard previous cells.
    - `progress`: a live progress bar on stderr when it is a terminal, else one line per cell.
    - `control`: run the check's negative control instead (its verdict must be *fails*).
    - `devices`: how many local devices the seeds of a cell may be laid out over (default
      all; see :mod:`covsim.experiments.sharding`). The numbers do not depend on it.
    - `shard`: `(I, K)` or `"I/K"`: run only the cells whose index is `I mod K` (a job-array
      task) and return None without analysing; a later run without `shard` into the same
      `out` finds those cells cached.

    **Returns** the check's :class:`Summary` (also written to `out/summary.json`), or
    None for a shard.
    Raises :class:`ConfigMismatchError` if `out` holds another configuration and
    `fresh` is False. A KeyboardInterrupt leaves finished cells on disk and is re-raised.
    """
    t0 = time.perf_counter()
    seeds = check.num_seeds(size) if seeds is None else int(seeds)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if out is None:
        out = pathlib.Path("results") / check.name / ("control" if control else "")
    out = pathlib.Path(out)
    cells = json.loads(json.dumps(to_jsonable(check.cells(size, control=control))))
    if not cells:
        raise ValueError(f"{check.name}.grid({size!r}) returned no cells")
    if isinstance(shard, str):
        shard = parse_shard(shard)
    elif shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    if shard is not None and fresh:
        raise ValueError("fresh=True with a shard would discard the other shards' cells")
    from covsim.experiments.sharding import seed_devices, select_devices

    used = select_devices(devices)
    lead = _is_lead()  # with several processes (jax.distributed), process 0 alone writes
    if lead:
        _prepare_folder(out, _config(check, size, seeds, base_seed, cells, control, used), fresh)

    todo = set(shard_cells(len(cells), shard))
    cached = _agreed_cached(out, cells, todo, seeds, base_seed)
    rows: list[dict] = []
    n_run = n_cached = 0
    cell_seconds = 0.0
    compile_before = compile_seconds()
    name = check.name + (" (control)" if control else "")
    if shard is not None:
        name += f" shard {shard[0]}/{shard[1]}"
    bar = _Progress(name, len(todo), progress and lead)
    try:
        with seed_devices(used):
            for i, cell in enumerate(cells):
                if i not in todo:
                    continue
                path = out / "cells" / f"{cell_id(cell, seeds, base_seed)}.json"
                label = f"[{i + 1}/{len(cells)}] {cell_label(check.name, cell)} ..."
                metrics = _load_cell(path, cell, seeds) if (lead and i in cached) else None
                if i in cached:
                    n_cached += 1
                    bar.update(label, "cached")
                else:
                    try:
                        metrics, elapsed = _run_one(check, cell, seeds, base_seed)
                    except KeyboardInterrupt:
                        bar.close()
                        print(f"\ninterrupted: {n_cached + n_run} cell(s) saved in {out}; rerun to resume",
                              file=sys.stderr, flush=True)
                        raise
                    if lead:
                        atomic_write_json(path, {"cell": cell, "seeds": seeds,
                                                 "base_seed": base_seed, "metrics": metrics,
                                                 "elapsed_s": elapsed})
                    n_run += 1
                    cell_seconds += elapsed
                    bar.update(label, f"{elapsed:.1f}s")
                if lead:
                    rows.extend(_rows(cell, metrics, seeds))
    finally:
        bar.close()
    if shard is not None or not lead:
        return None

    ResultTable(rows).to_csv(out / "metrics.csv")
    table = ResultTable.read_csv(out / "metrics.csv")  # analyse exactly what is saved
    t_analyze = time.perf_counter()
    summary = check.judge(check.analyze(table, size))
    timing = {"total_s": time.perf_counter() - t0, "analyze_s": time.perf_counter() - t_analyze,
              "cells_run": n_run, "cells_cached": n_cached, "cell_seconds": cell_seconds,
              "devices": len(used), **_compile_share(compile_before, cell_seconds)}
    meta = {"control": bool(control), "expected_verdict": "fails" if control else "holds"}
    _write_summary(out, check, summary, timing, meta)
    _plot(check, out, summary, timing, meta)
    return summary


def _write_summary(out: pathlib.Path, check: Check, summary: Summary, timing: dict,
                   extra: dict | None = None) -> None:
    obj = {"check": check.name, **(extra or {}), **summary_to_json(summary), "timing": timing}
    atomic_write_json(out / "summary.json", obj)


def _plot(check: Check, out: pathlib.Path, summary: Summary, timing: dict, meta: dict) -> None:
    """Draw figures from the saved table; a plotting error is reported, not fatal."""
    if check.plot is None:
        return
    try:
        figures = plot_check(check, out=out, summary=summary)
    except Exception as err:  # the verdict matters more than a figure
        print(f"warning: {check.name}.plot failed: {err!r}", file=sys.stderr)
        summary.details["plot_error"] = repr(err)
        _write_summary(out, check, summary, timing, {**meta, "plot_error": repr(err)})
        return
    rel = [os.path.relpath(p, out) for p in figures]  # relative: the folder can be moved
    _write_summary(out, check, summary, timing, {**meta, "figures": rel})


def plot_check(check: Check, *, out: str | os.PathLike | None = None,
               summary: Summary | None = None) -> list[pathlib.Path]:
    """Re-draw a check's figures from `out/metrics.csv` (and `out/summary.json`)."""
    out = pathlib.Path(out) if out is not None else pathlib.Path("results") / check.name
    if check.plot is None:
        return []
    csv_path = out / "metrics.csv"
    if not csv_path.exists():
        raise FileNotFoundError(f"no saved results at {csv_path}; run `covsim check {check.name}`")
    table = ResultTable.read_csv(csv_path)
    if summary is None:
        summary = Summary.from_json(read_json(out / "summary.json"))
    return [pathlib.Path(p) for p in check.plot(table, summary, out)]


def plan_check(check: Check, *, size: str = "quick", seeds: int | None = None,
               control: bool = False, measured: str | os.PathLike | None = None) -> dict:
    """What `run_check` would run, without running it: cells, seeds, seed-runs, and an
    estimate of the seconds from the cell files of an earlier run in `measured` (any size;
    seconds per seed-run, compile included, times the seed-runs; None when there is none).
    """
    seeds = check.num_seeds(size) if seeds is None else int(seeds)
    cells = check.cells(size, control=control)
    plan = {"check": check.name, "size": size, "control": bool(control), "cells": len(cells),
            "seeds": seeds, "seed_runs": len(cells) * seeds, "estimate_s": None,
            "estimate_from": None}
    folder = pathlib.Path(measured) if measured is not None else None
    if folder is None or not (folder / "cells").is_dir():
        return plan
    seconds = runs = 0.0
    for path in (folder / "cells").glob("*.json"):
        try:
            obj = read_json(path)
            seconds += float(obj["elapsed_s"])
            runs += int(obj["seeds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if runs > 0:
        plan["estimate_s"] = seconds / runs * plan["seed_runs"]
        plan["estimate_from"] = f"{int(runs)} seed-runs in {folder} ({seconds:.1f} s)"
    return plan


def load_check(name: str) -> Check:
    """The check registered as `name` in the ``covsim.checks`` entry points (ValueError if none)."""
    from covsim.experiments import registry

    return registry.load(name)


def run_checks(
    names: str | Iterable[str] = "all",
    *,
    out: str | os.PathLike | None = None,
    **kwargs: Any,
) -> dict[str, Summary]:
    """Run several checks (`"all"` = every registered one) into `out/<name>`.

    `out` is the parent folder (default `results`); other keyword arguments go to
    :func:`run_check`. Returns `{name: Summary}`; the first crash propagates.
    """
    from covsim.experiments import registry

    if isinstance(names, str):
        names = [names]
    names = list(names)
    if names == ["all"]:
        names = registry.check_names()
    parent = pathlib.Path(out) if out is not None else pathlib.Path("results")
    return {n: run_check(load_check(n), out=parent / n, **kwargs) for n in names}
