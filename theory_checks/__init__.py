"""Theory checks: one module per claim of arXiv 2510.15020, each defining `CHECK`.

Run one with `covsim check NAME` or `python -m theory_checks NAME`; list them (with
their declared rules) with `covsim list --rules`. Checks are registered in the
``covsim.checks`` entry-point group of `pyproject.toml`; to add one, write
`theory_checks/<name>.py` with a module-level
`CHECK = covsim.experiments.check.Check(...)` and add
`<name> = "theory_checks.<name>:CHECK"` to that group. Shared helpers live in
`theory_checks/_*.py`; a check never imports another check.
"""
