"""Every notebook source runs top to bottom at tiny sizes (CI=true)."""

import os
import pathlib
import subprocess
import sys

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
    env = dict(os.environ, CI="true", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3
