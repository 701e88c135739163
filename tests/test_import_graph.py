"""The layering rules, read from the source: covsim never imports theory_checks, no check
imports another check, and hypothesis is imported only by covsim.testing."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path) -> set[str]:
    """Absolute module names imported anywhere in `path` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return names


def test_covsim_never_imports_theory_checks():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p)
                                                   if m.split(".")[0] == "theory_checks")
                 for p in (ROOT / "covsim").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_check_imports_another_check():
    checks = {p.stem for p in (ROOT / "theory_checks").glob("*.py") if not p.stem.startswith("_")}
    assert len(checks) >= 16
    bad = {}
    for p in (ROOT / "theory_checks").glob("*.py"):
        mods = imported_modules(p)
        hits = sorted(m for m in mods if m.split(".")[0] == "theory_checks"
                      and len(m.split(".")) > 1 and m.split(".")[1] in checks)
        if hits:
            bad[p.name] = hits
    assert bad == {}


def test_hypothesis_only_in_covsim_testing():
    users = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "covsim").rglob("*.py")
                   if any(m.split(".")[0] == "hypothesis" for m in imported_modules(p)))
    assert set(users) <= {"covsim/testing.py"}


def test_import_covsim_loads_neither_checks_nor_hypothesis_nor_matplotlib():
    code = ("import sys, covsim, covsim.experiments, covsim.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('theory_checks', 'hypothesis', 'matplotlib')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
