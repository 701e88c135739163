"""One registry, one test (the optax habit): every registered check is run through the
same contract — grids serialisable at every size, rules well formed, a tiny run gives a
Summary, and the negative control *fails*."""

import json

import pytest

from covsim.experiments import registry
from covsim.experiments.check import Check, Summary, Verdict
from covsim.experiments.rules import KINDS, Rule
from covsim.experiments.runner import run_check

NAMES = registry.check_names()
SIZES = ("tiny", "quick", "full")


def test_registry_holds_the_suite():
    assert len(NAMES) >= 16
    for name in ("inequalities", "horizon", "mle_rates", "best_of_n"):
        assert name in NAMES


@pytest.fixture(scope="module", params=NAMES)
def check(request) -> Check:
    chk = registry.load(request.param)
    assert chk.name == request.param
    return chk


def test_grids_serialisable_at_every_size(check):
    for size in SIZES:
        assert check.num_seeds(size) >= 1
        for control in (False, True):
            cells = check.cells(size, control=control)
            assert cells, (size, control)
            text = json.dumps(cells, allow_nan=False)
            assert json.loads(text) == cells
            for cell in cells:
                assert all(isinstance(v, (int, float, str, bool)) for v in cell.values()), cell
    assert check.num_seeds("tiny") >= 8, "the tiny run must clear the power floor"


def test_rules_declared_and_well_formed(check):
    assert check.rules, "a check declares its rules up front"
    for rule in check.rules:
        assert isinstance(rule, Rule) and rule.kind in KINDS
        assert "§" in rule.theory or "Prop" in rule.theory or "Thm" in rule.theory, rule.theory
        assert rule.describe()
    assert check.control is not None and check.control.description.strip()
    assert set(check.paired_over) <= {k for c in check.cells("quick") for k in c}


def test_tiny_run_gives_a_summary_and_the_control_fails(check, tmp_path):
    summary = run_check(check, size="tiny", out=tmp_path / "run", progress=False)
    assert isinstance(summary, Summary)
    assert [a.name for a in summary.assertions] == [r.name for r in check.rules]
    control = run_check(check, size="tiny", out=tmp_path / "control", progress=False, control=True)
    assert control.verdict == Verdict.FAILS, control.reason
    saved = json.loads((tmp_path / "control" / "summary.json").read_text())
    assert saved["verdict"] == "fails" and saved["control"] is True
