"""Tests of the resumable runner and of ResultTable I/O, with a toy check."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from covsim.experiments import check as check_mod
from covsim.experiments.check import Analysis, Check, Control, Summary, Verdict
from covsim.experiments.results import ResultTable, atomic_write_json
from covsim.experiments.runner import (
    ConfigMismatchError,
    cell_id,
    cell_key,
    run_check,
    stable_int_hash,
)
from covsim.experiments.rules import Evidence, Observation, Rule
from covsim.experiments.stats import loglog_slope

XS = [1, 2, 4, 8]


def toy_check(calls=None, interrupt_at=None, slope=-1.0, with_plot=False):
    """metric y = x**slope * lognormal noise (vmapped over seeds); claim: slope in [-1.2, -0.8]."""

    def grid(size):
        return [{"x": x, "kind": "toy"} for x in (XS if size == "quick" else XS + [16])]

    def control_grid(size):
        return [dict(cell, kind="flat") for cell in grid(size)]

    def one_seed(key, x):
        return x**slope * jnp.exp(0.1 * jax.random.normal(key))

    def run_cell(cell, key, num_seeds):
        if calls is not None:
            calls.append(cell["x"])
            if interrupt_at is not None and len(calls) == interrupt_at:
                raise KeyboardInterrupt
        keys = jax.random.split(key, num_seeds)
        x = float(cell["x"]) if cell["kind"] == "toy" else 1.0
        y = jax.vmap(one_seed, in_axes=(0, None))(keys, x)
        return {"y": y, "inf_metric": jnp.full((num_seeds,), jnp.inf)}

    def analyze(table, size):
        x, _, _, per_seed = table.group_mean("x", "y")
        fit = loglog_slope(x, per_seed)
        return Analysis({"rate": Evidence.from_fit(fit, seeds=per_seed.shape[1])},
                        observations=[Observation("mean_y_at_x1", float(per_seed[0].mean()))],
                        details={"fit": fit.to_dict()})

    def plot(table, summary, out):
        from covsim.plotting import loglog_figure, series_from_table

        s = series_from_table(table, "x", "y", label="y", fit=summary.details["fit"])
        assert s.legend().startswith("y: slope -")
        return [loglog_figure(out / "y_vs_x.png", [s], xlabel="x", ylabel="y", title="toy",
                              bounds=[{"x": XS, "y": [1 / x for x in XS], "label": "1/x"}])]

    rules = [Rule("rate", "band", "log-log slope of mean y in x", (-1.2, -0.8),
                  regime="every x", theory="toy: y = 1/x")]
    return Check(name="toy", claim="y decays like 1/x", reference="none", grid=grid,
                 run_cell=run_cell, analyze=analyze, rules=rules,
                 control=Control("y does not depend on x", control_grid),
                 plot=plot if with_plot else None, seeds={"quick": 8, "full": 16})


def test_run_writes_all_files_and_verdict_holds(tmp_path):
    out = tmp_path / "toy"
    summary = run_check(toy_check(with_plot=True), out=out, progress=False)
    assert summary.verdict == Verdict.HOLDS
    for name in ("config.json", "metrics.csv", "summary.json", "y_vs_x.png"):
        assert (out / name).exists(), name
    assert len(list((out / "cells").glob("*.json"))) == len(XS)
    table = ResultTable.read_csv(out / "metrics.csv")
    assert len(table) == len(XS) * 8
    assert table.unique("seed") == list(range(8)) and table.unique("x") == XS
    assert np.all(np.isinf(table.column("inf_metric")))
    config = json.loads((out / "config.json").read_text())
    assert config["check"] == "toy" and config["seeds"] == 8 and config["size"] == "quick"
    assert config["cells"] == [{"x": x, "kind": "toy"} for x in XS]
    assert "jax" in config["versions"] and "jax_enable_x64" in config["jax"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["verdict"] == "holds" and saved["assertions"][0]["name"] == "rate"
    assert saved["figures"] == ["y_vs_x.png"]  # relative to the output folder
    assert saved["observations"][0]["name"] == "mean_y_at_x1"
    assert saved["assertions"][0]["details"]["rule"]["kind"] == "band"
    for name in ("summary.json", "metrics.csv", "config.json"):
        assert (out / name).stat().st_mode & 0o044 == 0o044, name  # readable by others
    cell = json.loads((out / "cells" / f"{cell_id({'x': 1, 'kind': 'toy'}, 8, 0)}.json").read_text())
    assert cell["metrics"]["inf_metric"] == ["inf"] * 8 and cell["elapsed_s"] >= 0


def test_wrong_rate_fails(tmp_path):
    summary = run_check(toy_check(slope=-0.5), out=tmp_path, progress=False)
    assert summary.verdict == Verdict.FAILS


def test_resume_skips_finished_cells(tmp_path, capsys):
    calls = []
    run_check(toy_check(calls), out=tmp_path, seeds=4)
    assert calls == XS
    first = (tmp_path / "metrics.csv").read_text()
    run_check(toy_check(calls), out=tmp_path, seeds=4)
    assert calls == XS  # nothing recomputed
    assert (tmp_path / "metrics.csv").read_text() == first
    err = capsys.readouterr().err
    assert "[1/4] toy x=1 kind=toy ... cached" in err and "[4/4]" in err


def test_interrupt_keeps_finished_cells_and_resume_matches_uninterrupted(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_check(toy_check(calls, interrupt_at=3), out=tmp_path / "a", seeds=4, progress=False)
    files = sorted((tmp_path / "a" / "cells").glob("*.json"))
    assert len(files) == 2
    for f in files:
        assert len(json.loads(f.read_text())["metrics"]["y"]) == 4
    assert not list((tmp_path / "a" / "cells").glob(".*"))  # no temp files left behind
    calls.clear()
    run_check(toy_check(calls), out=tmp_path / "a", seeds=4, progress=False)
    assert calls == XS[2:]
    run_check(toy_check(), out=tmp_path / "b", seeds=4, progress=False)
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()


def test_results_do_not_depend_on_cell_order(tmp_path):
    base = toy_check()
    reordered = Check(**{**base.__dict__, "grid": lambda size: base.grid(size)[::-1]})
    run_check(base, out=tmp_path / "a", seeds=3, progress=False)
    run_check(reordered, out=tmp_path / "b", seeds=3, progress=False)
    def rows(folder):
        table = ResultTable.read_csv(tmp_path / folder / "metrics.csv")
        return sorted(table.rows, key=lambda r: (r["x"], r["seed"]))

    rows_a, rows_b = rows("a"), rows("b")
    assert rows_a == rows_b
    assert len({r["y"] for r in rows_a}) == len(rows_a)  # seeds and cells differ


def test_changed_config_refused_unless_fresh(tmp_path):
    run_check(toy_check(), out=tmp_path, seeds=4, progress=False)
    with pytest.raises(ConfigMismatchError, match="seeds"):
        run_check(toy_check(), out=tmp_path, seeds=5, progress=False)
    with pytest.raises(ConfigMismatchError, match="base_seed"):
        run_check(toy_check(), out=tmp_path, seeds=4, base_seed=1, progress=False)
    with pytest.raises(ConfigMismatchError, match="size.*cells|cells"):
        run_check(toy_check(), out=tmp_path, seeds=4, size="full", progress=False)
    calls = []
    run_check(toy_check(calls), out=tmp_path, seeds=5, fresh=True, progress=False)
    assert calls == XS and len(list((tmp_path / "cells").glob("*.json"))) == len(XS)
    assert len(ResultTable.read_csv(tmp_path / "metrics.csv")) == len(XS) * 5


def test_bad_metric_shape_raises(tmp_path):
    bad = Check(name="bad", claim="", reference="", grid=lambda s: [{"x": 1}],
                run_cell=lambda c, k, n: {"y": np.zeros(n + 1)}, analyze=lambda t, s: Summary([]))
    with pytest.raises(ValueError, match="shape"):
        run_check(bad, out=tmp_path, seeds=2, progress=False)
    assert not list((tmp_path / "cells").glob("*.json"))


def test_plot_error_does_not_hide_verdict(tmp_path):
    def broken_plot(table, summary, out):
        raise RuntimeError("no figure")

    check = Check(**{**toy_check().__dict__, "plot": broken_plot})
    summary = run_check(check, out=tmp_path, seeds=3, progress=False)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["verdict"] == summary.verdict.value and "no figure" in saved["plot_error"]


def test_hashes_are_stable_and_keys_depend_on_cell():
    cell = {"H": 64, "n": 100, "law": "zipf", "s": 1.5}
    assert stable_int_hash(cell) == stable_int_hash(dict(reversed(list(cell.items()))))
    assert stable_int_hash(cell) != stable_int_hash({**cell, "n": 101})
    assert 0 <= stable_int_hash(cell) < 2**31
    assert cell_id(cell, 4, 0) != cell_id(cell, 5, 0) != cell_id(cell, 4, 1)
    assert np.array_equal(jax.random.key_data(cell_key(cell, 0)), jax.random.key_data(cell_key(dict(cell), 0)))
    assert not np.array_equal(jax.random.key_data(cell_key(cell, 0)), jax.random.key_data(cell_key(cell, 1)))


def test_result_table_csv_round_trip(tmp_path):
    rows = [
        {"law": "zipf", "n": 10, "seed": 0, "y": 0.1 + 0.2, "z": math.inf},
        {"law": "zipf", "n": 20, "seed": 0, "y": 1e-300, "z": -math.inf},
        {"law": "unif", "n": 10, "seed": 1, "y": math.nan, "z": 2.0},
    ]
    path = ResultTable.from_rows(rows).to_csv(tmp_path / "m.csv")
    back = ResultTable.read_csv(path)
    assert back.rows[0] == rows[0] and back.rows[1] == rows[1]
    assert math.isnan(back.rows[2]["y"]) and back.rows[2]["law"] == "unif"
    assert isinstance(back.rows[0]["n"], int) and back.rows[0]["y"] == 0.30000000000000004
    assert len(back.select(law="zipf")) == 2 and back.select(law="zipf", n=20).rows[0]["z"] == -math.inf
    assert back.unique("n") == [10, 20]
    assert list(tmp_path.iterdir()) == [path]


def test_group_mean_shapes_and_values():
    rows = [{"x": x, "other": o, "seed": s, "y": x * 10 + s} for x in (2, 1) for o in (0, 1) for s in range(3)]
    t = ResultTable(rows)
    with pytest.raises(ValueError, match="repeated seeds"):
        t.group_mean("x", "y")  # "other" not filtered: two rows per (x, seed)
    extra = ResultTable(rows + [{"x": 1, "other": 0, "seed": 9, "y": 0.0}])
    with pytest.raises(ValueError, match="unequal rows"):
        extra.group_mean("x", "y", other=0)
    x, mean, se, per = t.group_mean("x", "y", other=1)
    assert x.tolist() == [1, 2] and per.shape == (2, 3)
    assert mean.tolist() == [11.0, 21.0] and per[0].tolist() == [10.0, 11.0, 12.0]
    assert se == pytest.approx([1 / math.sqrt(3)] * 2)
    with pytest.raises(ValueError, match="no rows"):
        t.group_mean("x", "y", other=5)


def test_atomic_write_json_encodes_non_finite(tmp_path):
    p = atomic_write_json(tmp_path / "a.json", {"v": np.array([1.0, np.inf, -np.inf, np.nan])})
    assert json.loads(p.read_text())["v"] == [1.0, "inf", "-inf", "nan"]
    assert check_mod.from_jsonable(json.loads(p.read_text()))["v"][1] == math.inf


def test_control_run_writes_its_own_folder_and_fails(tmp_path):
    chk = toy_check()
    summary = run_check(chk, out=tmp_path / "toy" / "control", progress=False, control=True)
    assert summary.verdict == Verdict.FAILS
    saved = json.loads((tmp_path / "toy" / "control" / "summary.json").read_text())
    assert saved["control"] is True and saved["expected_verdict"] == "fails"
    config = json.loads((tmp_path / "toy" / "control" / "config.json").read_text())
    assert config["control"] is True and config["cells"][0]["kind"] == "flat"
