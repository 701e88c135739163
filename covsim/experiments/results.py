"""Results I/O: :class:`ResultTable` (rows of cell params + seed + metrics) and atomic writes."""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np

from covsim.experiments.check import to_jsonable

__all__ = ["ResultTable", "atomic_write_text", "atomic_write_json", "read_json"]

_MISSING = object()


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write `text` to `path` atomically (temp file in the same folder, then `os.replace`).

    The file is made readable by others (mode 0644 less the umask), like the figures.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write `obj` as indented strict JSON (non-finite floats as strings), atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (no decoding of "inf"/"nan" strings; see `from_jsonable`)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _format_value(v: Any) -> str:
    """CSV cell text: floats with repr precision ("inf", "-inf", "nan" for non-finite)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _parse_value(s: str) -> Any:
    """Parse CSV cell text back: int, then float (incl. inf/nan), else the string."""
    if s == "True" or s == "False":
        return s == "True"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


class ResultTable:
    """A list of rows; a row is a flat dict of cell parameters, "seed" and metric values.

    Small and numpy-only on purpose (no pandas). Rows are kept in insertion order.
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()):
        self.rows: list[dict] = [dict(r) for r in rows]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> "ResultTable":
        return cls(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"ResultTable({len(self.rows)} rows, columns={self.columns})"

    @property
    def columns(self) -> list[str]:
        """Column names in first-seen order over all rows."""
        names: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                names.setdefault(k, None)
        return list(names)

    # -- I/O -------------------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike) -> pathlib.Path:
        """Write all rows as CSV, atomically; missing values are empty cells."""
        import io

        buf = io.StringIO()
        cols = self.columns
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for r in self.rows:
            writer.writerow([_format_value(r[c]) if c in r else "" for c in cols])
        return atomic_write_text(path, buf.getvalue())

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> "ResultTable":
        """Read a CSV written by :meth:`to_csv` (ints, floats incl. inf/nan, strings)."""
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = [{k: _parse_value(v) for k, v in r.items() if v != ""} for r in reader]
        return cls(rows)

    # -- queries ---------------------------------------------------------------------
    def select(self, **equal_filters: Any) -> "ResultTable":
        """Rows whose columns equal the given values (floats compared with ==)."""
        return ResultTable(
            r for r in self.rows if all(k in r and r[k] == v for k, v in equal_filters.items())
        )

    def column(self, name: str, default: Any = _MISSING) -> np.ndarray:
        """One column as a numpy array.

        A row that lacks the column raises KeyError, unless `default` is given (e.g.
        ``np.nan`` for tables that mix cell kinds with different metrics).
        """
        if default is not _MISSING:
            return np.asarray([r.get(name, default) for r in self.rows])
        try:
            return np.asarray([r[name] for r in self.rows])
        except KeyError:
            raise KeyError(f"column {name!r} missing; columns are {self.columns}") from None

    def unique(self, name: str) -> list:
        """Sorted distinct values of a column."""
        return sorted({r[name] for r in self.rows if name in r})

    def group_mean(
        self, x_name: str, y_name: str, **filters: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r"""Seed-mean of `y_name` at each value of `x_name` (after `select(**filters)`).

        **Returns** `(x, mean, se, per_seed)`: `x` shape (k,) sorted, `mean` and
        `se` (standard error $s/\sqrt{S}$, 0 when S = 1) shape (k,), and `per_seed`
        shape (k, S) ordered by the "seed" column. Every x must have the same
        number of rows and no repeated seed, else ValueError (filter the other
        grid parameters first).
        """
        sub = self.select(**filters)
        if not sub.rows:
            raise ValueError(f"no rows match {filters}")
        xs = sub.unique(x_name)
        per = []
        for x in xs:
            grp = sorted(sub.select(**{x_name: x}).rows, key=lambda r: r.get("seed", 0))
            seeds = [r.get("seed") for r in grp]
            if len(set(seeds)) != len(seeds):
                raise ValueError(
                    f"group_mean({x_name!r}, {y_name!r}): repeated seeds at {x_name}={x!r}; "
                    "rows differ in another parameter, filter it first"
                )
            per.append([float(r[y_name]) for r in grp])
        lengths = {len(p) for p in per}
        if len(lengths) != 1:
            raise ValueError(
                f"group_mean({x_name!r}, {y_name!r}): unequal rows per {x_name} "
                f"({dict(zip(xs, map(len, per)))}); filter other parameters first"
            )
        mat = np.asarray(per, dtype=float)
        s = mat.shape[1]
        with np.errstate(invalid="ignore", over="ignore"):  # inf rows give inf/nan, not warnings
            mean = mat.mean(axis=1)
            se = mat.std(axis=1, ddof=1) / math.sqrt(s) if s > 1 else np.zeros(len(xs))
        return np.asarray(xs), mean, se, mat
