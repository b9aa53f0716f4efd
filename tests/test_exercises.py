"""Every exercise solution passes its checker; every starter fails it with a helpful line
(not a traceback). Notebooks are run in-process, cell by cell, in an IPython shell (so cell
magics work), with their output captured and a temporary folder as working directory."""

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTERS = sorted((ROOT / "exercises").glob("*.ipynb"))
CHECK_CALL = re.compile(r"ge\.exercises\.(check_\w+)\(")


def run_notebook(path: Path, tmp_dir: Path) -> tuple[str, list[str]]:
    """Run the code cells in an in-process IPython shell (magics such as %%my_gptoss work), in a
    fresh namespace, with `tmp_dir` as the working directory; return (printed text, checkers)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.reset(new_session=False)
    nb = json.loads(path.read_text())
    out = io.StringIO()
    checks = []
    cwd = os.getcwd()
    os.chdir(tmp_dir)
    try:
        with contextlib.redirect_stdout(out):
            for i, cell in enumerate(nb["cells"]):
                if cell["cell_type"] != "code":
                    continue
                src = "".join(cell["source"])
                src = "\n".join(ln for ln in src.split("\n") if not ln.lstrip().startswith("!"))
                checks += CHECK_CALL.findall(src)
                result = shell.run_cell(src, store_history=False, silent=False)
                if not result.success:  # an escaping exception fails the test
                    error = result.error_in_exec or result.error_before_exec
                    raise AssertionError(
                        f"{path.name}, cell {i} raised {error!r}:\n{out.getvalue()[-3000:]}"
                    )
    finally:
        os.chdir(cwd)
    return out.getvalue(), checks


def test_every_starter_has_a_solution():
    assert STARTERS, "no exercise notebooks yet"
    for s in STARTERS:
        assert (ROOT / "exercises" / "solutions" / s.name).exists(), f"{s.name} has no solution"


@pytest.mark.parametrize("path", STARTERS, ids=lambda p: p.name)
def test_solution_passes_and_starter_fails_helpfully(path, tmp_path):
    (tmp_path / "solution").mkdir()
    (tmp_path / "starter").mkdir()
    text, checks = run_notebook(ROOT / "exercises" / "solutions" / path.name, tmp_path / "solution")
    assert checks, f"{path.name}: the solution calls no checker"
    for name in checks:
        assert f"✅ {name}: passed" in text, f"solution of {name} did not pass:\n{text}"
    assert "❌" not in text and "⏳" not in text, text

    text, checks = run_notebook(path, tmp_path / "starter")
    assert checks, f"{path.name}: the starter calls no checker"
    for name in checks:
        lines = [ln for ln in text.splitlines() if f" {name}: " in ln]
        assert lines, f"starter: {name} printed nothing"
        assert all(ln.startswith(("⏳", "❌")) for ln in lines), lines
    assert "Traceback" not in text
