"""The book's frame: every notebook carries badges for its own path and the standard set-up
cell, and the HTML book builds offline from the stored outputs."""

import json
import os
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
        assert re.search(rf"(file|root): book/{path.stem}\n", toc), f"{path.name} not in the toc"
    # exercises and solutions come in by glob
    assert "glob: exercises/[0-9]*" in toc and "glob: exercises/solutions/[0-9]*" in toc


def book_build_command(exe: str, root: Path) -> list[str]:
    """The HTML book's build command (book/_toc.yml's comment and the README say the same)."""
    return [
        exe,
        "build",
        str(root),
        "--config",
        str(root / "book" / "_config.yml"),
        "--toc",
        str(root / "book" / "_toc.yml"),
        "--path-output",
        str(root / "book"),
    ]


@pytest.mark.slow
def test_html_book_builds_offline_with_zero_warnings(tmp_path):
    """The book's root is the repository: chapters, exercises and solutions are all pages, and
    every internal link resolves (-W turns any 'unknown document' warning into a failure)."""
    if (
        shutil.which("jupyter-book") is None
        and not (Path(sys.executable).parent / "jupyter-book").exists()
    ):
        pytest.skip("jupyter-book is not installed (pip install -e '.[test]')")
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    root = tmp_path / "repo"  # the book's files, laid out as in the repository
    ignore = shutil.ignore_patterns("_build", ".ipynb_checkpoints", "__pycache__")
    for name in ("book", "exercises"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    cmd = book_build_command(exe, root) + ["--builder", "html", "-W", "--keep-going"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    warnings = [ln for ln in (r.stdout + r.stderr).splitlines() if "WARNING" in ln]
    assert r.returncode == 0 and not warnings, "\n".join(warnings) or r.stderr[-3000:]
    html = root / "book" / "_build" / "html"
    assert "gpt-oss in one picture" in (html / "book" / "00_welcome.html").read_text()
    for path in NOTEBOOKS:  # every chapter, exercise set and solution is a page
        rel = path.relative_to(ROOT).with_suffix(".html")
        assert (html / rel).exists(), f"{rel} is not in the HTML book (book/_toc.yml)"
    # the chapters' "open the exercises" links are live links, not plain text
    chapter = (html / "book" / "01_tokens.html").read_text()
    assert 'href="../exercises/01_tokens.html"' in chapter


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


def readme_command(heading: str) -> str:
    """The indented command under the README's bold heading (as .ci/run extracts it)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"**{heading}**"))
    return next(ln[4:] for ln in lines[start + 1 :] if ln.startswith("    "))


@pytest.mark.slow
def test_readme_open_book_command_serves_the_repository(tmp_path):
    """JupyterLab started as the README says is rooted at the repository, so the chapters'
    ../exercises/ links open; it opens book/00_welcome.ipynb."""
    import shlex
    import socket
    import time
    import urllib.request

    pytest.importorskip("jupyterlab")
    cmd = shlex.split(readme_command("Open the book").split("&&")[-1])
    assert cmd[0].endswith("jupyter") and cmd[1] == "lab", cmd
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "gptoss-edu-test"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", *cmd[2:], "--no-browser", f"--port={port}"]
        + [f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> dict:
        url = f"{base}/api/contents/{path}?content=0&token={token}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    try:
        for _ in range(120):
            try:
                get("")
                break
            except OSError:
                time.sleep(0.5)
        else:
            proc.kill()
            pytest.fail(f"JupyterLab did not start: {proc.communicate()[1][-2000:]}")
        assert get("book/00_welcome.ipynb")["type"] == "notebook"
        assert get("exercises/01_tokens.ipynb")["type"] == "notebook"
        assert get("exercises/solutions/01_tokens.ipynb")["type"] == "notebook"
        # the file the browser is sent to, relative to the root
        opened = list((tmp_path / "runtime").glob("jpserver-*-open.html"))
        # (jpserver-PID-open.html and jpserver-file-to-run-PID-open.html: the second names it)
        assert any("book/00_welcome.ipynb" in p.read_text() for p in opened), opened
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _requirement(spec: str) -> tuple[str, str]:
    """'numpy>=1.24' -> ('numpy', '>=1.24'); comments stripped."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*([<>=!~].*)?", spec.split("#")[0])
    assert m, f"cannot read requirement {spec!r}"
    return m.group(1).lower(), (m.group(2) or "").strip()


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_matches_pyproject():
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = _pyproject()["project"]
    core = dict(_requirement(d) for d in project["dependencies"])
    book = dict(_requirement(d) for d in project["optional-dependencies"]["book"])
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_reqs = dict(_requirement(d) for d in conda)
    assert conda_reqs.pop("python") == f">={project['requires-python'].lstrip('>=')}"
    conda_reqs.pop("pip")
    # every core dependency but torch from conda-forge, with pyproject's bound (or the [book]
    # extra's, where it is stricter), and nothing else
    expected = {name: book.get(name, spec) for name, spec in core.items() if name != "torch"}
    assert conda_reqs == expected
    # torch from the CPU index, then the package with the book extra
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip
    assert pip.index(f"torch{core['torch']}") < pip.index("-e .[book]")


def test_binder_installs_cpu_torch_first_then_the_book_extra():
    reqs = [
        ln.strip()
        for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert reqs[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert [_requirement(r)[0] for r in reqs[1:]] == ["torch"] and reqs[1].endswith("+cpu")
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable"
    assert 'pip install --no-cache-dir -e ".[book]"' in post.read_text()
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    minor = int(runtime.removeprefix("python-3."))
    assert minor >= int(_pyproject()["project"]["requires-python"].split(".")[1])


def test_ci_runs_the_readme_test_command():
    """.ci/run extracts the command under **Run every test** with awk; it must find the same one."""
    script = (ROOT / ".ci" / "run").read_text()
    extract = next(ln for ln in script.splitlines() if ln.startswith("cmd=$(awk"))
    r = subprocess.run(
        ["bash", "-c", f'{extract}\nprintf "%s" "$cmd"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    cmd = readme_command("Run every test")
    assert r.stdout == cmd
    assert 'pip install -e ".[test]"' in cmd and "pytest -n 2" in cmd and "torch==" in cmd
