"""Hostile or damaged checkpoint files the reader used to mishandle, one test each.

Each input here once hung the reader (quadratic work on a header), crashed deep in Python or
torch with a message naming no file, or loaded a silently different model. Now each is a
CheckpointError (or FileNotFoundError) naming the file, the key and what was expected.
"""

import json
import time

import pytest
import torch
from independent import random_config, random_original_tensors, write_hf_sharded, write_original

import gptoss_edu as ge
from gptoss_edu.checkpoint import CheckpointError, CheckpointReader, find_checkpoint
from gptoss_edu.checkpoint.safetensors import MappedFile, read_header


def raw_file(path, header: bytes, data: bytes = b""):
    """A safetensors file from raw header bytes: 8-byte little-endian length, header, data."""
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# ------------------------------------------------------------------------- safetensors headers
def test_unclosed_string_of_escaped_quotes_is_refused_fast(tmp_path):
    # the depth pre-check retried a string match at every later quote: ~80 s for this 200 KB
    # header, hours for one of the 100 MB the format allows
    raw = b'{"a":"' + b'\\"' * 100_000
    f = raw_file(tmp_path / "x.safetensors", raw)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"x\.safetensors: corrupt safetensors header"):
        read_header(f)
    assert time.perf_counter() - start < 5


def test_thousands_of_huge_dims_are_refused_not_multiplied_out(tmp_path):
    # the product of 2000 dims of 2**62 has ~37,000 digits: quadratic to compute, and then
    # a ValueError from int -> str while formatting the message, naming no file
    h = {"a": entry("U8", [2**62] * 2000, 0, 1)}
    f = raw_file(tmp_path / "x.safetensors", json.dumps(h).encode(), b"x")
    with pytest.raises(CheckpointError, match=r"x\.safetensors.*'a'.*multiply to 2\*\*63 or more"):
        read_header(f)


def test_empty_tensor_with_huge_dims_is_refused_at_the_header(tmp_path):
    # 0 elements, so the byte count matched; torch then failed in MappedFile.tensor
    h = {"a": entry("U8", [0, 2**40, 2**40], 0, 0)}
    f = raw_file(tmp_path / "x.safetensors", json.dumps(h).encode())
    with pytest.raises(CheckpointError, match=r"'a'.*multiply to 2\*\*63 or more"):
        MappedFile(f).tensor("a")


def test_duplicate_key_is_refused_not_last_one_wins(tmp_path):
    # both entries tile the 4 bytes; json.loads kept the second (one float32, not 4 bytes)
    raw = (
        b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    )
    f = raw_file(tmp_path / "x.safetensors", raw, bytes(4))
    with pytest.raises(CheckpointError, match=r"x\.safetensors.*key 'a' appears twice"):
        read_header(f)


def test_int_literal_of_5000_digits_names_the_file(tmp_path):
    raw = b'{"a":{"dtype":"U8","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,0]}}'
    f = raw_file(tmp_path / "x.safetensors", raw)
    with pytest.raises(CheckpointError, match=r"x\.safetensors: corrupt safetensors header"):
        read_header(f)


def test_utf16_header_is_refused(tmp_path):
    # json.loads(bytes) guesses UTF-16/32; the format (and every other reader) says UTF-8
    raw = json.dumps({"a": entry("U8", [2], 0, 2)}).encode("utf-16")
    f = raw_file(tmp_path / "x.safetensors", raw, b"ab")
    with pytest.raises(CheckpointError, match=r"x\.safetensors.*'utf-8' codec"):
        read_header(f)


def test_rows_of_a_tensor_with_no_rows_is_empty_not_zerodivision(tmp_path):
    f = raw_file(tmp_path / "x.safetensors", json.dumps({"a": entry("U8", [0, 3], 0, 0)}).encode())
    assert MappedFile(f).tensor("a", rows=range(0, 0)).shape == (0, 3)


# ------------------------------------------------------------------------- index files
def _edit_index(path, change):
    index = path / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    change(data)
    index.write_text(json.dumps(data))


def test_index_with_an_int_of_5000_digits_names_the_index(hf_ckpt):
    path, _, _ = hf_ckpt
    index = path / "model.safetensors.index.json"
    index.write_text(index.read_text()[:-1] + ', "total_size": ' + "9" * 5000 + "}")
    with pytest.raises(CheckpointError, match="index.json: not a valid safetensors index"):
        find_checkpoint(path)


def test_index_naming_a_shard_in_a_subfolder_names_it_as_written(hf_ckpt):
    # the message said "names shard model-00001-of-00002.safetensors, which is missing",
    # a file that is right there
    path, _, _ = hf_ckpt

    def change(data):
        key = next(iter(data["weight_map"]))
        data["weight_map"][key] = "sub/" + data["weight_map"][key]

    _edit_index(path, change)
    with pytest.raises(FileNotFoundError, match=r"names shard sub/model-\d+-of-\d+\.safetensors"):
        find_checkpoint(path)


# ------------------------------------------------------------------------- tensors vs config
@pytest.fixture
def cfg_tensors():
    cfg = random_config(3)
    return cfg, random_original_tensors(cfg, 3)


def test_reader_refuses_expert_blocks_of_the_wrong_dtype(tmp_path, cfg_tensors):
    # CheckpointReader.experts handed back int8 blocks as if they were MXFP4 codes
    cfg, t = cfg_tensors
    key = "block.0.mlp.mlp1_weight.blocks"
    t[key] = t[key].view(torch.int8)
    reader = CheckpointReader(write_original(tmp_path / "m", cfg, t))
    with pytest.raises(CheckpointError, match=r"mlp1_weight\.blocks has dtype I8; expected uint8"):
        reader.experts(layer=0, experts=range(0, 2))


def test_reader_refuses_expert_blocks_of_the_wrong_last_dim(tmp_path, cfg_tensors):
    cfg, t = cfg_tensors
    key = "block.1.mlp.mlp2_weight.blocks"
    t[key] = t[key].reshape(*t[key].shape[:-2], -1, 8).contiguous()
    reader = CheckpointReader(write_hf_sharded(tmp_path / "h", cfg, t))
    with pytest.raises(CheckpointError, match=r"down_proj_blocks has shape .*8\); expected .*16\)"):
        reader.tensor("block.1.mlp.mlp2_weight.blocks")


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_float32_weight_past_bfloat16s_range_is_not_a_silent_inf(tmp_path, cfg_tensors, layout):
    # 3.4e38 is a finite float32 (the check passed) and Inf in bfloat16 (the model got it)
    cfg, t = cfg_tensors
    t["block.2.attn.out.weight"] = t["block.2.attn.out.weight"].float()
    t["block.2.attn.out.weight"][1, 2] = 3.4e38
    write = write_original if layout == "original" else write_hf_sharded
    path = write(tmp_path / layout, cfg, t)
    with pytest.raises(
        CheckpointError,
        match=r"attn\.out\.weight|o_proj\.weight",
    ) as e:
        ge.load_checkpoint(path, dtype=torch.bfloat16)
    assert "converted from torch.float32 to torch.bfloat16" in str(e.value)
    assert "first inf at index (1, 2)" in str(e.value)
    with pytest.warns(UserWarning, match="allow_nonfinite=True"):
        ge.load_checkpoint(path, dtype=torch.bfloat16, allow_nonfinite=True)
    model = ge.load_checkpoint(path, dtype=torch.float32)  # float32 holds it: fine
    assert model.block[2].attn.out.weight[1, 2].item() == pytest.approx(3.4e38)


def test_config_with_a_huge_number_literal_names_the_file(tmp_path):
    # Python refuses int literals over 4300 digits with a ValueError that names no file
    (tmp_path / "config.json").write_text('{"num_hidden_layers": ' + "9" * 5000 + "}")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        ge.ModelConfig.from_json(tmp_path)


@pytest.mark.parametrize("byte", [253, 254])
def test_scale_bytes_whose_weights_overflow_are_refused(tmp_path, cfg_tensors, byte):
    # E8M0 253 is 2^126: the E2M1 code 7 (6.0) times it is past float32's maximum, Inf
    assert torch.isinf(torch.tensor(6.0 * 2.0**126, dtype=torch.float64).float())
    cfg, t = cfg_tensors
    t["block.2.mlp.mlp2_weight.scales"][1, 2, 0] = byte
    path = write_original(tmp_path / "m", cfg, t)
    with pytest.raises(CheckpointError, match=r"mlp2_weight\.scales .*253 or 254.*\(1, 2, 0\)"):
        ge.load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"253 or 254"):
        CheckpointReader(path).experts(layer=2, experts=range(0, 2))
    t["block.2.mlp.mlp2_weight.scales"][1, 2, 0] = 252  # 6 * 2^125 is finite: loads
    ge.load_checkpoint(write_original(tmp_path / "ok", cfg, t))
