"""Replacing a directory so that a kill at any moment leaves the old or the new one (chapter 12).

Every writer of a checkpoint directory (`save_checkpoint`, `write_synthetic`, training state,
`train`'s output) goes through `atomic_directory`:

    with atomic_directory(path, overwrite=True) as tmp:
        write files into tmp
    # here path holds exactly what was written into tmp

1. write into a fresh directory beside the target, `.NAME.tmp-PID-RANDOM` (normal modes: the
   umask decides, as for any directory the user makes), then fsync every file and the directory;
2. if the target exists: rename it to `.NAME.old-PID-RANDOM` (the backup);
3. rename the new directory to the target; fsync the parent;
4. remove the backup.

A directory cannot be swapped in one atomic step on every system, so there is a moment (between
2 and 3) when only the backup exists. `recover(path)` (called by every loader and by the next
writer) renames such a backup back when its writer is dead. Temporary directories and backups
of dead writers (their PID no longer runs) are removed by the next write to the same path;
those of a live writer are never touched.

For the kill test (tests/test_kill_save.py), GPTOSS_EDU_WRITER_STOP_AT=N makes the writer stop
at its N-th step boundary: it writes GPTOSS_EDU_WRITER_MARKER and sleeps until killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path

STEPS = ("created", "written", "synced", "old-moved", "new-in", "backup-removed")
_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")


def _step(n: int) -> None:
    """Test hook: stop at step boundary n (1-based) if GPTOSS_EDU_WRITER_STOP_AT says so."""
    stop = os.environ.get("GPTOSS_EDU_WRITER_STOP_AT")
    if stop is None or int(stop) != n:
        return
    marker = os.environ.get("GPTOSS_EDU_WRITER_MARKER")
    if marker:
        Path(marker).write_text(STEPS[n - 1])
    while True:
        time.sleep(60)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _leftovers(path: Path):
    """(entry, kind, pid) for every temp/backup directory of `path` in its parent."""
    parent = path.parent
    if not parent.is_dir():
        return []
    out = []
    for entry in parent.iterdir():
        m = _NAME.match(entry.name)
        if m and m.group("name") == path.name:
            out.append((entry, m.group("kind"), int(m.group("pid"))))
    return out


def recover(path: str | os.PathLike) -> Path:
    """If `path` is missing but a dead writer's backup of it exists, put the backup back."""
    path = Path(path)
    if path.exists():
        return path
    backups = [(e, pid) for e, kind, pid in _leftovers(path) if kind == "old"]
    dead = [e for e, pid in backups if not _alive(pid)]
    if dead:
        newest = max(dead, key=lambda e: e.stat().st_mtime)
        with contextlib.suppress(FileNotFoundError):  # another process recovered it first
            os.rename(newest, path)
    return path


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temp directories and backups of dead writers of `path`; return them."""
    path = recover(path)
    removed = []
    for entry, _, pid in _leftovers(path):
        if not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False, what: str = "save"):
    """Yield a temporary directory; on success it replaces `path` (see the module docstring).

    Refuses a non-empty existing `path` unless overwrite=True, and a `path` that is a file.
    An exception inside the block removes the temporary directory and leaves `path` as it was.
    """
    path = Path(path).expanduser()
    recover(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{what}: {path} is a file, not a directory; give a directory path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{what}: {path} exists and is not empty; pass overwrite=True to replace it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = path.parent / f".{path.name}.tmp-{tag}"
    backup = path.parent / f".{path.name}.old-{tag}"
    tmp.mkdir()  # mode 0o777 & ~umask, like any directory the user makes
    try:
        _step(1)
        yield tmp
        _step(2)
        _fsync_tree(tmp)
        _step(3)
        if path.exists():
            os.rename(path, backup)
            _step(4)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
        _step(5)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup.exists() and not path.exists():
            os.rename(backup, path)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    _step(6)


__all__ = ["STEPS", "atomic_directory", "clean_stale", "recover"]
