"""benchmarks/pilot.py's gated gpt-oss-20b cell: found where the environment says, else skipped
with the places it looked."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pilot():
    spec = importlib.util.spec_from_file_location("pilot", ROOT / "benchmarks" / "pilot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_20b_found_in_env_var_folder_or_its_original(tmp_path, monkeypatch):
    pilot = _pilot()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GPTOSS_20B_DIR", raising=False)
    monkeypatch.setenv("GPTOSS_20B", str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / "original").mkdir(parents=True)
    path, _ = pilot.gpt_oss_20b_dir()
    assert path is None  # a folder without config.json is not a checkpoint
    (tmp_path / "ckpt" / "original" / "config.json").write_text("{}")
    path, _ = pilot.gpt_oss_20b_dir()
    assert path == tmp_path / "ckpt" / "original"
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert pilot.gpt_oss_20b_dir()[0] == tmp_path / "ckpt"


def test_20b_in_the_hf_cache_and_skipped_without(tmp_path, monkeypatch):
    pilot = _pilot()
    monkeypatch.delenv("GPTOSS_20B", raising=False)
    monkeypatch.delenv("GPTOSS_20B_DIR", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    path, looked = pilot.gpt_oss_20b_dir()
    assert path is None
    assert looked == ["$GPTOSS_20B (not set)", "$GPTOSS_20B_DIR (not set)", pilot.HF_CACHE_20B]
    snap = tmp_path / ".cache/huggingface/hub/models--openai--gpt-oss-20b/snapshots/abc/original"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert pilot.gpt_oss_20b_dir()[0] == snap
