"""Where checks come from: the ``covsim.checks`` entry-point group.

Any installed package can register theory checks by declaring, in its
``pyproject.toml``::

    [project.entry-points."covsim.checks"]
    my_claim = "my_package.my_claim:CHECK"

where ``CHECK`` is a :class:`~covsim.experiments.check.Check`. covsim's own checks
(the ``theory_checks`` package) are registered the same way, so covsim never imports
them by name. Names are listed sorted: covsim's own checks first, then other packages'.
"""

from __future__ import annotations

import importlib.metadata

from covsim.experiments.check import Check

__all__ = ["GROUP", "check_names", "load", "UnknownCheckError"]

GROUP = "covsim.checks"


class UnknownCheckError(ValueError):
    """A check name that no installed package registers."""


def _entry_points() -> dict:
    found: dict = {}
    eps = sorted(importlib.metadata.entry_points(group=GROUP),
                 key=lambda ep: (0 if ep.value.startswith("theory_checks.") else 1, ep.name))
    for ep in eps:
        found.setdefault(ep.name, ep)  # first wins (an editable and a plain install may both list it)
    return found


def check_names() -> list[str]:
    """Names of every registered check."""
    return list(_entry_points())


def load(name: str) -> Check:
    """The registered check `name` (`UnknownCheckError` if no package registers it)."""
    eps = _entry_points()
    if name not in eps:
        raise UnknownCheckError(f"unknown check {name!r}; registered checks: "
                                f"{', '.join(eps) or '(none: is covsim installed?)'}")
    check = eps[name].load()
    if not isinstance(check, Check):
        raise TypeError(f"entry point {name!r} = {eps[name].value!r} is a {type(check).__name__}, "
                        "not a covsim.experiments.Check")
    return check
