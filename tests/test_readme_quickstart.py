"""The README's quickstart runs as written (so README and code cannot drift apart)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Quickstart"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(code, "README.md quickstart", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("True False")  # converged, not held by the constraint
