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


# ---- the autograder: checkers called directly on functions taken from the notebooks --------------

STARTERS = [ROOT / "exercises" / p.name for p in SOLUTIONS]


def _score(nb, seed):
    rows = tool.grade_notebook(nb, seed)
    return rows, sum(r["score"] for r in rows)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_autograder_full_marks_for_the_solution_zero_for_the_starter(solution):
    seed = 20261129
    rows, score = _score(nbformat.read(solution, as_version=4), seed)
    assert rows and score == len(rows), [r for r in rows if not r["score"]]
    rows, score = _score(nbformat.read(ROOT / "exercises" / solution.name, as_version=4), seed)
    assert rows and score == 0, [r for r in rows if r["score"]]
    assert all("not done yet" in r["message"] for r in rows), rows


def _replace_answer(nb, function: str, body: str):
    """The notebook with `function`'s solution block replaced by `body` (a student's attempt)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and f"def {function}(" in cell.source:
            head = cell.source.split("    ### BEGIN SOLUTION")[0]
            tail = cell.source.split("    ### END SOLUTION")[1]
            cell.source = head + body + tail
            return nb
    raise AssertionError(f"no {function} in the notebook")


def test_a_classic_mistake_scores_partial_marks():
    nb = nbformat.read(ROOT / "exercises" / "solutions" / "09_routing_kernels.ipynb", as_version=4)
    inclusive = "    return torch.cumsum(counts, 0)\n"  # the inclusive sum: no leading 0
    rows, score = _score(_replace_answer(nb, "exclusive_prefix_sum", inclusive), seed=5)
    failed = {r["exercise"] for r in rows if not r["score"]}
    assert failed == {"check_exclusive_prefix_sum", "check_route"}, rows  # route builds on it
    assert 0 < score < len(rows)
    msg = next(r["message"] for r in rows if r["exercise"] == "check_exclusive_prefix_sum")
    assert "inclusive prefix sum" in msg


def test_an_answer_that_memorised_the_visible_cases_fails_the_hidden_ones():
    nb = nbformat.read(ROOT / "exercises" / "solutions" / "09_routing_kernels.ipynb", as_version=4)
    table = (
        "    table = {(3,): [0, 3], (2, 0, 3, 1): [0, 2, 2, 5, 6],\n"
        "             (0, 0, 5, 1, 0, 7, 2, 0): [0, 0, 0, 5, 6, 6, 13, 15, 15]}\n"
        "    return torch.tensor(table[tuple(counts.tolist())])\n"
    )
    rows, _ = _score(_replace_answer(nb, "exclusive_prefix_sum", table), seed=11)
    row = next(r for r in rows if r["exercise"] == "check_exclusive_prefix_sum")
    assert row["visible"] is True and row["hidden"] is False and row["score"] == 0, row


def test_hidden_cases_change_with_the_seed():
    import gptoss_edu.exercises as ex

    seen = []
    for seed in (None, 1, 2):
        calls = []
        ex.check_exclusive_prefix_sum(
            lambda c, calls=calls: calls.append(c.tolist()) or 1 / 0, seed=seed
        )
        seen.append(calls[0])
    assert seen[0] == [3] and seen[1] != seen[2] and [3] not in seen[1:]


def test_grade_command_writes_a_score_table(tmp_path):
    import json
    import shutil
    import subprocess

    shutil.copy(ROOT / "exercises" / "solutions" / "10_quantized_matmul.ipynb", tmp_path)
    out = tmp_path / "scores.json"
    cmd = [sys.executable, str(ROOT / "tools" / "exercises.py"), "grade", str(tmp_path)]
    proc = subprocess.run(cmd + ["--seed", "7", "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "10_quantized_matmul.ipynb: 5/5" in proc.stdout and "seed 7" in proc.stdout
    result = json.loads(out.read_text())
    assert result["seed"] == 7 and len(result["notebooks"][0]["rows"]) == 5
