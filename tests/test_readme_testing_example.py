"""The README's "Testing your own bounds" example, run verbatim (README and test cannot drift)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = "<!-- covsim-testing-example -->"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, "the README must mark exactly one example block"
    match = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert match, "the marker must be followed by a ```python fenced block"
    return match.group(1)


def test_readme_example_runs():
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), "README.md:covsim-testing-example", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert tests, "the README example defines no test function"
    for test in tests:
        test()
