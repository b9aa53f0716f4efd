"""benchmarks/posttrain_stage.py: how it rewrites a recorded stage command to run it again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location(
    "posttrain_stage", ROOT / "benchmarks" / "posttrain_stage.py"
)
ps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ps)


def test_the_shipped_record_has_five_stages_first_to_last():
    record = json.loads(ps.RECORD.read_text())
    chain = ps.stages(record)
    assert len(chain) == 5
    assert "--fresh" in chain[0]["command"] and "--init" not in chain[0]["command"]
    assert chain[-1] is record
    for st in chain:
        assert ps.stage_summary(st)["masked loss, mean of the last 50 steps"] > 0


def test_rerun_args_replace_the_outputs_threads_and_init(tmp_path):
    cmd = (
        "python -m gptoss_edu posttrain --out /old/out --init /old/s4.safetensors --steps 1200 "
        "--threads 1 --op-weights 1 2 3 --save-float /old/f32.safetensors --overwrite"
    )
    args = ps.rerun_args(cmd, tmp_path, threads=2, init="/new/s4.safetensors")
    assert args == [
        "--steps", "1200", "--op-weights", "1", "2", "3",
        "--init", "/new/s4.safetensors",
        "--out", str(tmp_path / "reasoner"),
        "--save-float", str(tmp_path / "float32.safetensors"),
        "--threads", "2",
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="give them with --init"):
        ps.rerun_args(cmd, tmp_path, threads=2, init=None)
    fresh = "python -m gptoss_edu posttrain --out /o --fresh --steps 700"
    assert ps.rerun_args(fresh, tmp_path, 1, None)[:3] == ["--fresh", "--steps", "700"]
    with pytest.raises(SystemExit, match="drop --init"):
        ps.rerun_args(fresh, tmp_path, 1, "/x")
    with pytest.raises(ValueError, match="not a posttrain command"):
        ps.rerun_args("python -m gptoss_edu train --out /o", tmp_path, 1, None)
