"""The theory-check data model: :class:`Check`, :class:`Assertion`, :class:`Summary`.

A *check* states one claim of the paper (arXiv 2510.15020), a grid of cells, how
to simulate one cell for all seeds at once, and how to turn the collected rows
into a verdict. The runner (:mod:`covsim.experiments.runner`) does the rest.
"""

from __future__ import annotations

import enum
import math
import pathlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import jax

    from covsim.experiments.results import ResultTable

__all__ = [
    "Check",
    "Verdict",
    "Assertion",
    "Summary",
    "summary_to_json",
    "summary_from_json",
    "to_jsonable",
    "from_jsonable",
]

SIZES = ("quick", "full")


class Verdict(str, enum.Enum):
    """Outcome of a theory check or of one of its assertions."""

    HOLDS = "holds"
    FAILS = "fails"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


def _default_seeds() -> dict[str, int]:
    return {"quick": 16, "full": 256}


@dataclass(frozen=True)
class Check:
    """One claim of the paper, as a runnable experiment.

    **Fields**

    - `name`: short identifier, also the module name in `theory_checks/` (e.g. "horizon").
    - `claim`: one sentence stating the claim.
    - `reference`: where it is in the paper, e.g. "arXiv 2510.15020 v2, Prop. 3.2".
    - `grid(size)`: for size "quick" or "full", the list of cells; a cell is a flat
      JSON-serialisable dict of parameters (ints, floats, strings).
    - `run_cell(cell, key, num_seeds)`: simulates all seeds of one cell at once
      (vmapped) and returns `{metric_name: array of shape (num_seeds,)}`.
    - `analyze(table, size)`: turns all rows (a `ResultTable`) into a `Summary`.
    - `plot(table, summary, out_dir)`: optional; draws figures from saved results
      into `out_dir` and returns their paths.
    - `seeds`: default number of seeds per size.
    """

    name: str
    claim: str
    reference: str
    grid: Callable[[str], list[dict]]
    run_cell: Callable[[dict, "jax.Array", int], dict[str, np.ndarray]]
    analyze: Callable[["ResultTable", str], "Summary"]
    plot: Callable[["ResultTable", "Summary", pathlib.Path], list[pathlib.Path]] | None = None
    seeds: Mapping[str, int] = field(default_factory=_default_seeds)

    def num_seeds(self, size: str) -> int:
        """Default number of seeds for `size` ("quick" or "full")."""
        if size not in self.seeds:
            raise ValueError(f"size must be one of {sorted(self.seeds)}, got {size!r}")
        return int(self.seeds[size])


@dataclass
class Assertion:
    """One tested statement of a check: its verdict, a human reason, numbers."""

    name: str
    verdict: Verdict
    reason: str
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verdict = Verdict(self.verdict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "details": to_jsonable(self.details),
        }

    @classmethod
    def from_json(cls, obj: Mapping) -> "Assertion":
        return cls(
            name=obj["name"],
            verdict=Verdict(obj["verdict"]),
            reason=obj["reason"],
            details=from_jsonable(obj.get("details", {})),
        )


@dataclass
class Summary:
    """The outcome of a check: its assertions plus free-form details (fits, ...).

    `verdict` is *fails* if any assertion fails, else *inconclusive* if any is
    inconclusive or there are no assertions at all, else *holds*.
    """

    assertions: list[Assertion]
    details: dict = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        verdicts = [a.verdict for a in self.assertions]
        if Verdict.FAILS in verdicts:
            return Verdict.FAILS
        if not verdicts or Verdict.INCONCLUSIVE in verdicts:
            return Verdict.INCONCLUSIVE
        return Verdict.HOLDS

    @property
    def reason(self) -> str:
        """Reasons of the assertions that do not hold, or of all if all hold."""
        if not self.assertions:
            return "no assertions were made"
        bad = [a for a in self.assertions if a.verdict != Verdict.HOLDS]
        chosen = bad or self.assertions
        return "; ".join(f"{a.name}: {a.reason}" for a in chosen)

    def to_json(self) -> dict:
        return summary_to_json(self)

    @classmethod
    def from_json(cls, obj: Mapping) -> "Summary":
        return summary_from_json(obj)


def summary_to_json(summary: Summary) -> dict:
    """A JSON-serialisable dict: verdict, reason, assertions and details."""
    return {
        "verdict": summary.verdict.value,
        "reason": summary.reason,
        "assertions": [a.to_json() for a in summary.assertions],
        "details": to_jsonable(summary.details),
    }


def summary_from_json(obj: Mapping) -> Summary:
    """Inverse of :func:`summary_to_json` (extra keys such as timing are ignored)."""
    return Summary(
        assertions=[Assertion.from_json(a) for a in obj.get("assertions", [])],
        details=from_jsonable(obj.get("details", {})),
    )


_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/JAX scalars and arrays, enums and paths to plain JSON values.

    Non-finite floats become the strings "inf", "-inf", "nan" (strict JSON has
    no such numbers); :func:`from_jsonable` turns them back.
    """
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if hasattr(obj, "__array__") and not isinstance(obj, str):
        return to_jsonable(np.asarray(obj).tolist())
    return obj


def from_jsonable(obj: Any) -> Any:
    """Inverse of :func:`to_jsonable` for non-finite floats ("inf" -> inf, ...)."""
    if isinstance(obj, str) and obj in _SPECIAL:
        return _SPECIAL[obj]
    if isinstance(obj, dict):
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj
