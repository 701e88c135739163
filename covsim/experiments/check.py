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
    "Control",
    "Analysis",
    "Verdict",
    "Assertion",
    "Summary",
    "summary_to_json",
    "summary_from_json",
    "to_jsonable",
    "from_jsonable",
]

class Verdict(str, enum.Enum):
    """Outcome of a theory check or of one of its assertions."""

    HOLDS = "holds"
    FAILS = "fails"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


def _default_seeds() -> dict[str, int]:
    return {"tiny": 8, "quick": 16, "full": 256}


@dataclass(frozen=True)
class Control:
    """A negative control: the same analysis on a variant where the claim is false.

    - `description`: what the variant is and why the claim fails on it.
    - `grid(size)`: the control's cells (the check's `run_cell` and `analyze` handle
      them; a cell usually carries a ``variant`` parameter saying what is changed).

    `covsim check NAME --control` runs it; its verdict must be *fails*.
    """

    description: str
    grid: Callable[[str], list[dict]]


@dataclass
class Analysis:
    """What a check's `analyze` returns: one evidence per declared rule, observations apart.

    - `evidence`: ``{rule name: Evidence}``; a rule without evidence is *inconclusive*.
    - `observations`: numbers for information (never change a verdict).
    - `details`: anything else for `summary.json` (fits for figures, ...).
    """

    evidence: dict
    observations: list = field(default_factory=list)
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One claim of the paper, as a runnable experiment with declared rules.

    **Fields**

    - `name`: short identifier (e.g. "horizon"); the entry-point name of the check.
    - `claim`: one sentence stating the claim.
    - `reference`: where it is in the paper, e.g. "arXiv 2510.15020 v2, Prop. 3.2".
    - `grid(size)`: for size "quick" or "full", the list of cells; a cell is a flat
      JSON-serialisable dict of parameters (ints, floats, strings).
    - `run_cell(cell, key, num_seeds)`: simulates all seeds of one cell at once
      (vmapped) and returns `{metric_name: array of shape (num_seeds,)}`.
    - `rules`: the declared :class:`~covsim.experiments.rules.Rule` s, fixed before any run.
    - `analyze(table, size)`: computes the statistics — an :class:`Analysis` with one
      :class:`~covsim.experiments.rules.Evidence` per rule; the framework judges them.
    - `control`: the negative :class:`Control` (its verdict must be *fails*).
    - `plot(table, summary, out_dir)`: optional; draws figures from saved results
      into `out_dir` and returns their paths.
    - `seeds`: default number of seeds per size ("tiny" is the size the test suite runs).
    - `paired_over`: cell parameters left out of the cell's key, so cells that differ only
      in them (e.g. ``("H",)``) draw the same seed keys — common random numbers, so
      slopes and comparisons across those cells are estimated on paired draws.
    """

    name: str
    claim: str
    reference: str
    grid: Callable[[str], list[dict]]
    run_cell: Callable[[dict, "jax.Array", int], dict[str, np.ndarray]]
    analyze: Callable[["ResultTable", str], "Analysis"]
    rules: tuple = ()
    control: Control | None = None
    plot: Callable[["ResultTable", "Summary", pathlib.Path], list[pathlib.Path]] | None = None
    seeds: Mapping[str, int] = field(default_factory=_default_seeds)
    paired_over: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "paired_over", tuple(self.paired_over))
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"check {self.name!r}: rule names must be unique, repeated: {dup}")

    def num_seeds(self, size: str) -> int:
        """Default number of seeds for `size` ("quick" or "full")."""
        if size not in self.seeds:
            raise ValueError(f"size must be one of {sorted(self.seeds)}, got {size!r}")
        return int(self.seeds[size])

    def key_params(self, cell: Mapping) -> dict:
        """The part of `cell` its seed keys are derived from (all but `paired_over`)."""
        return {k: v for k, v in cell.items() if k not in self.paired_over}

    def cells(self, size: str, *, control: bool = False) -> list[dict]:
        """The cells of the run (`control=True`: of the negative control)."""
        if control:
            if self.control is None:
                raise ValueError(f"check {self.name!r} declares no negative control")
            return list(self.control.grid(size))
        return list(self.grid(size))

    def judge(self, analysis: "Analysis | Summary") -> "Summary":
        """Apply the declared rules to `analysis` (see :func:`~covsim.experiments.rules.judge`).

        Evidence for a name that is not a declared rule is an error (rules are data,
        declared up front). A legacy `analyze` returning a :class:`Summary` is passed through.
        """
        from covsim.experiments.rules import judge

        if isinstance(analysis, Summary):
            return analysis
        declared = {r.name for r in self.rules}
        extra = sorted(set(analysis.evidence) - declared)
        if extra:
            raise ValueError(f"check {self.name!r}: evidence for undeclared rule(s) {extra}; "
                             f"declared: {sorted(declared)}")
        assertions = [judge(r, analysis.evidence.get(r.name)) for r in self.rules]
        return Summary(assertions, dict(analysis.details), list(analysis.observations))


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
    observations: list = field(default_factory=list)

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
        "observations": [o.to_json() if hasattr(o, "to_json") else to_jsonable(o)
                         for o in summary.observations],
        "details": to_jsonable(summary.details),
    }


def summary_from_json(obj: Mapping) -> Summary:
    """Inverse of :func:`summary_to_json` (extra keys such as timing are ignored)."""
    from covsim.experiments.rules import Observation

    return Summary(
        assertions=[Assertion.from_json(a) for a in obj.get("assertions", [])],
        details=from_jsonable(obj.get("details", {})),
        observations=[Observation.from_json(from_jsonable(o)) for o in obj.get("observations", [])],
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
