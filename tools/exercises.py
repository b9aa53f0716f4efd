"""The exercises' instructor kit: student copies generated from the solutions, a check that the
committed copies are current, an autograder with hidden cases, and the whole kit in one folder.

    python tools/exercises.py starters [NN ...]            # exercises/solutions/NN_*.ipynb -> exercises/NN_*.ipynb, executed
    python tools/exercises.py check                        # fail if a starter is not what `starters` would write
    python tools/exercises.py grade PATH [--seed S] [--json out.json]   # score a student notebook (or a folder of them)
    python tools/exercises.py kit --out build/instructors  # student copies, autograder, syllabus, slides
        [--chapters 1 9]              # slides for these chapters only (default: all in instructors/slides.yml)
        [--reveal-prefix reveal.js]   # where the slides load reveal.js from when shown (default: unpkg)

The convention (every exercise notebook follows it)
---------------------------------------------------
The solution notebook `exercises/solutions/NN_topic.ipynb` is the single source; the student copy
`exercises/NN_topic.ipynb` is generated from it and never edited by hand.

- In a solution code cell the answer sits between a line `### BEGIN SOLUTION` and a line
  `### END SOLUTION` (nbgrader's markers). The student copy replaces the block, kept at the
  indentation of the `### BEGIN SOLUTION` line, by
  `raise NotImplementedError("exercise N.M: write the body of f()")`, where N is the notebook's
  number, M the number of the exercise's heading (`## Exercise 3: ...` or `## 3. ...`; else the
  block's rank in the notebook) and f the function the block sits in.
- `# HINT: ...` comment lines above `### BEGIN SOLUTION` stay in the student copy. A hint teaches
  (what to look at, which property to keep) without giving the answer.
- A cell used only by the solution (a demo of the answer, an extra check) carries the line
  `### SOLUTION CELL` (code) or `<!-- SOLUTION CELL -->` (markdown), or the cell tag
  `solution_only`: it is left out of the student copy.
- In markdown cells, a line ending with `<!-- solution only -->` is dropped from the student copy,
  and a line `<!-- student: TEXT -->` becomes `TEXT` there (and shows nothing in the solution).
  Relative links in the solution's markdown are written from exercises/solutions/ (so they work
  in the solution) and rebased for the student copy one folder up (`../../book/x` -> `../book/x`);
  links inside a `<!-- student: ... -->` line are written from exercises/ as they stand.
  The title's " (solutions)" is dropped. The badges point at each notebook's own path.
- The student copy is executed (`starters`) and committed executed: every checker cell then prints
  a "⏳ not done yet" line, and no cell may raise (call the student's functions only inside
  checkers, or the starter would stop with a traceback).

`check` compares sources only (cell types and text), so it is cheap enough for a test.

The autograder (`grade`) runs each code cell of a student's notebook in a fresh process (with a
time limit), finds the checker calls `ge.exercises.check_NAME(fn)`, and calls each checker again on
the student's function with `seed=S`: the checkers then draw cases the notebook never shows (new
sizes, new random inputs). Each exercise scores 1 when the visible and the hidden cases pass.
Only imports, function/class definitions and assignments of the student's cells run (demos and
prints do not), so grading a set takes seconds; `--timeout` bounds each notebook. A checker with
hidden cases takes `seed=` (see gptoss_edu/exercises/_common.py, `Checker` and `cases`); one
without them is graded on its visible cases and the table says "hidden n/a".

The kit (`kit`) builds offline: the slides are nbconvert's reveal.js export of the sections that
instructors/slides.yml selects from each chapter (stored outputs, nothing executed), and the HTML
only names the URL of reveal.js, which the browser that shows the slides loads.

Needs nbformat, nbclient (starters), nbconvert and pyyaml (kit): the `[dev]`/`[test]` extras.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import io
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from notebooks import execute, refresh_frame  # noqa: E402

EXERCISES = ROOT / "exercises"
SOLUTIONS = EXERCISES / "solutions"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_CELL_CODE, SOLUTION_CELL_MD, SOLUTION_TAG = (
    "### SOLUTION CELL",
    "<!-- SOLUTION CELL -->",
    "solution_only",
)
SOLUTION_ONLY_LINE = "<!-- solution only -->"
STUDENT_LINE = re.compile(r"^\s*<!-- student: (.*) -->\s*$")
HEADING_NUMBER = re.compile(r"^#{1,4}\s+(?:Exercise\s+)?(\d+)\b", re.IGNORECASE | re.MULTILINE)
DEF_LINE = re.compile(r"^\s*def\s+(\w+)\s*\(")
CHECK_CALL = re.compile(r"ge\.exercises\.(check_\w+)\(([^()]*)\)")


class ConventionError(ValueError):
    """A solution notebook that does not follow the convention above."""


def notebook_number(path: Path) -> int:
    m = re.match(r"(\d+)_", path.name)
    if not m:
        raise ConventionError(f"{path}: an exercise notebook is named NN_topic.ipynb")
    return int(m.group(1))


def solution_paths(numbers: list[str] | None = None) -> list[Path]:
    """The solution notebooks, all of them or those whose NN is in `numbers` ("9", "09", ...)."""
    paths = sorted(SOLUTIONS.glob("[0-9]*_*.ipynb"))
    if numbers:
        wanted = {int(n) for n in numbers}
        missing = wanted - {notebook_number(p) for p in paths}
        if missing:
            raise SystemExit(
                f"no solution notebook exercises/solutions/NN_*.ipynb for NN = {sorted(missing)}; "
                f"found {[p.name for p in paths]}"
            )
        paths = [p for p in paths if notebook_number(p) in wanted]
    return paths


def is_solution_cell(cell) -> bool:
    if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
        return True
    marker = SOLUTION_CELL_CODE if cell.cell_type == "code" else SOLUTION_CELL_MD
    return any(line.strip() == marker for line in cell.source.split("\n"))


def has_solution_blocks(nb) -> bool:
    return any(
        c.cell_type == "code" and any(ln.strip() == BEGIN for ln in c.source.split("\n"))
        for c in nb.cells
    )


def strip_code(source: str, where: str, label) -> tuple[str, int]:
    """Replace every BEGIN/END SOLUTION block of `source` by a raise; return (source, n blocks).

    `label(function_name)` gives the "exercise N.M: ..." message of the next block."""
    out: list[str] = []
    inside = False
    n = 0
    function = None
    for i, line in enumerate(source.split("\n")):
        stripped = line.strip()
        m = DEF_LINE.match(line)
        if m and not inside:
            function = m.group(1)
        if stripped == BEGIN:
            if inside:
                raise ConventionError(f"{where}, line {i + 1}: {BEGIN} inside another block")
            inside = True
            n += 1
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError({json.dumps(label(function))})")
        elif stripped == END:
            if not inside:
                raise ConventionError(f"{where}, line {i + 1}: {END} without {BEGIN}")
            inside = False
        elif stripped.startswith("### BEGIN") or stripped.startswith("### END"):
            raise ConventionError(
                f"{where}, line {i + 1}: {stripped!r} is not a marker this tool knows; "
                f"write exactly {BEGIN!r} and {END!r} on lines of their own"
            )
        elif not inside:
            out.append(line)
    if inside:
        raise ConventionError(f"{where}: {BEGIN} without a matching {END}")
    return "\n".join(out), n


MD_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def rebase_link(target: str) -> str:
    """A relative link written from exercises/solutions/ rewritten for exercises/ (the student
    copy sits one folder up): ../../book/x -> ../book/x, ../09_x.ipynb -> 09_x.ipynb."""
    import os
    import posixpath

    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
        return target  # a URL, an anchor or an absolute path
    path, hash_, anchor = target.partition("#")
    here = posixpath.normpath(posixpath.join("exercises/solutions", path))
    return os.path.relpath(here, "exercises").replace(os.sep, "/") + hash_ + anchor


def strip_markdown(source: str, first: bool) -> str:
    lines = []
    for line in source.split("\n"):
        if line.rstrip().endswith(SOLUTION_ONLY_LINE):
            continue
        m = STUDENT_LINE.match(line)
        if m:  # written for the student copy: its links are already relative to exercises/
            lines.append(m.group(1))
        else:  # written for the solution: its links are relative to exercises/solutions/
            lines.append(MD_LINK.sub(lambda k: k[1] + rebase_link(k[2]) + k[3], line))
    if first and lines:
        lines[0] = re.sub(r"\s*\((solutions?)\)\s*$", "", lines[0], flags=re.IGNORECASE)
    return "\n".join(lines)


def student_copy(solution_path: Path):
    """The student notebook generated from a solution notebook (not executed, outputs cleared)."""
    nb = nbformat.read(solution_path, as_version=4)
    rel = solution_path.relative_to(ROOT).as_posix() if solution_path.is_relative_to(ROOT) else ""
    where = rel or str(solution_path)
    if not has_solution_blocks(nb):
        raise ConventionError(
            f"{where}: no `{BEGIN}` block in any code cell, so the student copy would be the "
            "solution. Put each answer between `### BEGIN SOLUTION` and `### END SOLUTION` lines "
            "(see tools/exercises.py's docstring)"
        )
    number = notebook_number(solution_path)
    out = nbformat.v4.new_notebook()
    out.metadata = copy.deepcopy(nb.metadata)
    exercise = None  # the number of the last exercise heading seen
    rank = 0
    for idx, cell in enumerate(nb.cells):
        if is_solution_cell(cell):
            continue
        new = copy.deepcopy(cell)
        if cell.cell_type == "markdown":
            m = HEADING_NUMBER.search(cell.source)
            if m:
                exercise = int(m.group(1))
            new.source = strip_markdown(cell.source, first=idx == 0)
        elif cell.cell_type == "code":
            new.outputs = []
            new.execution_count = None

            def label(function, _exercise=exercise):
                nonlocal rank
                rank += 1
                m = _exercise if _exercise is not None else rank
                what = f"write the body of {function}()" if function else "write this part"
                return f"exercise {number}.{m}: {what}"

            new.source, _ = strip_code(cell.source, f"{where}, cell {idx}", label)
        new.metadata.pop("execution", None)
        out.cells.append(new)
    starter = EXERCISES / solution_path.name
    refresh_frame(out, starter.relative_to(ROOT).as_posix())  # the badges point at the starter
    if len(nb.cells) > 1 and "setup" in nb.cells[1].get("metadata", {}).get("tags", []):
        # the set-up cell stays the solution's own (tools/notebooks.py badges refreshes both)
        out.cells[1].source = nb.cells[1].source
    return out


def starter_path(solution_path: Path) -> Path:
    return EXERCISES / solution_path.name


def write_starter(solution_path: Path, run: bool = True) -> Path:
    nb = student_copy(solution_path)
    path = starter_path(solution_path)
    nbformat.write(nb, path)
    if run:
        execute(path)
        check_executed(path)
    return path


def check_executed(path: Path) -> None:
    """A starter, once executed, has no error output and a not-done line from each checker."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                raise ConventionError(
                    f"{path.name}, cell {i}: the starter raised {out.ename}: {out.evalue}. Call "
                    "the student's functions only inside checkers"
                )
        if CHECK_CALL.search(cell.source):
            text = "".join(o.get("text", "") for o in cell.get("outputs", []))
            if "⏳" not in text and "❌" not in text:
                raise ConventionError(
                    f"{path.name}, cell {i}: the checker printed no not-done line: {text!r}"
                )


def cell_signature(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def check(paths: list[Path] | None = None) -> list[str]:
    """Problems: starters missing, out of date, or not executed. Empty when all is well."""
    problems = []
    for sol in paths if paths is not None else solution_paths():
        starter = starter_path(sol)
        try:
            want = student_copy(sol)
        except ConventionError as e:
            problems.append(str(e))
            continue
        if not starter.exists():
            problems.append(f"{starter.name}: missing; run `python tools/exercises.py starters`")
            continue
        got = nbformat.read(starter, as_version=4)
        a, b = cell_signature(got), cell_signature(want)
        if a != b:
            diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(
                f"exercises/{starter.name} differs from what the generator writes (first at "
                f"cell {diff}; {len(a)} cells vs {len(b)}): edit the solution notebook, then run "
                f"`python tools/exercises.py starters {notebook_number(sol):02d}`"
            )
            continue
        if any(c.cell_type == "code" and c.execution_count is None for c in got.cells):
            problems.append(
                f"exercises/{starter.name} is not executed; run "
                f"`python tools/exercises.py starters {notebook_number(sol):02d}`"
            )
    return problems


# ---- the autograder -----------------------------------------------------------------------------

KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign)
KEEP += (ast.AnnAssign,)  # annotated assignments too


def checker_calls(nb) -> list[tuple[str, str]]:
    """(checker name, argument expression) of every `ge.exercises.check_NAME(ARG)` in the notebook."""
    calls = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            calls += CHECK_CALL.findall(cell.source)
    return calls


def definitions(nb) -> list[tuple[str, str]]:
    """The notebook's imports, functions, classes and assignments, in order: what a student's
    answers need, without the demos, prints and checker calls (which the grader makes itself).
    Returns (where, source) pairs, one per top-level statement kept."""
    kept = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = [ln for ln in cell.source.split("\n") if not ln.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError as e:
            kept.append((f"cell {i}", f"raise SyntaxError({f'{e.msg} (line {e.lineno})'!r})"))
            continue
        for node in tree.body:
            if isinstance(node, KEEP):
                first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
                text = "\n".join(lines[first - 1 : node.end_lineno])  # decorators included
                kept.append((f"cell {i}, line {first}", text))
    return kept


def load_answers(nb) -> dict:
    """Run a notebook's definitions (see `definitions`) in a fresh namespace and return it.

    A definition that fails (a syntax error, an import of a missing module) does not stop the
    others: its error is kept under the key "__errors__"."""
    ns: dict = {"__name__": "__student__"}
    errors = []
    for where, block in definitions(nb):
        try:
            exec(compile(block, f"<student notebook, {where}>", "exec"), ns)  # noqa: S102
        except Exception as e:  # a broken definition costs its exercise only
            errors.append(f"{where}: {type(e).__name__}: {e}")
    ns["__errors__"] = errors
    return ns


def grade_notebook(nb, seed: int) -> list[dict]:
    """Score each checker call of `nb`: visible cases, then the hidden ones drawn from `seed`."""
    import gptoss_edu.exercises as ex

    ns = load_answers(nb)
    rows = []
    for name, arg in dict.fromkeys(checker_calls(nb)):
        check = getattr(ex, name, None)
        row = {"exercise": name, "function": arg.strip(), "visible": False, "hidden": None}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            fn = ns.get(arg.strip())
            if check is None:
                print(f"❌ {name}: no such checker in gptoss_edu.exercises")
            elif fn is None:
                print(f"❌ {name}: the notebook defines no {arg.strip()!r}")
            else:
                row["visible"] = bool(check(fn))
                if getattr(check, "hidden", False):
                    row["hidden"] = bool(check(fn, seed=seed))
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
        bad = [ln for ln in lines if not ln.startswith("✅")]
        row["message"] = (bad or lines or [""])[0]  # the first failure, else the pass line
        row["score"] = int(row["visible"] and row["hidden"] is not False)
        rows.append(row)
    return rows


def notebooks_to_grade(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        if not found:
            raise SystemExit(f"{path}: no .ipynb notebook in this folder")
        return found
    if path.suffix != ".ipynb" or not path.exists():
        raise SystemExit(f"{path}: expected a student notebook (.ipynb) or a folder of them")
    return [path]


def grade_in_subprocess(path: Path, seed: int, timeout: float) -> dict:
    """Grade one notebook in a fresh Python (a student's code cannot touch the grader's state)."""
    import subprocess

    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "grade-one",
        str(path),
        "--seed",
        str(seed),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"notebook": str(path), "error": f"timed out after {timeout:g} s", "rows": []}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"notebook": str(path), "error": " / ".join(tail) or "no result", "rows": []}
    return json.loads(lines[-1])


def print_table(results: list[dict], seed: int) -> None:
    print(f"hidden cases drawn from seed {seed} (grade again with --seed {seed} to reproduce)")
    for res in results:
        rows = res["rows"]
        total = sum(r["score"] for r in rows)
        print(
            f"\n{res['notebook']}: {total}/{len(rows)}"
            + (f"  ERROR {res['error']}" if res.get("error") else "")
        )
        for err in res.get("definition_errors", []):
            print(f"    (a definition failed: {err})")
        for r in rows:
            hidden = {None: "n/a", True: "pass", False: "FAIL"}[r["hidden"]]
            visible = "pass" if r["visible"] else "FAIL"
            print(
                f"  {r['score']}  {r['exercise']:<32} visible {visible:<4}  hidden {hidden:<4}  {r['message'][:150]}"
            )


# ---- the kit: slides, syllabus, student copies, autograder ---------------------------------------

INSTRUCTORS = ROOT / "instructors"
BOOK = ROOT / "book"


def heading(cell) -> str | None:
    """The text of the first "## " heading line of a markdown cell, else None."""
    if cell.cell_type != "markdown":
        return None
    return next((ln[3:].strip() for ln in cell.source.split("\n") if ln.startswith("## ")), None)


def slide_deck(chapter: Path, selection: list, show_code: bool = True):
    """The chapter's notebook cut down to the selected sections, with reveal.js slide types."""
    nb = nbformat.read(chapter, as_version=4)
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    title = copy.deepcopy(nb.cells[0])
    title.source = "\n".join(
        ln for ln in title.source.split("\n") if "<!-- badges" not in ln
    ).strip()
    title.metadata["slideshow"] = {"slide_type": "slide"}
    out.cells.append(title)
    by_heading = {heading(c): i for i, c in enumerate(nb.cells) if heading(c)}
    by_id = {c.get("id"): i for i, c in enumerate(nb.cells)}
    for entry in selection:
        if isinstance(entry, dict) and "id" in entry:
            if entry["id"] not in by_id:
                raise ConventionError(f"{chapter.name}: no cell with id {entry['id']!r}")
            picked = [by_id[entry["id"]]]
        else:
            text = entry["heading"] if isinstance(entry, dict) else entry
            if text not in by_heading:
                raise ConventionError(
                    f"instructors/slides.yml: {chapter.name} has no section '## {text}'; its "
                    f"sections are {sorted(by_heading)}"
                )
            start = by_heading[text]
            end = next(
                (i for i in range(start + 1, len(nb.cells)) if heading(nb.cells[i])),
                len(nb.cells),
            )
            limit = entry.get("cells") if isinstance(entry, dict) else None
            picked = list(range(start, end if limit is None else min(end, start + 1 + limit)))
        for k, i in enumerate(picked):
            cell = copy.deepcopy(nb.cells[i])
            if "setup" in cell.get("metadata", {}).get("tags", []):
                continue
            cell.metadata["slideshow"] = {"slide_type": "slide" if k == 0 else "subslide"}
            if cell.cell_type == "code" and not show_code:
                cell.metadata.setdefault("tags", []).append("remove_input")
            out.cells.append(cell)
    return out


def build_slides(
    out_dir: Path, chapters: list[str] | None = None, reveal_prefix: str | None = None
):
    """One reveal.js HTML file per chapter of instructors/slides.yml (nothing is downloaded: the
    HTML refers to reveal.js at `reveal_prefix`, fetched by the browser that shows it)."""
    import yaml
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = yaml.safe_load((INSTRUCTORS / "slides.yml").read_text())
    show_code = config.get("code", "show") == "show"
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = ("remove_input",)
    if reveal_prefix:
        c.SlidesExporter.reveal_url_prefix = reveal_prefix
    exporter = SlidesExporter(config=c)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, selection in config["chapters"].items():
        if chapters and not any(name.startswith(f"{int(n):02d}_") for n in chapters):
            continue
        chapter = BOOK / f"{name}.ipynb"
        if not chapter.exists():
            raise ConventionError(f"instructors/slides.yml names {name}, but {chapter} is missing")
        body, _ = exporter.from_notebook_node(slide_deck(chapter, selection, show_code))
        path = out_dir / f"{name}.slides.html"
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written


def nbgrader_source(solution_path: Path, seed: int):
    """The solution notebook as an nbgrader "source" notebook: answer cells carry nbgrader's
    solution metadata (its `### BEGIN SOLUTION` markers are already there), and each checker cell
    becomes an autograded test cell (1 point) whose hidden part, between nbgrader's
    `### BEGIN HIDDEN TESTS` markers, asserts the checker on the cases drawn from `seed`."""
    import gptoss_edu.exercises as ex

    nb = nbformat.read(solution_path, as_version=4)
    stem = solution_path.stem
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    for i, cell in enumerate(nb.cells):
        if is_solution_cell(cell):
            continue
        cell = copy.deepcopy(cell)
        meta = {"schema_version": 3, "grade_id": f"{stem}_cell{i}", "locked": False}
        meta.update(solution=False, grade=False, task=False)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            calls = CHECK_CALL.findall(cell.source)
            if any(ln.strip() == BEGIN for ln in cell.source.split("\n")):
                meta["solution"] = True
            elif calls:
                meta.update(grade=True, points=len(calls), locked=True)
                hidden = [
                    f"assert ge.exercises.{name}({arg}, seed={seed})"
                    for name, arg in calls
                    if getattr(getattr(ex, name, None), "hidden", False)
                ]
                visible = [f"assert ge.exercises.{name}({arg})" for name, arg in calls]
                lines = [ln for ln in cell.source.split("\n") if not CHECK_CALL.search(ln)]
                lines += visible
                if hidden:
                    lines += ["### BEGIN HIDDEN TESTS", *hidden, "### END HIDDEN TESTS"]
                cell.source = "\n".join(lines)
            else:
                meta["locked"] = True
        cell.metadata.pop("execution", None)
        cell.metadata["nbgrader"] = meta
        out.cells.append(cell)
    return out


def build_kit(out: Path, chapters: list[str] | None = None, reveal_prefix: str | None = None):
    """Everything an instructor hands out or keeps, in one folder (see the README written there)."""
    import shutil
    import zipfile

    out.mkdir(parents=True, exist_ok=True)
    problems = check()
    student = out / "student"
    shutil.rmtree(student, ignore_errors=True)
    student.mkdir()
    for path in sorted(EXERCISES.glob("[0-9]*_*.ipynb")):
        shutil.copy(path, student / path.name)
    with zipfile.ZipFile(out / "student_exercises.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(student.iterdir()):
            z.write(path, f"exercises/{path.name}")
    solutions = out / "solutions"
    shutil.rmtree(solutions, ignore_errors=True)
    solutions.mkdir()
    for path in sorted(SOLUTIONS.glob("[0-9]*_*.ipynb")):
        shutil.copy(path, solutions / path.name)
    grader = out / "autograder"
    grader.mkdir(exist_ok=True)
    for name in ("exercises.py", "notebooks.py"):
        shutil.copy(Path(__file__).resolve().parent / name, grader / name)
    shutil.copy(INSTRUCTORS / "syllabus.md", out / "syllabus.md")
    import secrets

    nbgrader = out / "nbgrader" / "source"
    shutil.rmtree(out / "nbgrader", ignore_errors=True)
    seed = secrets.randbelow(10**6)  # hidden tests differ from one kit to the next
    for path in sorted(SOLUTIONS.glob("[0-9]*_*.ipynb")):
        if has_solution_blocks(nbformat.read(path, as_version=4)):
            folder = nbgrader / f"ex{notebook_number(path):02d}"
            folder.mkdir(parents=True)
            nbformat.write(nbgrader_source(path, seed), folder / path.name)
    slides = build_slides(out / "slides", chapters, reveal_prefix)
    readme = KIT_README.format(
        n_student=len(list(student.iterdir())),
        slides="\n".join(f"- slides/{p.name}" for p in slides),
        problems="\n".join(f"- {p}" for p in problems) or "- none: every starter is current",
    )
    (out / "README.md").write_text(readme, encoding="utf-8")
    return out


KIT_README = """# gptoss-edu: the instructor kit

Built by `python tools/exercises.py kit --out <this folder>` from the repository.

- `student/` ({n_student} notebooks) and `student_exercises.zip`: the exercise notebooks to hand
  out, generated from the solutions (answers replaced by `raise NotImplementedError`).
- `solutions/`: the solution notebooks (keep them for yourself).
- `autograder/`: `python autograder/exercises.py grade SUBMISSIONS/ --seed S --json scores.json`
  grades a folder of student notebooks on hidden cases drawn from S (a new S per grading run;
  the same S reproduces a grade). It needs `pip install gptoss-edu` (the checkers live there).
- `nbgrader/source/exNN/`: the same sets as nbgrader "source" assignments (solution cells marked,
  each checker cell a 1-point test whose hidden part runs the checker on cases drawn from a seed
  chosen when this kit was built), for courses that run nbgrader (`nbgrader generate_assignment
  exNN`, then `nbgrader autograde exNN`). nbgrader itself is not needed for anything else here.
- `syllabus.md`: prerequisites, hours per chapter and a 12-week plan.
- `slides/`: one reveal.js deck per chapter, the sections listed in instructors/slides.yml. The
  HTML loads reveal.js from its URL prefix when shown; for a room without network, rebuild with
  `--reveal-prefix reveal.js` and put a copy of reveal.js 4 (npm package `reveal.js`) in
  `slides/reveal.js/`.

{slides}

Starters that are not current (the generator would write something else):
{problems}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("starters", help="regenerate (and execute) student copies from solutions")
    s.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    s.add_argument("--no-run", action="store_true", help="write without executing")
    sub.add_parser("check", help="fail if a committed starter is not what `starters` writes")
    g = sub.add_parser("grade", help="score student notebooks on hidden cases")
    g.add_argument("path", type=Path, help="a student notebook or a folder of them")
    g.add_argument("--seed", type=int, default=None, help="hidden-case seed (default: drawn)")
    g.add_argument("--json", type=Path, default=None, help="also write the scores here")
    g.add_argument("--timeout", type=float, default=300, help="seconds per notebook (300)")
    k = sub.add_parser("kit", help="build the instructor kit into one folder")
    k.add_argument("--out", type=Path, default=ROOT / "build" / "instructors")
    k.add_argument("--chapters", nargs="*", help="slides for these chapter numbers only")
    k.add_argument("--reveal-prefix", default=None, help="where the slides load reveal.js from")
    one = sub.add_parser("grade-one")  # internal: grade one notebook, print JSON
    one.add_argument("path", type=Path)
    one.add_argument("--seed", type=int, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "kit":
        out = build_kit(args.out, args.chapters, args.reveal_prefix)
        print(f"instructor kit written to {out} (see {out / 'README.md'})")
        return 0
    if args.cmd == "grade-one":
        nb = nbformat.read(args.path, as_version=4)
        with contextlib.redirect_stdout(io.StringIO()):
            errors = load_answers(nb)["__errors__"]
        rows = grade_notebook(nb, args.seed)
        print(json.dumps({"notebook": str(args.path), "rows": rows, "definition_errors": errors}))
        return 0
    if args.cmd == "grade":
        import secrets

        seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
        results = [
            grade_in_subprocess(p, seed, args.timeout) for p in notebooks_to_grade(args.path)
        ]
        print_table(results, seed)
        if args.json:
            args.json.write_text(json.dumps({"seed": seed, "notebooks": results}, indent=1))
            print(f"\nscores written to {args.json}")
        return 0
    if args.cmd == "starters":
        for sol in solution_paths(args.numbers):
            path = write_starter(sol, run=not args.no_run)
            print("wrote", path.relative_to(ROOT))
        return 0
    if args.cmd == "check":
        problems = check()
        for p in problems:
            print("✗", p)
        if not problems:
            print(f"all {len(solution_paths())} starters are current")
        return 1 if problems else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
