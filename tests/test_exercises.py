"""Every exercise solution passes its checker; every starter fails it with a helpful line
(not a traceback). Notebooks are run in-process, cell by cell, with their output captured."""

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTERS = sorted((ROOT / "exercises").glob("*.ipynb"))
CHECK_CALL = re.compile(r"ge\.exercises\.(check_\w+)\(")


def run_notebook(path: Path) -> tuple[str, list[str]]:
    nb = json.loads(path.read_text())
    ns: dict = {"__name__": "__exercise__"}
    out = io.StringIO()
    checks = []
    with contextlib.redirect_stdout(out):
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            src = "\n".join(ln for ln in src.split("\n") if not ln.lstrip().startswith(("%", "!")))
            checks += CHECK_CALL.findall(src)
            exec(compile(src, f"{path.name}", "exec"), ns)  # an escaping exception fails the test
    return out.getvalue(), checks


def test_every_starter_has_a_solution():
    assert STARTERS, "no exercise notebooks yet"
    for s in STARTERS:
        assert (ROOT / "exercises" / "solutions" / s.name).exists(), f"{s.name} has no solution"


@pytest.mark.parametrize("path", STARTERS, ids=lambda p: p.name)
def test_solution_passes_and_starter_fails_helpfully(path):
    text, checks = run_notebook(ROOT / "exercises" / "solutions" / path.name)
    assert checks, f"{path.name}: the solution calls no checker"
    for name in checks:
        assert f"✅ {name}: passed" in text, f"solution of {name} did not pass:\n{text}"
    assert "❌" not in text and "⏳" not in text, text

    text, checks = run_notebook(path)
    assert checks, f"{path.name}: the starter calls no checker"
    for name in checks:
        lines = [ln for ln in text.splitlines() if f" {name}: " in ln]
        assert lines, f"starter: {name} printed nothing"
        assert all(ln.startswith(("⏳", "❌")) for ln in lines), lines
    assert "Traceback" not in text
