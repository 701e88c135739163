"""Tests of the `covsim` command line, with toy checks registered by monkeypatching."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from covsim.cli import EXIT_CRASH, EXIT_FAILS, EXIT_HOLDS, EXIT_USAGE, check_main, main
from covsim.experiments import registry as registry_mod
from covsim.experiments.check import Analysis, Check, Control
from covsim.experiments.rules import Evidence, Rule


@pytest.fixture(autouse=True)
def restore_x64(monkeypatch):
    """The CLI enables float64 globally; put the flag back for other tests. The persistent
    compilation cache stays off here (tests must not write under the user's cache)."""
    monkeypatch.setenv("COVSIM_NO_COMPILE_CACHE", "1")
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
        violations = 0 if (verdict == "holds" and table.rows[0].get("variant") != "control") else 1
        return Analysis({"ineq": Evidence.count(violations, len(table), seeds=8)})

    def plot(table, summary, out):
        from covsim.plotting import scatter_figure

        v = table.column("v")
        return [scatter_figure(out / "v_vs_v.png", v, v, xlabel="v", ylabel="v", title=name)]

    return Check(name=name, claim=f"{name} claim", reference="arXiv 2510.15020 v2, Prop. 0",
                 grid=lambda size: [{"i": i} for i in range(2)], run_cell=run_cell,
                 analyze=analyze, plot=plot, seeds={"quick": 3, "full": 5},
                 rules=[Rule("ineq", "zero_violations", "violations of the toy inequality", None,
                             regime="every cell", theory="§0 toy")],
                 control=Control("the inequality is violated on purpose",
                                 lambda size: [{"i": i, "variant": "control"} for i in range(2)]))


@pytest.fixture
def registry(monkeypatch):
    checks = {n: make_check(n, v) for n, v in
              [("good", "holds"), ("bad", "fails"), ("crashy", "crash")]}

    def load(name):
        if name == "broken":
            raise ImportError("missing dependency")
        return checks[name]

    names = ["good", "bad", "crashy", "broken"]
    monkeypatch.setattr(registry_mod, "check_names", lambda: list(names))
    monkeypatch.setattr(registry_mod, "load", load)
    checks["_names"] = names
    return checks


def test_list_real_registry_returns_0(capsys):
    assert main(["list", "--rules"]) == 0
    out = capsys.readouterr().out
    names = registry_mod.check_names()
    assert "horizon" in names and "inequalities" in names
    for name in names:
        assert name in out
    assert "IMPORT ERROR" not in out
    assert "rule " in out and "control: " in out


def test_registry_reads_the_entry_point_group():
    import importlib.metadata

    eps = {ep.name for ep in importlib.metadata.entry_points(group=registry_mod.GROUP)}
    assert set(registry_mod.check_names()) == eps
    with pytest.raises(ValueError, match="unknown check"):
        registry_mod.load("definitely_not_a_check")


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


def test_check_fails_returns_1_and_crash_returns_3(registry, tmp_path, capsys):
    assert main(["check", "bad", "--out", str(tmp_path / "bad"), "--quiet"]) == EXIT_FAILS
    assert main(["check", "crashy", "--out", str(tmp_path / "c"), "--quiet"]) == EXIT_CRASH
    captured = capsys.readouterr()
    assert "fails" in captured.out and "crashed" in captured.out and "boom" in captured.out
    assert "Traceback" in captured.err  # a crash shows its traceback


def test_control_run_fails_in_its_own_folder(registry, tmp_path):
    assert main(["check", "good", "--control", "--out", str(tmp_path), "--quiet"]) == EXIT_FAILS
    saved = json.loads((tmp_path / "control" / "summary.json").read_text())
    assert saved["control"] is True and saved["verdict"] == "fails"
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("argv,needle", [
    (["check", "good", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["check", "good", "--seeds", "x"], "invalid int value"),
    (["check", "nope"], "unknown check"),
    (["check", "good", "--out", "/etc/hostname/covsim"], "not writable"),
    (["check", "good", "--out", "/proc/covsim-not-writable"], "not writable"),
    (["plot", "good", "--out", "/nonexistent/covsim"], "no saved results"),
    (["check", "good", "--shard", "2/2"], "--shard: shard I/K needs"),
    (["check", "good", "--shard", "x"], "--shard: shard must be I/K"),
    (["check", "good", "--shard", "0/2", "--fresh"], "would discard the other shards"),
    (["check", "good", "--devices", "999"], "--devices must be in 1.."),
])
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(registry, argv, needle, capsys):
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_exit_code_table_in_help(capsys):
    assert main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {code}" in out


def test_python_m_theory_checks_is_the_cli():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-m", "theory_checks", "nope"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == EXIT_USAGE and "unknown check" in res.stderr


def test_check_all_uses_out_as_parent_and_options(registry, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(registry_mod, "check_names", lambda: ["good", "bad"])
    code = main(["check", "all", "--out", str(tmp_path), "--full", "--seeds", "2", "--seed", "7", "--quiet"])
    assert code == 1
    for name in ("good", "bad"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert (config["size"], config["seeds"], config["base_seed"]) == ("full", 2, 7)
    out = capsys.readouterr().out
    assert out.index("good") < out.index("bad")
    # a changed configuration is a user's mistake (exit 2) unless --fresh
    assert main(["check", "good", "--out", str(tmp_path / "good"), "--quiet"]) == EXIT_USAGE
    assert main(["check", "good", "--out", str(tmp_path / "good"), "--quiet", "--fresh"]) == EXIT_HOLDS


def test_check_main_for_python_m(registry, tmp_path):
    assert check_main("good", ["--out", str(tmp_path), "--quiet"]) == 0


def test_shards_then_plain_run(registry, tmp_path, capsys):
    """A job array: each task runs its cells (exit 0, no analysis); a plain run analyses."""
    for task in ("0/2", "1/2"):
        assert main(["check", "good", "--out", str(tmp_path), "--quiet", "--shard", task]) == 0
        out = capsys.readouterr().out
        assert f"shard {task}" in out and "rerun without --shard" in out
        assert not (tmp_path / "summary.json").exists()
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2
    assert main(["check", "good", "--out", str(tmp_path), "--devices", "1"]) == 0
    assert capsys.readouterr().err.count("cached") == 2
    timing = json.loads((tmp_path / "summary.json").read_text())["timing"]
    assert timing["cells_run"] == 0 and timing["devices"] == 1


def test_compile_cache_default_location_and_switches(monkeypatch, tmp_path):
    from covsim import cli

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.delenv("COVSIM_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.compile_cache_dir() == tmp_path / "covsim" / "jax"
    monkeypatch.setenv("COVSIM_COMPILE_CACHE", str(tmp_path / "elsewhere"))
    assert cli.compile_cache_dir() == tmp_path / "elsewhere"
    args = cli._parser().parse_args(["check", "good"])
    try:
        cli._enable_compile_cache(args)  # COVSIM_NO_COMPILE_CACHE=1 (fixture): stays off
        assert jax.config.jax_compilation_cache_dir == before
        monkeypatch.delenv("COVSIM_NO_COMPILE_CACHE")
        cli._enable_compile_cache(cli._parser().parse_args(["check", "good", "--no-compile-cache"]))
        assert jax.config.jax_compilation_cache_dir == before
        cli._enable_compile_cache(args)
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "elsewhere")
        assert (tmp_path / "elsewhere").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_plan_prints_cells_seeds_and_estimate_without_running(registry, tmp_path, capsys):
    out = tmp_path / "good"
    assert main(["check", "good", "--full", "--plan", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    line = next(l for l in printed if l.startswith("good"))
    assert line.split()[1:5] == ["full", "2", "5", "10"] and "unknown" in line
    assert [l.strip() for l in printed if l.startswith("    ")] == ["i=0", "i=1"]  # the cells
    assert not out.exists()  # nothing written
    assert main(["check", "good", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["check", "good", "--full", "--plan", "--out", str(out)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("good"))
    assert "s serial, from 6 seed-runs" in line


def test_cli_turns_traced_value_checks_off_unless_asked(registry, monkeypatch, tmp_path):
    """Off by default in the CLI (cacheable programs), on with --runtime-checks or
    COVSIM_RUNTIME_CHECKS; config.json records which."""
    import covsim
    from covsim._validate import runtime_checks_enabled

    monkeypatch.delenv("COVSIM_RUNTIME_CHECKS")
    assert main(["check", "good", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert runtime_checks_enabled() is False
    assert json.loads((tmp_path / "a" / "config.json").read_text())["jax"]["runtime_checks"] is False
    assert main(["check", "good", "--out", str(tmp_path / "b"), "--quiet", "--runtime-checks"]) == 0
    assert runtime_checks_enabled() is True
    assert json.loads((tmp_path / "b" / "config.json").read_text())["jax"]["runtime_checks"] is True
    covsim.runtime_checks(False)
    monkeypatch.setenv("COVSIM_RUNTIME_CHECKS", "on")  # the environment's choice is kept
    assert main(["check", "good", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert runtime_checks_enabled() is True
    monkeypatch.setenv("COVSIM_RUNTIME_CHECKS", "maybe")
    assert main(["check", "good", "--out", str(tmp_path / "d"), "--quiet"]) == EXIT_USAGE


def test_a_nan_metric_is_a_crash_not_a_result(registry, tmp_path, capsys):
    def run_cell(cell, key, num_seeds):
        return {"v": jnp.full((num_seeds,), jnp.nan)}

    registry["good"] = Check(**{**registry["good"].__dict__, "run_cell": run_cell})
    assert main(["check", "good", "--out", str(tmp_path), "--quiet"]) == EXIT_CRASH
    assert "NaN is never a result" in capsys.readouterr().err
