"""Every `gptoss_edu.x.y` a reader is sent to in prose exists.

A renamed function leaves its old name in the chapters' and exercises' text, where no test runs
it (exercise 16.4 once pointed at `forgetting.reversal_conversation` after it became
`echo_conversation`). This reads the Markdown cells of every notebook and the Markdown files,
and resolves each backquoted dotted name starting with `gptoss_edu.` by importing and getattr.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"`(gptoss_edu(?:\.[A-Za-z_]\w*)+)")


def resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _texts():
    for nb_path in sorted([*ROOT.glob("book/*.ipynb"), *ROOT.glob("exercises/**/*.ipynb")]):
        nb = nbformat.read(nb_path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                yield f"{nb_path.relative_to(ROOT)} cell {i}", cell.source
    for md in sorted(
        [*ROOT.glob("*.md"), *ROOT.glob("benchmarks/*.md"), *ROOT.glob("docs/**/*.md")]
    ):
        yield str(md.relative_to(ROOT)), md.read_text(encoding="utf-8")


def test_the_checker_resolves_real_names_and_refuses_missing_ones():
    assert resolves("gptoss_edu.posttrain.forgetting.echo_conversation")
    assert resolves("gptoss_edu.harmony")
    assert not resolves("gptoss_edu.posttrain.forgetting.reversal_conversation")
    assert not resolves("gptoss_edu.no_such_module.thing")


def test_every_dotted_name_in_the_prose_exists():
    missing = [
        f"{where}: `{m.group(1)}`"
        for where, text in _texts()
        for m in NAME.finditer(text)
        if not resolves(m.group(1))
    ]
    if missing:
        pytest.fail("names the text sends readers to that do not exist:\n" + "\n".join(missing))
