"""Tests of the `covsim` command line, with toy checks registered by monkeypatching."""

import json

import jax
import jax.numpy as jnp
import pytest

import theory_checks
from covsim.cli import check_main, main
from covsim.experiments.check import Check, Summary
from covsim.experiments.stats import zero_violation_assertion


@pytest.fixture(autouse=True)
def restore_x64():
    """The CLI enables float64 globally; put the flag back for other tests."""
    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)


def make_check(name, verdict="holds"):
    def run_cell(cell, key, num_seeds):
        if verdict == "crash":
            raise RuntimeError("boom")
        v = jax.random.uniform(key, (num_seeds,), minval=0.1)
        return {"v": v, "is_f64": jnp.full((num_seeds,), v.dtype == jnp.float64)}

    def analyze(table, size):
        violations = 0 if verdict == "holds" else 1
        return Summary([zero_violation_assertion("ineq", violations, len(table))])

    def plot(table, summary, out):
        from covsim.plotting import scatter_figure

        v = table.column("v")
        return [scatter_figure(out / "v_vs_v.png", v, v, xlabel="v", ylabel="v", title=name)]

    return Check(name=name, claim=f"{name} claim", reference="arXiv 2510.15020 v2, Prop. 0",
                 grid=lambda size: [{"i": i} for i in range(2)], run_cell=run_cell,
                 analyze=analyze, plot=plot, seeds={"quick": 3, "full": 5})


@pytest.fixture
def registry(monkeypatch):
    checks = {n: make_check(n, v) for n, v in
              [("good", "holds"), ("bad", "fails"), ("crashy", "crash")]}

    def load(name):
        if name == "broken":
            raise ImportError("missing dependency")
        return checks[name]

    monkeypatch.setattr(theory_checks, "CHECK_NAMES", ["good", "bad", "crashy", "broken"])
    monkeypatch.setattr(theory_checks, "load", load)
    return checks


def test_list_real_registry_returns_0(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in theory_checks.CHECK_NAMES:
        assert name in out


def test_list_shows_import_errors_without_crashing(registry, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "good claim" in out and "arXiv 2510.15020 v2, Prop. 0" in out
    assert "IMPORT ERROR" in out and "missing dependency" in out


def test_unknown_check_returns_2(registry, capsys):
    assert main(["check", "nope"]) == 2
    assert "good" in capsys.readouterr().err
    assert main(["plot", "nope"]) == 2
    assert main(["frobnicate"]) == 2


def test_real_registry_unknown_name_returns_2(capsys):
    assert main(["check", "definitely_not_a_check"]) == 2
    assert "inequalities" in capsys.readouterr().err


def test_check_holds_returns_0_and_enables_x64(registry, tmp_path, capsys):
    jax.config.update("jax_enable_x64", False)
    assert main(["check", "good", "--out", str(tmp_path), "--quiet"]) == 0
    assert jax.config.jax_enable_x64
    out = capsys.readouterr().out
    assert "good" in out and "holds" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] == "holds"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seeds"] == 3 and config["jax"]["jax_enable_x64"] is True
    assert "is_f64" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert all(line.endswith(",True") for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:])
    assert (tmp_path / "v_vs_v.png").exists()
    (tmp_path / "v_vs_v.png").unlink()
    assert main(["plot", "good", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "v_vs_v.png").exists()


def test_check_fails_or_crash_returns_1(registry, tmp_path, capsys):
    assert main(["check", "bad", "--out", str(tmp_path / "bad"), "--quiet"]) == 1
    assert main(["check", "crashy", "--out", str(tmp_path / "c"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "fails" in out and "crashed" in out and "boom" in out


def test_check_all_uses_out_as_parent_and_options(registry, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(theory_checks, "CHECK_NAMES", ["good", "bad"])
    code = main(["check", "all", "--out", str(tmp_path), "--full", "--seeds", "2", "--seed", "7", "--quiet"])
    assert code == 1
    for name in ("good", "bad"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert (config["size"], config["seeds"], config["base_seed"]) == ("full", 2, 7)
    out = capsys.readouterr().out
    assert out.index("good") < out.index("bad")
    # a changed configuration is refused (crash, exit 1) unless --fresh
    assert main(["check", "good", "--out", str(tmp_path / "good"), "--quiet"]) == 1
    assert main(["check", "good", "--out", str(tmp_path / "good"), "--quiet", "--fresh"]) == 0


def test_plot_without_results_returns_1(registry, tmp_path):
    assert main(["plot", "good", "--out", str(tmp_path)]) == 1


def test_check_main_for_python_m(registry, tmp_path):
    assert check_main("good", ["--out", str(tmp_path), "--quiet"]) == 0
