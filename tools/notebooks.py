"""Make, refresh and execute the book's notebooks.

Every notebook starts the same way (DESIGN.md, "How a chapter reads"): a title cell whose last
line holds the Colab and Binder badges for the notebook's own path, then a set-up cell that
installs the package only inside Colab and prints versions. Both are generated here from
gptoss_edu/_project.py, the one place that holds the repository URL.

    python tools/notebooks.py build  chapter.py book/05_attention.ipynb   # jupytext percent script -> executed notebook
    python tools/notebooks.py badges                                      # refresh header + set-up cells everywhere
    python tools/notebooks.py execute book/05_attention.ipynb ...        # re-run in place (fixed seeds)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gptoss_edu._project import PIP_INSTALL, badges_markdown  # noqa: E402

BADGE_MARK = "<!-- badges -->"

SETUP_SOURCE = f'''# NBVAL_IGNORE_OUTPUT
# Set-up. In Colab this installs gptoss-edu from GitHub and turns on Colab's widget manager;
# elsewhere the package is already installed (see the README), so nothing is downloaded.
import subprocess
import sys

if "google.colab" in sys.modules:
    package = "{PIP_INSTALL}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
    from google.colab import output

    output.enable_custom_widget_manager()  # lets Colab draw ipywidgets (chapter 13's explorer)

import matplotlib
import torch

import gptoss_edu as ge

torch.manual_seed(0)
print(f"python {{sys.version.split()[0]}} | torch {{torch.__version__}} | gptoss_edu {{ge.__version__}}")'''


def notebook_paths() -> list[Path]:
    return sorted((ROOT / "book").glob("*.ipynb")) + sorted((ROOT / "exercises").rglob("*.ipynb"))


def refresh_frame(nb, rel_path: str) -> None:
    """Put the badge line at the end of the first (title) cell and the set-up cell second."""
    first = nb.cells[0]
    if first.cell_type != "markdown":
        raise ValueError(f"{rel_path}: the first cell must be the markdown title cell")
    lines = [ln for ln in first.source.rstrip().split("\n") if BADGE_MARK not in ln]
    while lines and not lines[-1].strip():
        lines.pop()
    first.source = "\n".join(lines + ["", f"{BADGE_MARK} {badges_markdown(rel_path)}"])
    setup = nbformat.v4.new_code_cell(SETUP_SOURCE, metadata={"tags": ["setup"]})
    if len(nb.cells) > 1 and "setup" in nb.cells[1].get("metadata", {}).get("tags", []):
        if nb.cells[1].source != SETUP_SOURCE:
            nb.cells[1].source = SETUP_SOURCE
            nb.cells[1].outputs = []
    else:
        nb.cells.insert(1, setup)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata.setdefault("language_info", {"name": "python"})


def execute(path: Path, timeout: int = 600) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nbformat.write(nb, path)


def build(src: Path, out: Path, run: bool = True) -> None:
    import jupytext

    nb = jupytext.read(src)
    nb.metadata.pop("jupytext", None)
    rel = out.resolve().relative_to(ROOT).as_posix()
    refresh_frame(nb, rel)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    if run:
        execute(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("src", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--no-run", action="store_true")
    sub.add_parser("badges")
    e = sub.add_parser("execute")
    e.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build(args.src, args.out, run=not args.no_run)
    elif args.cmd == "badges":
        for path in notebook_paths():
            nb = nbformat.read(path, as_version=4)
            refresh_frame(nb, path.relative_to(ROOT).as_posix())
            nbformat.write(nb, path)
            print("refreshed", path.relative_to(ROOT))
    else:
        for path in args.paths:
            print("executing", path)
            execute(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
