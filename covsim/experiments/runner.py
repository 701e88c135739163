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

__all__ = [
    "run_check",
    "run_checks",
    "load_check",
    "plot_check",
    "stable_int_hash",
    "cell_id",
    "cell_key",
    "ConfigMismatchError",
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


def _jax_info() -> dict:
    import jax

    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
    }


def _config(check: Check, size: str, seeds: int, base_seed: int, cells: list[dict],
            control: bool = False) -> dict:
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
        "jax": _jax_info(),
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


def _validate_metrics(check: Check, cell: dict, raw: Any, seeds: int) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{check.name}.run_cell must return a non-empty dict, got {type(raw)}")
    out = {}
    for name, value in raw.items():
        arr = np.asarray(value)
        if arr.shape != (seeds,):
            raise ValueError(
                f"{check.name}.run_cell metric {name!r} has shape {arr.shape}, expected ({seeds},)"
            )
        if name == "seed" or name in cell:
            raise ValueError(f"{check.name}: metric name {name!r} clashes with a cell parameter")
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
) -> Summary:
    """Run every cell of `check.grid(size)` (resuming finished ones), judge, plot.

    **Arguments**

    - `size`: "quick" or "full". `seeds`: seeds per cell (default `check.seeds[size]`).
    - `out`: output folder (default `results/<check.name>`, or `results/<check.name>/control`
      for the control, relative to the cwd).
    - `base_seed`: root of the per-cell keys. `fresh`: discard previous cells.
    - `progress`: one line per cell on stderr.
    - `control`: run the check's negative control instead (its verdict must be *fails*).

    **Returns** the check's :class:`Summary` (also written to `out/summary.json`).
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
    _prepare_folder(out, _config(check, size, seeds, base_seed, cells, control), fresh)

    rows: list[dict] = []
    n_run = n_cached = 0
    cell_seconds = 0.0
    for i, cell in enumerate(cells, start=1):
        path = out / "cells" / f"{cell_id(cell, seeds, base_seed)}.json"
        label = f"[{i}/{len(cells)}] {cell_label(check.name, cell)} ..."
        metrics = _load_cell(path, cell, seeds)
        if metrics is not None:
            n_cached += 1
            if progress:
                print(f"{label} cached", file=sys.stderr, flush=True)
        else:
            try:
                metrics, elapsed = _run_one(check, cell, seeds, base_seed)
            except KeyboardInterrupt:
                print(f"\ninterrupted: {i - 1} cell(s) saved in {out}; rerun to resume",
                      file=sys.stderr, flush=True)
                raise
            atomic_write_json(path, {"cell": cell, "seeds": seeds, "base_seed": base_seed,
                                     "metrics": metrics, "elapsed_s": elapsed})
            n_run += 1
            cell_seconds += elapsed
            if progress:
                print(f"{label} {elapsed:.1f}s", file=sys.stderr, flush=True)
        rows.extend(_rows(cell, metrics, seeds))

    ResultTable(rows).to_csv(out / "metrics.csv")
    table = ResultTable.read_csv(out / "metrics.csv")  # analyse exactly what is saved
    t_analyze = time.perf_counter()
    summary = check.judge(check.analyze(table, size))
    timing = {"total_s": time.perf_counter() - t0, "analyze_s": time.perf_counter() - t_analyze,
              "cells_run": n_run, "cells_cached": n_cached, "cell_seconds": cell_seconds}
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
