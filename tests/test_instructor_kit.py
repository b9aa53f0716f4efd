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


# Sets whose checkers take a second or two; the others (which run models) are marked slow.
FAST_SETS = {"01_tokens", "02_harmony", "08_mxfp4", "09_routing_kernels", "10_quantized_matmul"}
FAST_SETS |= {"12_real_checkpoints"}


@pytest.mark.parametrize(
    "solution",
    [pytest.param(p, marks=[] if p.stem in FAST_SETS else [pytest.mark.slow]) for p in SOLUTIONS],
    ids=lambda p: p.name,
)
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


@pytest.mark.slow  # a fresh Python imports torch: 5-30 s on a busy machine
def test_grade_command_writes_a_score_table(tmp_path):
    import json
    import subprocess

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import gptoss_edu as ge"),
        nbformat.v4.new_code_cell("def pair_counts(ids):\n    return {}"),  # wrong
        nbformat.v4.new_code_cell("ge.exercises.check_pair_counts(pair_counts)"),
        nbformat.v4.new_code_cell("def merge(ids, pair, new_id):\n    return ids"),  # wrong
        nbformat.v4.new_code_cell(
            "def decode(ids, vocab):\n    return b''.join(vocab[i] for i in ids).decode(errors='replace')"
        ),
        nbformat.v4.new_code_cell("ge.exercises.check_decode(decode)"),
    ]
    nbformat.write(nb, tmp_path / "alice.ipynb")
    out = tmp_path / "scores.json"
    cmd = [sys.executable, str(ROOT / "tools" / "exercises.py"), "grade", str(tmp_path)]
    proc = subprocess.run(cmd + ["--seed", "7", "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "alice.ipynb: 1/2" in proc.stdout and "seed 7" in proc.stdout, proc.stdout
    result = json.loads(out.read_text())
    rows = {r["exercise"]: r for r in result["notebooks"][0]["rows"]}
    assert result["seed"] == 7 and rows["check_decode"]["score"] == 1
    assert rows["check_pair_counts"]["score"] == 0 and rows["check_pair_counts"]["hidden"] is False


# ---- the kit: slides, syllabus, student copies in one folder ---------------------------------------


def test_every_slide_section_exists_in_its_chapter():
    import yaml

    config = yaml.safe_load((ROOT / "instructors" / "slides.yml").read_text())
    chapters = sorted(p.stem for p in (ROOT / "book").glob("[0-9]*_*.ipynb"))
    assert set(chapters) <= set(config["chapters"]), "every chapter gets slides"
    for name, selection in config["chapters"].items():
        if name not in chapters:
            continue  # a planned chapter: its slides are built once it exists
        deck = tool.slide_deck(ROOT / "book" / f"{name}.ipynb", selection)
        full = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
        assert 3 <= len(deck.cells) < len(full.cells), f"{name}: a selection, not every cell"


def test_a_missing_section_is_named():
    with pytest.raises(tool.ConventionError, match="no section '## Not a heading'"):
        tool.slide_deck(ROOT / "book" / "09_routing_kernels.ipynb", ["Not a heading"])


def test_kit_builds_offline_with_the_selected_slides(tmp_path, monkeypatch):
    import socket
    import zipfile

    def no_network(*args, **kwargs):
        raise OSError("the kit must build without network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    out = tool.build_kit(tmp_path / "kit", chapters=["9"])
    html = (out / "slides" / "09_routing_kernels.slides.html").read_text()
    assert "reveal" in html.lower()
    for selected in ("The whole router, vectorised", "A picture of the permutation"):
        assert f">{selected}<" in html.replace("\n", ""), selected
    for unselected in ("The kernel on a CPU: numba", "Further reading", "Set-up. In Colab"):
        assert unselected not in html, unselected
    assert not (out / "slides" / "01_tokens.slides.html").exists()  # only the chapters asked
    names = zipfile.ZipFile(out / "student_exercises.zip").namelist()
    assert "exercises/09_routing_kernels.ipynb" in names
    student = (out / "student" / "09_routing_kernels.ipynb").read_text()
    assert "### BEGIN SOLUTION" not in student and "NotImplementedError" in student
    assert (out / "solutions" / "09_routing_kernels.ipynb").exists()
    assert (out / "autograder" / "exercises.py").exists() and (out / "syllabus.md").exists()
    assert "slides/09_routing_kernels.slides.html" in (out / "README.md").read_text()
    source = nbformat.read(out / "nbgrader" / "source" / "ex09" / "09_routing_kernels.ipynb", 4)
    meta = [c.metadata["nbgrader"] for c in source.cells]
    assert sum(m["solution"] for m in meta) == sum(m["grade"] for m in meta) == 8
    tests = [c.source for c in source.cells if c.metadata["nbgrader"]["grade"]]
    assert all("### BEGIN HIDDEN TESTS" in t and ", seed=" in t for t in tests), tests[0]


def test_syllabus_covers_every_chapter_and_twelve_weeks():
    text = (ROOT / "instructors" / "syllabus.md").read_text()
    hours, plan = text.split("## Hours per chapter")[1].split("## A 12-week plan")
    cells = [
        [c.strip() for c in ln.split("|")[1:-1]] for ln in hours.splitlines() if ln.startswith("| ")
    ]
    chapters = {int(c[0]): c for c in cells if c[0].isdigit()}
    assert sorted(chapters) == list(range(18))
    for n, row in chapters.items():
        assert row[2].endswith(" h"), row  # class hours
        written = any((ROOT / "book").glob(f"{n:02d}_*.ipynb"))
        assert ("Planned" in row[1]) == (not written), row  # planned exactly when not written
    weeks = [ln.split("|")[1].strip() for ln in plan.splitlines() if ln.startswith("| ")]
    assert [w for w in weeks if w.isdigit()] == [str(w) for w in range(1, 13)]
    assert "## Prerequisites" in text
