"""Lazy loading, synthetic checkpoints and the errors of issue 5.

Files are checked with the safetensors library (an independent reader) and with hand-built
corruptions; the "nothing left half-loaded" tests force failures in the middle of a load."""

import json
import os
import subprocess
import sys

import pytest
import torch
from independent import random_config, random_original_tensors, write_original
from safetensors import safe_open
from safetensors.torch import save_file

import gptoss_edu as ge
from gptoss_edu import checkpoint
from gptoss_edu.checkpoint import CheckpointError, hf_spec, original_spec, write_synthetic
from gptoss_edu.config import OPENAI_KEYS

SMALL = ge.ModelConfig.tiny().replace(num_hidden_layers=2, vocab_size=300)


def read_all(path):
    """Every tensor of a checkpoint directory, read with the safetensors library."""
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                out[k] = st.get_tensor(k)
    return out


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_write_synthetic_has_exactly_the_spec(tmp_path, layout):
    path = write_synthetic(tmp_path / layout, SMALL, layout=layout, max_shard_bytes=400_000)
    spec = original_spec(SMALL) if layout == "original" else hf_spec(SMALL)
    tensors = read_all(path)
    assert list(tensors) == sorted(spec) or set(tensors) == set(spec)
    for key, (shape, dtype) in spec.items():
        assert tuple(tensors[key].shape) == tuple(shape) and tensors[key].dtype == dtype, key
    config = json.loads((path / "config.json").read_text())
    if layout == "original":
        assert set(config) == set(OPENAI_KEYS)
        assert [p.name for p in path.glob("*.safetensors")] == ["model.safetensors"]
    else:
        assert config["model_type"] == "gpt_oss" and "num_local_experts" in config
        index = json.loads((path / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(spec)
        assert len(set(index["weight_map"].values())) > 1  # sharded
        for key, name in index["weight_map"].items():
            with safe_open(str(path / name), "pt") as st:
                assert key in st.keys()
    assert ge.checkpoint.find_checkpoint(path).layout == layout
    assert ge.checkpoint.read_config(path) == SMALL
    model = ge.load_checkpoint(path)
    with torch.no_grad():
        assert torch.isfinite(model(torch.arange(12)).float()).all()


def test_synthetic_values_look_trained_and_are_seeded(tmp_path):
    a = read_all(write_synthetic(tmp_path / "a", SMALL, seed=1))
    b = read_all(write_synthetic(tmp_path / "b", SMALL, seed=1))
    c = read_all(write_synthetic(tmp_path / "c", SMALL, seed=2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embedding.weight"], c["embedding.weight"])
    s = a["block.0.mlp.mlp1_weight.scales"]
    assert int(s.min()) >= 118 and int(s.max()) <= 122
    assert float(a["block.1.attn.qkv.weight"].float().std()) == pytest.approx(0.02, rel=0.1)
    assert float(a["norm.scale"].float().mean()) == pytest.approx(1.0, abs=0.01)
    codes = a["block.0.mlp.mlp2_weight.blocks"]
    assert 120 < float(codes.float().mean()) < 135  # uniform bytes
    # the header is padded so that tensor data starts 8-byte aligned
    raw = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert int.from_bytes(raw[:8], "little") % 8 == 0


def test_write_synthetic_refuses_overwrite_and_leaves_nothing_on_error(tmp_path, monkeypatch):
    write_synthetic(tmp_path / "x", SMALL)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic(tmp_path / "x", SMALL)
    calls = []

    def broken(path, entries, metadata=None):
        calls.append(path)
        path.write_bytes(b"partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint.save, "write_safetensors", broken)
    with pytest.raises(OSError, match="simulated"):
        write_synthetic(tmp_path / "y", SMALL, layout="hf", max_shard_bytes=100_000)
    assert calls and sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no y, no temp dir


def test_corrupt_header_offsets(ckpt):
    path, cfg, t = ckpt
    write_original(path, cfg, t)
    f = path / "model.safetensors"
    raw = bytearray(f.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["norm.scale"]["data_offsets"][1] += 2  # one element too long
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))
    assert len(text) == n
    f.write_bytes(bytes(raw[:8]) + text + bytes(raw[8 + n :]))
    with pytest.raises(CheckpointError, match=r"corrupt.*norm\.scale"):
        ge.load_checkpoint(path)
    f.write_bytes(bytes(raw[:8]) + b"{" + b"x" * (n - 1) + bytes(raw[8 + n :]))
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        ge.load_checkpoint(path)


@pytest.mark.parametrize("experts", ["mxfp4", "dequantized"])
def test_nan_scale_named_in_both_modes_and_layouts(tmp_path, experts):
    cfg = random_config(6)
    t = random_original_tensors(cfg, 6)
    t["block.1.mlp.mlp2_weight.scales"][2, 3, 0] = 255
    path = write_original(tmp_path / "o", cfg, t)
    with pytest.raises(CheckpointError, match=r"mlp2_weight\.scales.*255.*\(2, 3, 0\)"):
        ge.load_checkpoint(path, experts=experts)
    from independent import write_hf_sharded

    path = write_hf_sharded(tmp_path / "h", cfg, t)
    with pytest.raises(CheckpointError, match=r"down_proj_scales.*255"):
        ge.load_checkpoint(path, experts=experts)


def test_extra_key_and_wrong_dtype_named(ckpt):
    path, cfg, t = ckpt
    t2 = dict(t, **{"block.0.mlp.extra": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected key.*block\.0\.mlp\.extra"):
        ge.load_checkpoint(write_original(path, cfg, t2))
    t3 = dict(t, **{"block.0.mlp.mlp1_weight.scales": t["block.0.mlp.mlp1_weight.scales"].float()})
    with pytest.raises(CheckpointError, match=r"mlp1_weight\.scales has dtype F32; expected uint8"):
        ge.load_checkpoint(write_original(path, cfg, t3))


def test_config_json_that_contradicts_tensors(ckpt):
    path, cfg, t = ckpt
    write_original(path, cfg, t)
    (path / "config.json").write_text(json.dumps(dict(cfg, num_experts=cfg["num_experts"] * 2)))
    with pytest.raises(CheckpointError, match=r"has shape.*experts="):
        ge.load_checkpoint(path)


def test_directory_without_checkpoint(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no gpt-oss checkpoint"):
        ge.load_checkpoint(tmp_path / "d")


@pytest.mark.parametrize("experts", ["mxfp4", "dequantized"])
def test_error_mid_load_leaves_nothing(ckpt, monkeypatch, experts):
    path, cfg, t = ckpt
    write_original(path, cfg, t)
    built, asked = [], []
    real_init = ge.GptOss.__init__
    monkeypatch.setattr(
        ge.GptOss, "__init__", lambda self, *a, **k: built.append(1) or real_init(self, *a, **k)
    )
    real_tensor = checkpoint.CheckpointReader.tensor

    def failing_tensor(self, name, rows=None):
        asked.append(name)
        if name.startswith("block.2."):
            raise OSError(f"I/O error reading {name} (simulated)")
        return real_tensor(self, name, rows)

    monkeypatch.setattr(checkpoint.CheckpointReader, "tensor", failing_tensor)
    with pytest.raises(OSError, match="simulated"):
        ge.load_checkpoint(path, experts=experts)
    assert asked and built == []  # no model object was ever created


def test_progress_bar(ckpt, capsys):
    path, cfg, t = ckpt
    ge.load_checkpoint(write_original(path, cfg, t), progress=True)
    assert "loading m" in capsys.readouterr().err


def test_dense_hf_experts_are_packed_on_load(tmp_path):
    from independent import decode_mxfp4_f64, to_hf_tensors

    cfg = random_config(7)
    t = random_original_tensors(cfg, 7)
    hf = to_hf_tensors(cfg, t)
    for n in range(cfg["num_hidden_layers"]):
        for name in ("gate_up_proj", "down_proj"):
            p = f"model.layers.{n}.mlp.experts.{name}"
            w = decode_mxfp4_f64(hf.pop(p + "_blocks"), hf.pop(p + "_scales"))  # (E, out, in)
            hf[p] = w.transpose(1, 2).to(torch.bfloat16).contiguous()  # HF: (E, in, out)
    path = tmp_path / "dense"
    path.mkdir()
    save_file(hf, str(path / "model.safetensors"))
    from independent import hf_config_dict

    (path / "config.json").write_text(json.dumps(hf_config_dict(cfg)))
    with pytest.warns(UserWarning, match="quantizing them to MXFP4"):
        packed = ge.load_checkpoint(path, dtype=torch.float32)
    w = decode_mxfp4_f64(t["block.0.mlp.mlp1_weight.blocks"], t["block.0.mlp.mlp1_weight.scales"])
    assert torch.equal(packed.block[0].mlp.mlp1_weight.dequantize(torch.float64), w)
    dense = ge.load_checkpoint(path, dtype=torch.float32, experts="dequantized")
    assert torch.equal(dense.block[0].mlp.mlp1_weight.data.double(), w)


PEAK_SCRIPT = """
import sys, torch, gptoss_edu as ge
torch.set_num_threads(1)
def anon():  # RssAnon: resident memory that is not file-backed (the process's own copies)
    return int(next(x for x in open("/proc/self/status") if x.startswith("RssAnon")).split()[1]) * 1024
mapped = sys.argv[2] == "1"
# a first load pays the one-time costs (imports, torch's meta-device set-up: ~90 MB), not ours
del_me = ge.load_checkpoint(sys.argv[1], dtype=torch.bfloat16, progress=False, mmap=mapped)
del del_me
base = anon()
m = ge.load_checkpoint(sys.argv[1], dtype=torch.bfloat16, progress=False, mmap=mapped)
size = sum(t.numel() * t.element_size() for t in m.state_dict().values())
print(anon() - base, size)
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_mapped_load_keeps_weights_out_of_anonymous_memory(tmp_path):
    """A 60 MB checkpoint in bf16: mapped, the process's anonymous memory barely grows (the
    weights are file-backed page cache); copied (mmap=False), it grows by the model's size."""
    cfg = SMALL.replace(
        hidden_size=512, intermediate_size=512, num_experts=32, num_hidden_layers=3, vocab_size=8192
    )
    path = write_synthetic(tmp_path / "c", cfg)
    grown = {}
    for mapped in ("1", "0"):
        out = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(path), mapped],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONWARNINGS="ignore"),
        )
        grown[mapped], size = map(int, out.stdout.split())
    assert grown["0"] > size * 0.8, f"copied: the model ({size} bytes) did not show ({grown})"
    assert grown["1"] < size * 0.1, f"mapped: anonymous memory grew {grown['1']} for {size} bytes"


# ---- memory-mapped loading (issue 15 goal 3) and the per-rank expert reader -----------------
def mapping_of(t):
    """(pathname, offset of t's first byte in that file) from /proc/self/maps: independent of
    the loader's own bookkeeping."""
    addr = t.data_ptr()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi:
                path = parts[5] if len(parts) > 5 else ""
                return path, addr - lo + int(parts[2], 16)
    return "", -1


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_bf16_model_tensors_are_views_of_the_file(tmp_path):
    path = write_synthetic(tmp_path / "c", SMALL)
    model = ge.load_checkpoint(path, dtype=torch.bfloat16)
    found = checkpoint.find_checkpoint(path)
    for key in ("embedding.weight", "block.1.attn.qkv.weight", "block.0.mlp.mlp1_weight.blocks"):
        tensor = model.state_dict()[key]
        where, offset = mapping_of(tensor)
        assert where == str(path / "model.safetensors"), key
        assert offset == found.headers[key]["file_offset"], key
    copied = ge.load_checkpoint(path, dtype=torch.bfloat16, mmap=False)
    assert mapping_of(copied.embedding.weight)[0] != str(path / "model.safetensors")


def test_writing_into_a_mapped_model_never_touches_the_file(tmp_path):
    path = write_synthetic(tmp_path / "c", SMALL)
    before = (path / "model.safetensors").read_bytes()
    model = ge.load_checkpoint(path, dtype=torch.bfloat16)
    with torch.no_grad():
        model.embedding.weight.add_(1.0)  # copy-on-write: private pages
        model.block[0].mlp.mlp1_weight.blocks.zero_()
    assert (path / "model.safetensors").read_bytes() == before
    again = ge.load_checkpoint(path, dtype=torch.bfloat16)
    assert not torch.equal(again.embedding.weight, model.embedding.weight)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
@pytest.mark.parametrize("layout", ["original", "hf"])
def test_reader_gives_one_ranks_experts_as_views_of_their_bytes(tmp_path, layout):
    path = write_synthetic(tmp_path / layout, SMALL, layout=layout, max_shard_bytes=300_000)
    reader = checkpoint.CheckpointReader(path)
    everything = read_all(path)
    mine = reader.experts(layer=1, experts=range(2, 5))
    for part, t in mine.items():
        name = f"block.1.mlp.{part}"
        key = name if layout == "original" else checkpoint.hf_key(name)
        full = everything[key]
        assert torch.equal(t, full[2:5]), part
        where, offset = mapping_of(t)
        row = full[0].numel() * full.element_size()
        assert where == str(reader.files.key_to_file[key])
        assert offset == reader.files.headers[key]["file_offset"] + 2 * row, part
    with pytest.raises(ValueError, match="experts must be a range"):
        reader.experts(layer=0, experts=range(5, 99))


def test_reader_refuses_a_nan_scale_in_its_own_experts_only(tmp_path):
    cfg = random_config(8)
    t = random_original_tensors(cfg, 8)
    t["block.0.mlp.mlp2_weight.scales"][3, 0, 0] = 255
    reader = checkpoint.CheckpointReader(write_original(tmp_path / "m", cfg, t))
    reader.experts(layer=0, experts=range(0, 3))  # not in these experts' bytes: fine
    with pytest.raises(CheckpointError, match=r"mlp2_weight\.scales.*255.*\(3, 0, 0\)"):
        reader.experts(layer=0, experts=range(2, 4))
