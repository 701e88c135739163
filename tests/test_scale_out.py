"""Scale-out: seeds over several devices, job-array shards, compile timing, progress bar.

Several devices are simulated on the CPU with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` in a subprocess (the flag must be
set before JAX starts); the metrics must not depend on the device count.
"""

import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from covsim.experiments import sharding
from covsim.experiments.check import Analysis, Check
from covsim.experiments.results import ResultTable
from covsim.experiments.rules import Evidence, Rule
from covsim.experiments.runner import parse_shard, run_check, shard_cells

ROOT = pathlib.Path(__file__).resolve().parents[1]

TOY_DEF = '''
import json, sys
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from covsim.experiments.check import Analysis, Check
from covsim.experiments.rules import Evidence, Rule
from covsim.experiments.runner import run_check
from covsim.experiments.sharding import seed_map, shard_seeds

def one(k, x):
    z = jax.random.normal(k, (64,))
    return jnp.sum(jnp.sin(x * z) ** 2) / x

@jax.jit
def by_constraint(key, x):
    keys = shard_seeds(jax.random.split(key, 6))   # 6 seeds: uneven over 4 devices
    return jax.vmap(one, in_axes=(0, None))(keys, x)

def run_cell(cell, key, num_seeds):
    return {"a": by_constraint(key, float(cell["x"])),
            "b": seed_map(one, key, num_seeds, float(cell["x"]))}

check = Check(name="toy", claim="c", reference="r", grid=lambda s: [{"x": x} for x in (1, 2, 3)],
              run_cell=run_cell, seeds={"quick": 6, "full": 6},
              analyze=lambda t, s: Analysis({"r": Evidence.count(0, len(t), seeds=8)}),
              rules=[Rule("r", "zero_violations", "none", None, regime="all", theory="toy")])
'''
TOY = TOY_DEF + '''
out = sys.argv[1]
run_check(check, out=out + "/toy", progress=False)
run_check(check, out=out + "/toy2", progress=False, devices=min(2, jax.device_count()))
'''

# a real check that marks its seeds with shard_seeds: one fine cell (the cheapest to compile)
TIGHTNESS = '''
from theory_checks.tightness import CHECK
cells = CHECK.grid("tiny")
picked = [next(c for c in cells if c["kind"] == "fine")]
small = Check(**{**CHECK.__dict__, "grid": lambda size: picked, "plot": None})
run_check(small, size="tiny", seeds=10, out=out + "/tightness", progress=False)  # 10 % 4 != 0
'''


def _run(script: str, *args: str, devices: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _assert_same_metrics(a: pathlib.Path, b: pathlib.Path, rtol: float = 1e-12) -> None:
    ta, tb = ResultTable.read_csv(a / "metrics.csv"), ResultTable.read_csv(b / "metrics.csv")
    assert len(ta) == len(tb) > 0
    for ra, rb in zip(ta.rows, tb.rows):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                np.testing.assert_allclose(rb[k], ra[k], rtol=rtol, atol=0, err_msg=k)
            else:
                assert ra[k] == rb[k], k


def test_metrics_do_not_depend_on_device_count(tmp_path):
    """Toy (shard_seeds inside jit, seed_map) and tightness: 1 device vs 4 (and 2 of 4)."""
    one, four = tmp_path / "one", tmp_path / "four"
    _run(TOY + TIGHTNESS, str(one), devices=1)
    _run(TOY + TIGHTNESS, str(four), devices=4)
    for name in ("toy", "tightness"):
        _assert_same_metrics(one / name, four / name)
    _assert_same_metrics(one / "toy", four / "toy2")
    table = ResultTable.read_csv(one / "toy" / "metrics.csv")
    np.testing.assert_allclose(table.column("a"), table.column("b"), rtol=1e-12)  # same seeds
    counts = {(d.name, f): json.loads((d / f / "config.json").read_text())["jax"]["device_count"]
              for d in (one, four) for f in ("toy", "toy2", "tightness")}
    assert counts == {("one", "toy"): 1, ("one", "toy2"): 1, ("one", "tightness"): 1,
                      ("four", "toy"): 4, ("four", "toy2"): 2, ("four", "tightness"): 4}
    assert json.loads((four / "toy" / "summary.json").read_text())["timing"]["devices"] == 4


# more real checks that opt in: the first tiny cell of each, 10 seeds (uneven over 4 devices)
OTHER_CHECKS = ("horizon", "convex_class", "missing_mass")
OTHERS = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
from covsim.experiments import registry
from covsim.experiments.check import Check
from covsim.experiments.runner import run_check
out = sys.argv[1]
for name in %r:
    chk = registry.load(name)
    first = chk.grid("tiny")[:1]
    small = Check(**{**chk.__dict__, "grid": lambda size, first=first: first, "plot": None})
    run_check(small, size="tiny", seeds=10, out=out + "/" + name, progress=False)
""" % (OTHER_CHECKS,)


def test_real_checks_do_not_depend_on_device_count(tmp_path):
    """horizon, convex_class, missing_mass: one cell each, 1 device vs 4 simulated ones."""
    one, four = tmp_path / "one", tmp_path / "four"
    _run(OTHERS, str(one), devices=1)
    _run(OTHERS, str(four), devices=4)
    for name in OTHER_CHECKS:
        _assert_same_metrics(one / name, four / name)
        assert json.loads((four / name / "config.json").read_text())["jax"]["device_count"] == 4


def test_every_seed_split_in_the_checks_is_marked():
    """Every `jax.random.split(key, num_seeds)` in theory_checks/ lays its seeds out over the
    devices (shard_seeds), so no check silently runs on one device of several."""
    # misspecification runs its seeds in sequential batches of 16 (lax.map, to bound memory
    # at n_max): one device by design
    sequential = {"misspecification.py"}
    unmarked = []
    for path in sorted((ROOT / "theory_checks").glob("*.py")):
        if path.name in sequential:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "jax.random.split(key, num_seeds)" in line and "shard_seeds(" not in line:
                unmarked.append(f"{path.name}:{i}")
    assert not unmarked, unmarked


# the CLI with --coordinator: the toy registered in place of the real registry
TOY_CLI = TOY_DEF + '''
from covsim.experiments import registry
from covsim.cli import main
registry.check_names = lambda: ["toy"]
registry.load = lambda name: check
out, port, pid = sys.argv[1:4]
hosts = [] if port == "none" else ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                   "--process-id", pid]
raise SystemExit(main(["check", "toy", "--out", out, "--quiet", "--no-compile-cache", *hosts]))
'''


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_match_one(tmp_path):
    """jax.distributed over 2 CPU processes (gloo): seeds over both, process 0 writes."""
    port = str(_free_port())
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", textwrap.dedent(TOY_CLI), str(tmp_path / "two")]
    workers = [subprocess.Popen(cmd + [port, str(i)], env=env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (1, 0)]
    try:
        outs = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outs[1][1][-3000:] + outs[0][1][-3000:]
    assert "holds" in outs[1][0] and "holds" not in outs[0][0]  # process 0 prints the table
    _run(TOY_CLI, str(tmp_path / "one"), "none", "0", devices=1)
    assert ((tmp_path / "one" / "metrics.csv").read_text()
            == (tmp_path / "two" / "metrics.csv").read_text())
    jax_info = json.loads((tmp_path / "two" / "config.json").read_text())["jax"]
    assert (jax_info["process_count"], jax_info["device_count"]) == (2, 2)


def test_shard_seeds_is_identity_on_one_device():
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    assert sharding.shard_seeds(keys) is keys
    with sharding.seed_devices(1) as mesh:
        assert mesh is None and sharding.shard_seeds(keys) is keys
    with pytest.raises(ValueError, match="devices"):
        sharding.select_devices(jax.local_device_count() + 1)
    out = sharding.seed_map(lambda k, s: s * jax.random.uniform(k), jax.random.PRNGKey(1), 5, 2.0)
    ref = jax.vmap(lambda k: 2.0 * jax.random.uniform(k))(jax.random.split(jax.random.PRNGKey(1), 5))
    np.testing.assert_array_equal(out, ref)


# -- job arrays -----------------------------------------------------------------------
def toy(calls):
    def run_cell(cell, key, num_seeds):
        calls.append(cell["i"])
        return {"v": jax.random.uniform(key, (num_seeds,))}

    return Check(name="toy", claim="c", reference="r",
                 grid=lambda size: [{"i": i} for i in range(5)], run_cell=run_cell,
                 analyze=lambda t, s: Analysis({"r": Evidence.count(0, len(t), seeds=8)}),
                 rules=[Rule("r", "zero_violations", "none", None, regime="all", theory="toy")],
                 seeds={"quick": 3, "full": 3})


def test_parse_shard_and_cells():
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1", "0/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    assert shard_cells(5, (0, 2)) == [0, 2, 4] and shard_cells(5, (1, 2)) == [1, 3]
    assert shard_cells(3, None) == [0, 1, 2] and shard_cells(2, (2, 4)) == []


def test_two_shards_then_plain_run_equal_single_run(tmp_path):
    calls = []
    shared = tmp_path / "shared"
    assert run_check(toy(calls), out=shared, shard=(0, 2), progress=False) is None
    assert calls == [0, 2, 4] and not (shared / "metrics.csv").exists()
    assert run_check(toy(calls), out=shared, shard="1/2", progress=False) is None
    assert calls == [0, 2, 4, 1, 3]
    summary = run_check(toy(calls), out=shared, progress=False)
    assert calls == [0, 2, 4, 1, 3] and summary.verdict.value == "holds"  # all cached
    timing = json.loads((shared / "summary.json").read_text())["timing"]
    assert timing["cells_cached"] == 5 and timing["cells_run"] == 0
    run_check(toy([]), out=tmp_path / "single", progress=False)
    assert (shared / "metrics.csv").read_text() == (tmp_path / "single" / "metrics.csv").read_text()
    with pytest.raises(ValueError, match="fresh"):
        run_check(toy([]), out=shared, shard=(0, 2), fresh=True, progress=False)


# -- timing and progress --------------------------------------------------------------
def test_summary_reports_compile_seconds(tmp_path):
    run_check(toy([]), out=tmp_path, progress=False)
    timing = json.loads((tmp_path / "summary.json").read_text())["timing"]
    for key in ("trace_s", "lower_s", "backend_compile_s", "cache_retrieval_s", "compile_s",
                "compile_share"):
        assert timing[key] >= 0.0, key
    assert timing["compile_s"] == pytest.approx(
        timing["trace_s"] + timing["lower_s"] + timing["backend_compile_s"]
        + timing["cache_retrieval_s"])


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_lines_otherwise(tmp_path, monkeypatch, capsys):
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    run_check(toy([]), out=tmp_path / "a", progress=True)
    text = tty.getvalue()
    assert "toy" in text and "5/5" in text and "[1/5]" not in text  # one bar, no lines
    monkeypatch.undo()
    run_check(toy([]), out=tmp_path / "b", progress=True)
    err = capsys.readouterr().err
    assert "[1/5] toy i=0 ..." in err and "[5/5]" in err
    run_check(toy([]), out=tmp_path / "c", progress=False)
    assert capsys.readouterr().err == ""
