"""How much of the model's code the book's chapters show (issue 10: "the book is the source").

For every function and method of the package's model code (default: gptoss_edu/model/*.py and
gptoss_edu/generation.py), count its *code lines* and how many of them appear, in order, in the
code cells of one chapter notebook (book/NN_*.ipynb). Prints the total share and a map from each
package function to the chapter cells that show it, with the lines not shown.

    python tools/book_coverage.py                      # share + one line per function
    python tools/book_coverage.py --missing            # ... and every line not shown
    python tools/book_coverage.py --json out.json      # the whole map as JSON
    python tools/book_coverage.py --min-share 0.9      # exit 1 when the share is below 0.9
    python tools/book_coverage.py --module gptoss_edu/foo.py   # add modules (repeatable)
    python tools/book_coverage.py --cell-cap 15        # lines one cell may contribute (default)

The rules (tests/test_book_coverage.py checks each on small synthetic inputs):

- A *code line* is a physical source line that is not blank, not a comment, not part of a
  docstring, not part of an import, and not trivial punctuation (only brackets, commas and
  colons, or `pass`, `...`, `else:`, `try:`, `finally:`). Trailing comments are dropped and
  whitespace runs collapsed before comparing, so indentation does not matter.
- *Units*: each top-level function, each method of a top-level class (nested functions belong
  to their enclosing function), each class's own lines (the `class` line, class attributes),
  and a module's top-level statements. `__init__.py` files (re-exports) are skipped.
- A unit is matched against the code cells of ONE chapter (the chapter that shows most of it),
  *in order*: the shown lines are the longest common subsequence of the unit's code lines and
  the chapter's code-cell lines, so a line counts only where it sits in the same order as in
  the package, not scattered anywhere in the book.
- A cell that contains `inspect.getsource`, `%load`, `%pycat`, `%run` or `??` is ignored: it
  displays the package, it does not teach it.
- One cell contributes at most `--cell-cap` lines (15) to one unit: a longer function has to be
  developed over several cells, and a cell that pastes a whole module counts for at most 15
  lines of each function in it. The matching maximises the counted lines under this cap.
- Notebook magics (`%...`, `!...`) are removed from cells before matching.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODULES = ("gptoss_edu/model/*.py", "gptoss_edu/generation.py")
DEFAULT_BOOK = "book/[0-9][0-9]_*.ipynb"
CELL_CAP = 15
IGNORED_CELL_MARKERS = ("inspect.getsource", "%load", "%pycat", "%run", "??")
TRIVIAL_WORDS = {"pass", "...", "else:", "try:", "finally:"}
_PUNCT = re.compile(r"^[\s()\[\]{},:;]*$")


# ---------------------------------------------------------------- lines


def strip_comment(line: str) -> str:
    """The line without its `# comment` (a `#` inside a string literal is kept)."""
    quote = None  # the quote character of the string we are in, if any
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif c in "\"'":
            quote = line[i : i + 3] if line[i : i + 3] in ('"""', "'''") else c
            i += len(quote)
            continue
        elif c == "#":
            return line[:i]
        i += 1
    return line


def normalize(line: str) -> str:
    """Comment removed, whitespace runs collapsed: the form two lines are compared in."""
    return " ".join(strip_comment(line).split())


def is_trivial(norm: str) -> bool:
    return not norm or norm in TRIVIAL_WORDS or bool(_PUNCT.match(norm))


# ---------------------------------------------------------------- package units


@dataclass
class Unit:
    """One function, method, class body or module body, with its code lines."""

    module: str  # path relative to the root
    name: str  # "f", "Class.method", "Class", "<module>"
    lines: list[tuple[int, str]]  # (line number, normalized text)
    shown: list[bool] = field(default_factory=list)
    notebook: str | None = None
    cells: list[int] = field(default_factory=list)
    over_cap: int = 0  # lines matched but not counted because of the cell cap


def _docstring_lines(node) -> set[int]:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return set(range(body[0].lineno, body[0].end_lineno + 1))
    return set()


def code_units(source: str, module: str) -> list[Unit]:
    """Split a module's source into units and keep each unit's code lines."""
    tree = ast.parse(source)
    text = source.splitlines()
    excluded: set[int] = set(_docstring_lines(tree))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            excluded |= set(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            excluded |= _docstring_lines(node)

    owner: dict[int, str] = {}  # line number -> unit name

    def claim(node, name: str) -> None:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        for n in range(first, node.end_lineno + 1):
            owner[n] = name

    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            claim(node, node.name)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    claim(item, f"{node.name}.{item.name}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            claim(node, node.name)
        else:
            claim(node, "<module>")

    units: dict[str, Unit] = {}
    for n, raw in enumerate(text, start=1):
        if n in excluded or n not in owner:
            continue
        norm = normalize(raw)
        if is_trivial(norm):
            continue
        name = owner[n]
        units.setdefault(name, Unit(module, name, [])).lines.append((n, norm))
    return list(units.values())


# ---------------------------------------------------------------- chapter cells


def cell_lines(source: str) -> list[str] | None:
    """Normalized code lines of one cell, or None for a cell that only displays the package."""
    if any(marker in source for marker in IGNORED_CELL_MARKERS):
        return None
    out = []
    for raw in source.splitlines():
        if raw.lstrip().startswith(("%", "!")):
            continue
        norm = normalize(raw)
        if not is_trivial(norm):
            out.append(norm)
    return out


def notebook_cells(path: Path) -> list[tuple[int, list[str]]]:
    """(cell index, normalized code lines) for each code cell that counts."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        lines = cell_lines(src)
        if lines:
            cells.append((i, lines))
    return cells


# ---------------------------------------------------------------- matching


def _lcs_pairs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs (i in a, j in b) of one longest common subsequence."""
    n, m = len(a), len(b)
    dp = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            dp[i][j] = dp[i + 1][j + 1] + 1 if a[i] == b[j] else max(dp[i + 1][j], dp[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif dp[i + 1][j] >= dp[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def match_unit(
    lines: list[str], cells: list[tuple[int, list[str]]], cap: int = CELL_CAP
) -> tuple[list[bool], list[int], int]:
    """Match a unit's lines, in order, against one notebook's cells, each cell counting for at
    most `cap` lines. Returns (shown per line, cell indices used, lines lost to the cap).

    Dynamic programme over cells: best[i] = most lines counted with the unit's first i lines
    consumed; a cell takes a contiguous stretch lines[i:j] and counts min(cap, LCS) of it.
    """
    n = len(lines)
    wanted = set(lines)
    best = [0] * (n + 1)
    history = []  # per cell: (cell index, cell lines, choice[j]: start i, "skip" or None)
    for idx, cl in cells:
        cl = [x for x in cl if x in wanted]
        if not cl:
            continue
        new = best[:]
        choice: list = [None] * (n + 1)
        for i in range(n):
            # prefix LCS lengths of lines[i:j] against the whole cell, for every j, in one pass
            row = [0] * (len(cl) + 1)
            for j in range(i + 1, n + 1):
                a, prev_diag = lines[j - 1], 0
                for c in range(1, len(cl) + 1):
                    up = row[c]
                    row[c] = prev_diag + 1 if a == cl[c - 1] else max(up, row[c - 1])
                    prev_diag = up
                score = best[i] + min(cap, row[-1])
                if score > new[j]:
                    new[j], choice[j] = score, i
        for j in range(1, n + 1):  # consuming a line without showing it never hurts
            if new[j - 1] > new[j]:
                new[j], choice[j] = new[j - 1], "skip"
        history.append((idx, cl, choice))
        best = new
    shown = [False] * n
    used: list[int] = []
    lost = 0
    j = n
    for idx, cl, choice in reversed(history):
        while j > 0 and choice[j] == "skip":
            j -= 1
        if j == 0 or choice[j] is None:
            continue
        i = choice[j]
        pairs = _lcs_pairs(lines[i:j], cl)
        for a, _b in pairs[:cap]:
            shown[i + a] = True
        lost += max(0, len(pairs) - cap)
        if pairs:
            used.append(idx)
        j = i
    return shown, sorted(used), lost


# ---------------------------------------------------------------- the report


def measure(
    modules: list[Path], notebooks: list[Path], cap: int = CELL_CAP, root: Path = ROOT
) -> list[Unit]:
    books = {nb.relative_to(root).as_posix(): notebook_cells(nb) for nb in notebooks}
    units: list[Unit] = []
    for mod in modules:
        if mod.name == "__init__.py":
            continue
        units += code_units(mod.read_text(encoding="utf-8"), mod.relative_to(root).as_posix())
    for unit in units:
        texts = [t for _, t in unit.lines]
        unit.shown = [False] * len(texts)
        best = -1
        for name, cells in books.items():
            shown, used, lost = match_unit(texts, cells, cap)
            if sum(shown) > best and used:
                best = sum(shown)
                unit.shown, unit.notebook, unit.cells, unit.over_cap = shown, name, used, lost
    return units


def share(units: list[Unit]) -> tuple[int, int]:
    return sum(sum(u.shown) for u in units), sum(len(u.lines) for u in units)


def resolve_modules(patterns, root: Path = ROOT) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        found = sorted(root.glob(pat))
        if not found:
            raise SystemExit(f"book_coverage: no module matches {pat!r} under {root}")
        out += [p for p in found if p not in out]
    return out


def report(units: list[Unit], missing: bool) -> str:
    shown, total = share(units)
    rows = []
    for u in units:
        where = f"{u.notebook} cells {u.cells}" if u.notebook else "not shown in any chapter"
        cap = f" ({u.over_cap} more over the cell cap)" if u.over_cap else ""
        rows.append(f"{u.module}::{u.name:<28} {sum(u.shown):>3}/{len(u.lines):<3} {where}{cap}")
        if missing:
            for (n, text), ok in zip(u.lines, u.shown):
                if not ok:
                    rows.append(f"    {n:>4}: {text}")
    pct = 100 * shown / total if total else 100.0
    rows.append(f"book coverage: {shown}/{total} code lines shown in chapters = {pct:.1f}%")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module", action="append", default=[], help="extra module glob (repeatable)")
    ap.add_argument("--book", default=DEFAULT_BOOK, help=f"notebook glob (default {DEFAULT_BOOK})")
    ap.add_argument("--cell-cap", type=int, default=CELL_CAP, help="lines per cell per unit")
    ap.add_argument("--missing", action="store_true", help="list every line not shown")
    ap.add_argument("--json", type=Path, help="write the map as JSON here")
    ap.add_argument("--min-share", type=float, default=None, help="exit 1 below this share")
    args = ap.parse_args(argv)
    modules = resolve_modules(list(DEFAULT_MODULES) + args.module)
    notebooks = sorted(ROOT.glob(args.book))
    units = measure(modules, notebooks, args.cell_cap)
    print(report(units, args.missing))
    shown, total = share(units)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "shown": shown,
                    "total": total,
                    "units": [
                        {
                            "module": u.module,
                            "name": u.name,
                            "notebook": u.notebook,
                            "cells": u.cells,
                            "shown": sum(u.shown),
                            "lines": len(u.lines),
                            "missing": [n for (n, _), ok in zip(u.lines, u.shown) if not ok],
                        }
                        for u in units
                    ],
                },
                indent=1,
            )
        )
    if args.min_share is not None and total and shown / total < args.min_share:
        print(f"book coverage {shown / total:.3f} is below the required {args.min_share}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
