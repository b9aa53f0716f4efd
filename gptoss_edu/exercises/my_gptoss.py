"""Your own gpt-oss: the folder where the exercises keep the modules you write (issue 10).

Across the exercise sets of chapters 3-7 and 11 you write your own gpt-oss, one module at a
time, as files in a folder of yours, `my_gptoss/` beside the exercise notebooks by default:

    norm.py (3)  rope.py (4)  attention.py (5)  moe.py (6)  model.py (7)  generation.py (11)

A cell that starts with the line `%%my_gptoss norm` (after `ge.exercises.enable_my_gptoss()`
has run once in the notebook) runs like any cell AND saves its text as `my_gptoss/norm.py`.
A later notebook (or your own attention.py) gets the module back with

    norm = ge.exercises.student_module("norm")    # your my_gptoss/norm.py, freshly loaded

and, where you have not written it yet (no file, or a file that still raises the exercise's
NotImplementedError), it says so and returns the book's version (`gptoss_edu.model.norm`), so
every notebook also runs on its own.

Where the folder is: `set_student_dir(path)`, else the environment variable
`GPTOSS_EDU_STUDENT_DIR`, else `./my_gptoss` (the notebook's own folder). On Colab the notebook's
folder is lost when the session ends: mount your Google Drive and point the folder there, first
thing in every exercise notebook:

    from google.colab import drive
    drive.mount("/content/drive")
    ge.exercises.set_student_dir("/content/drive/MyDrive/my_gptoss")

The autograder (tools/exercises.py grade) drops `%` lines, so it runs a `%%my_gptoss` cell's code
as it runs any other cell: your classes are graded from the notebook itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

# your module name -> the book's module it stands for (and the chapter that teaches it)
BOOK_MODULES = {
    "norm": ("gptoss_edu.model.norm", 3),
    "rope": ("gptoss_edu.model.rope", 4),
    "attention": ("gptoss_edu.model.attention", 5),
    "moe": ("gptoss_edu.model.moe", 6),
    "model": ("gptoss_edu.model.transformer", 7),
    "generation": ("gptoss_edu.generation", 11),
}
UNFINISHED = 'raise NotImplementedError("exercise'  # what a starter's unsolved block leaves
_student_dir: Path | None = None
_announced: set[tuple[str, str]] = set()  # (name, what was said): each said once


def set_student_dir(path) -> Path:
    """Keep your modules in `path` (created if missing), e.g. a folder on Google Drive."""
    global _student_dir
    _student_dir = Path(path).expanduser().resolve()
    _student_dir.mkdir(parents=True, exist_ok=True)
    return _student_dir


def student_dir() -> Path:
    """The folder of your modules: set_student_dir(), else $GPTOSS_EDU_STUDENT_DIR, else ./my_gptoss."""
    if _student_dir is not None:
        return _student_dir
    return Path(os.environ.get("GPTOSS_EDU_STUDENT_DIR", "my_gptoss")).expanduser().resolve()


def _check_name(name: str) -> None:
    if name not in BOOK_MODULES:
        raise ValueError(
            f"my_gptoss: no module called {name!r}; the exercises write "
            f"{', '.join(BOOK_MODULES)} (one per chapter 3-7, 11)"
        )


def _show(path: Path) -> str:
    """`path` relative to the working folder when it is inside it (shorter, and no user names)."""
    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else Path(rel).as_posix()


def _say_once(name: str, message: str) -> None:
    if (name, message) not in _announced:
        _announced.add((name, message))
        print(message)


def save_module(name: str, source: str) -> Path:
    """Write `source` as your module `name` (what the `%%my_gptoss name` cell magic calls)."""
    _check_name(name)
    folder = student_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    # Written beside, then renamed: a kernel importing it meanwhile sees the old file or the new
    # one, never half of one.
    tmp = path.with_name(f".{name}.py.{os.getpid()}.tmp")
    tmp.write_text(source if source.endswith("\n") else source + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def student_module(name: str, fallback: bool = True) -> ModuleType:
    """Your module `name` (e.g. "norm"), loaded fresh from your folder; where it is missing or
    unfinished, the book's module, saying so (or FileNotFoundError when fallback=False)."""
    _check_name(name)
    book, chapter = BOOK_MODULES[name]
    path = student_dir() / f"{name}.py"
    if path.exists() and UNFINISHED not in path.read_text(encoding="utf-8"):
        spec = importlib.util.spec_from_file_location(f"my_gptoss.{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # a fresh copy each call: your latest edit counts
        spec.loader.exec_module(module)
        _say_once(name, f"my_gptoss: using your {name}.py ({_show(path)})")
        return module
    why = "is unfinished" if path.exists() else "does not exist yet"
    if not fallback:
        raise FileNotFoundError(
            f"my_gptoss: {_show(path)} {why}; write it in the exercises of chapter {chapter} "
            "(or point set_student_dir() at the folder that has it)"
        )
    _say_once(
        name,
        f"my_gptoss: {_show(path)} {why} (exercises of chapter {chapter}); using the book's {book}",
    )
    return importlib.import_module(book)


def enable_my_gptoss() -> None:
    """Register the `%%my_gptoss NAME` cell magic: run the cell, then save it as NAME.py."""
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        raise RuntimeError("enable_my_gptoss: needs IPython/Jupyter (a notebook or Colab)")

    def my_gptoss(line: str, cell: str) -> None:
        name = line.strip()
        _check_name(name)
        result = ip.run_cell(cell)
        if result.success:
            print(f"saved as {_show(save_module(name, cell))}")
        else:
            print(f"not saved: the cell raised an error; fix it and run the cell again ({name}.py)")

    ip.register_magic_function(my_gptoss, magic_kind="cell", magic_name="my_gptoss")


__all__ = ["enable_my_gptoss", "save_module", "set_student_dir", "student_dir", "student_module"]
