"""The book's frame: every notebook carries badges for its own path and the standard set-up
cell, and the HTML book builds offline from the stored outputs."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from gptoss_edu import _project

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb")) + sorted((ROOT / "exercises").rglob("*.ipynb"))


def test_there_are_notebooks():
    assert (ROOT / "book" / "00_welcome.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_badges_point_at_own_path(path):
    rel = path.relative_to(ROOT).as_posix()
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    links = re.findall(r"\]\((https://[^)]+)\)", first)
    colab = [u for u in links if u.startswith("https://colab.research.google.com/github/")]
    binder = [u for u in links if u.startswith("https://mybinder.org/v2/gh/")]
    assert len(colab) == 1 and len(binder) == 1, f"{rel}: needs one Colab and one Binder badge"
    assert (
        colab[0]
        == f"https://colab.research.google.com/github/{_project.REPO}/blob/{_project.BRANCH}/{rel}"
    )
    b = urlparse(binder[0])
    assert b.path == f"/v2/gh/{_project.REPO}/{_project.BRANCH}"
    assert parse_qs(b.query)["labpath"] == [rel]
    setup = nb["cells"][1]
    assert "setup" in setup["metadata"].get("tags", []), (
        f"{rel}: second cell must be the set-up cell"
    )
    src = "".join(setup["source"])
    assert '"google.colab" in sys.modules' in src and _project.PIP_INSTALL in src


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_committed_executed(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    if "exercises" in path.parts and "solutions" not in path.parts:
        return  # starters stop at their first TODO
    assert code and all(c.get("execution_count") for c in code), f"{path.name}: not executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output"


def test_every_book_notebook_is_in_the_toc():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        assert path.stem in toc, f"{path.name} is missing from book/_toc.yml"


@pytest.mark.slow
def test_html_book_builds_offline(tmp_path):
    if (
        shutil.which("jupyter-book") is None
        and not (Path(sys.executable).parent / "jupyter-book").exists()
    ):
        pytest.skip("jupyter-book is not installed (pip install -e '.[test]')")
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build"))
    r = subprocess.run(
        [exe, "build", str(book), "--builder", "html"], capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = book / "_build" / "html"
    assert (html / "00_welcome.html").exists()
    assert "gpt-oss in one picture" in (html / "00_welcome.html").read_text()


def test_setup_cell_colab_branch(monkeypatch, capsys):
    """Run the generated set-up cell as Colab would: it pip-installs the package from GitHub and
    turns on Colab's custom widget manager (without it Colab does not draw ipywidgets)."""
    import types

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from notebooks import SETUP_SOURCE
    finally:
        sys.path.remove(str(ROOT / "tools"))
    calls = []
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(
        enable_custom_widget_manager=lambda: calls.append("widget manager")
    )
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    exec(compile(SETUP_SOURCE, "<set-up cell>", "exec"), {})
    assert calls == [
        [sys.executable, "-m", "pip", "install", "-q", _project.PIP_INSTALL],
        "widget manager",
    ]
    assert "gptoss_edu" in capsys.readouterr().out
