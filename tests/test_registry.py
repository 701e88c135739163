"""A researcher's own package registers a check through the `covsim.checks` entry-point
group and covsim finds, lists, runs and judges it — without covsim importing it by name."""

import sys
import textwrap

import pytest

from covsim.cli import main
from covsim.experiments import registry

CHECK_MODULE = textwrap.dedent('''
    import jax
    from covsim.experiments import Analysis, Check, Control, Evidence, Rule

    def grid(size):
        return [{"x": 1, "variant": "claim"}]

    def control_grid(size):
        return [{"x": 1, "variant": "control"}]

    def run_cell(cell, key, num_seeds):
        u = jax.random.uniform(key, (num_seeds,))
        return {"u": u if cell["variant"] == "claim" else u + 1.0}

    def analyze(table, size):
        u = table.column("u")
        return Analysis({"u_below_one": Evidence.count(int((u >= 1).sum()), u.size, seeds=u.size)})

    CHECK = Check(
        name="my_claim", claim="uniforms lie below 1", reference="arXiv 2510.15020 v2, Prop. 0",
        grid=grid, run_cell=run_cell, analyze=analyze,
        rules=[Rule("u_below_one", "zero_violations", "draws with u >= 1", None,
                    regime="the one cell", theory="THEORY §0 (toy)")],
        control=Control("draws shifted by 1", control_grid), seeds={"tiny": 8, "quick": 8, "full": 8})
''')


@pytest.fixture
def my_package(tmp_path, monkeypatch):
    (tmp_path / "my_claim_pkg.py").write_text(CHECK_MODULE)
    dist = tmp_path / "my_claim_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-claim-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text('[covsim.checks]\nmy_claim = my_claim_pkg:CHECK\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_claim_pkg", None)


def test_entry_point_check_is_found_listed_and_judged(my_package, tmp_path, capsys):
    assert "my_claim" in registry.check_names()
    assert registry.load("my_claim").name == "my_claim"
    assert main(["list", "--rules"]) == 0
    assert "uniforms lie below 1" in capsys.readouterr().out
    out = tmp_path / "results"
    assert main(["check", "my_claim", "--out", str(out), "--quiet"]) == 0
    assert main(["check", "my_claim", "--control", "--out", str(out), "--quiet"]) == 1
