"""Kill test of the one directory writer (issue 12): a child process saving with overwrite=True is
SIGKILLed at every step boundary of `atomic_directory`; after every kill the path loads the old or
the new checkpoint, and the next save removes what the dead writer left behind.

The child is a fork of this process (torch already imported: milliseconds, not seconds); the
writer's test hook GPTOSS_EDU_WRITER_STOP_AT=N makes it write a marker at step N and sleep.
"""

import os
import signal
import time

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.checkpoint import atomic, write_synthetic
from gptoss_edu.checkpoint.atomic import STEPS, atomic_directory

SMALL = ge.ModelConfig.tiny().replace(num_hidden_layers=2, vocab_size=300)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def fork_save(model, path, step, marker):
    pid = os.fork()
    if pid == 0:  # the child: save, stopping at `step`
        try:
            os.environ["GPTOSS_EDU_WRITER_STOP_AT"] = str(step)
            os.environ["GPTOSS_EDU_WRITER_MARKER"] = str(marker)
            ge.save_checkpoint(model, path, overwrite=True)
            marker.write_text("finished")
            time.sleep(60)
        finally:
            os._exit(1)
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the writer never reached step {step}")
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return marker.read_text()


@pytest.fixture
def old_and_new(tmp_path):
    old = write_synthetic(tmp_path / "old", SMALL, seed=0)
    new_model = ge.load_checkpoint(write_synthetic(tmp_path / "src", SMALL, seed=1))
    return old, new_model


@pytest.mark.parametrize("step", range(1, len(STEPS) + 1))
def test_kill_at_every_step_leaves_old_or_new(tmp_path, old_and_new, step):
    old, new_model = old_and_new
    old_emb = ge.load_checkpoint(old).embedding.weight.clone()
    new_emb = new_model.embedding.weight.detach().clone()
    assert not torch.equal(old_emb, new_emb)
    path = tmp_path / "ckpt"
    os.rename(old, path)
    reached = fork_save(new_model, path, step, tmp_path / "marker")
    assert reached == STEPS[step - 1]
    assert leftovers(path) if step < len(STEPS) else True  # the dead writer's debris is there
    loaded = ge.load_checkpoint(path).embedding.weight  # recovers a lone backup (step 4)
    expected = old_emb if step <= STEPS.index("old-moved") + 1 else new_emb
    assert torch.equal(loaded, expected), f"killed after {STEPS[step - 1]!r}: wrong checkpoint"
    # the next save cleans up after the dead writer
    ge.save_checkpoint(new_model, path, overwrite=True)
    assert leftovers(path) == []
    assert torch.equal(ge.load_checkpoint(path).embedding.weight, new_emb)


def test_live_writers_temp_is_never_removed(tmp_path):
    path = tmp_path / "c"
    live = tmp_path / f".c.tmp-{os.getppid()}-abcd"  # our parent process: alive
    dead_pid = os.fork()
    if dead_pid == 0:
        os._exit(0)
    os.waitpid(dead_pid, 0)
    dead = tmp_path / f".c.tmp-{dead_pid}-abcd"
    live.mkdir()
    dead.mkdir()
    write_synthetic(path, SMALL)
    assert live.exists() and not dead.exists()


def test_directory_modes_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_synthetic(tmp_path / "c", SMALL)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755
    assert (path / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_error_inside_the_writer_keeps_the_old_directory(tmp_path):
    path = write_synthetic(tmp_path / "c", SMALL)
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(path, overwrite=True) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in path.iterdir()) == before and leftovers(path) == []


def test_recover_puts_a_dead_writers_backup_back(tmp_path):
    path = write_synthetic(tmp_path / "c", SMALL)
    dead_pid = os.fork()
    if dead_pid == 0:
        os._exit(0)
    os.waitpid(dead_pid, 0)
    os.rename(path, tmp_path / f".c.old-{dead_pid}-0123")
    assert atomic.recover(path).is_dir() and leftovers(path) == []
