import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MPLBACKEND", "Agg")

# The suite runs as `pytest -n 2`: two workers on (typically) two cores. One torch thread per worker
# avoids oversubscription, which makes the many tiny-model tests 10x slower, not faster.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# ---- shared checkpoint fixtures (helper H1, issue 12): tiny checkpoints in tmp dirs -----------
@pytest.fixture
def original_ckpt(tmp_path):
    """(path, config dict, tensors) of a small random gpt-oss in the original layout, written."""
    from independent import random_config, random_original_tensors, write_original

    cfg = random_config(3)
    tensors = random_original_tensors(cfg, 3)
    return write_original(tmp_path / "orig", cfg, tensors), cfg, tensors


@pytest.fixture
def hf_ckpt(tmp_path):
    """(path, config dict, tensors) of the same kind of model in Hugging Face shards + index."""
    from independent import random_config, random_original_tensors, write_hf_sharded

    cfg = random_config(3)
    tensors = random_original_tensors(cfg, 3)
    return write_hf_sharded(tmp_path / "hf", cfg, tensors), cfg, tensors


@pytest.fixture
def tiny_copy(tmp_path):
    """A copy of the shipped tiny model's directory (weights, config, its own tokenizer)."""
    import shutil

    from gptoss_edu.tiny import tiny_path

    return Path(shutil.copytree(tiny_path(), tmp_path / "tiny"))


@pytest.fixture
def ckpt(tmp_path):
    """(path to write to, config dict, tensors) of a small random gpt-oss, not yet written: for
    tests that corrupt the tensors first (write with independent.write_original)."""
    from independent import random_config, random_original_tensors

    cfg = random_config(3)
    return tmp_path / "m", cfg, random_original_tensors(cfg, 3)
