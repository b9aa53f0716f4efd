"""The instructor kit (tools/exercises.py): student copies generated from the solutions are the
committed ones, the generator follows the convention, and (below) the autograder and the kit."""

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location("exercises_tool", ROOT / "tools" / "exercises.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["exercises_tool"] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
SOLUTIONS = sorted((ROOT / "exercises" / "solutions").glob("[0-9]*_*.ipynb"))


def test_strip_code_replaces_the_block_and_keeps_hints_and_indentation():
    src = "def f(x):\n    # HINT: think of y\n    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION\n"
    out, n = tool.strip_code(src, "t", lambda fn: f"exercise 1.2: write the body of {fn}()")
    assert n == 1
    assert out == (
        "def f(x):\n    # HINT: think of y\n"
        '    raise NotImplementedError("exercise 1.2: write the body of f()")\n'
    )


@pytest.mark.parametrize(
    "src, error",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "without a matching"),
        ("x = 1\n### END SOLUTION\n", "without ### BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
        ("### BEGIN SOLUTIONS\nx=1\n### END SOLUTION\n", "not a marker"),
    ],
)
def test_strip_code_names_broken_markers(src, error):
    with pytest.raises(tool.ConventionError, match=error):
        tool.strip_code(src, "nb.ipynb, cell 3", lambda fn: "x")


def test_markdown_lines_for_one_side_only():
    src = "# Exercises 9. Routing (solutions)\n\nA solution line <!-- solution only -->\n<!-- student: Stuck? See solutions/. -->"
    assert (
        tool.strip_markdown(src, first=True) == "# Exercises 9. Routing\n\nStuck? See solutions/."
    )


def test_student_copy_of_a_small_notebook(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercises 7. Toy (solutions)"),
        nbformat.v4.new_markdown_cell("## Exercise 4: double"),
        nbformat.v4.new_code_cell(
            "def double(x):\n    # HINT: add it to itself\n    ### BEGIN SOLUTION\n    return x + x\n    ### END SOLUTION"
        ),
        nbformat.v4.new_code_cell("### SOLUTION CELL\nprint(double(2))"),
    ]
    monkeypatch.setattr(tool, "EXERCISES", tmp_path)
    monkeypatch.setattr(tool, "ROOT", tmp_path.parent)
    path = tmp_path / "solutions" / "07_toy.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    out = tool.student_copy(path)
    sources = [c.source for c in out.cells]
    assert sources[0].startswith("# Exercises 7. Toy\n")  # title, then the badges
    assert "(solutions)" not in sources[0]
    assert "setup" in out.cells[1].metadata.get("tags", [])  # the generated set-up cell
    assert sources[3] == (
        'def double(x):\n    # HINT: add it to itself\n    raise NotImplementedError("exercise 7.4: '
        'write the body of double()")'
    )
    assert len(out.cells) == 4  # the solution-only cell is gone


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_starter_is_generated_from_its_solution(solution):
    nb = nbformat.read(solution, as_version=4)
    if not tool.has_solution_blocks(nb):
        pytest.skip(f"{solution.name}: not converted to the single-source convention yet")
    assert tool.check([solution]) == []
    text = (ROOT / "exercises" / solution.name).read_text()
    assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text
