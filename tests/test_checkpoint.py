import json

import pytest
import torch
from independent import (
    decode_mxfp4_f64,
    write_hf_sharded,
    write_original,
)
from safetensors.torch import save_file

import gptoss_edu as ge
from gptoss_edu.checkpoint import CheckpointError, find_checkpoint, hf_spec, original_spec


def test_experts_decoded_on_load_exactly(ckpt):
    path, cfg, t = ckpt
    model = ge.load_checkpoint(write_original(path, cfg, t), dtype=torch.float32)
    expected = decode_mxfp4_f64(
        t["block.1.mlp.mlp1_weight.blocks"], t["block.1.mlp.mlp1_weight.scales"]
    )
    torch.testing.assert_close(
        model.block[1].mlp.mlp1_weight.data, expected.float(), rtol=0, atol=0
    )
    assert model.block[0].attn.qkv.weight.dtype == torch.float32
    bf = ge.load_checkpoint(path, dtype=torch.bfloat16)
    assert bf.block[0].attn.qkv.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_save_then_load_round_trip(tmp_path, ckpt, layout):
    path, cfg, t = ckpt
    model = ge.load_checkpoint(write_original(path, cfg, t), dtype=torch.float32)
    out = ge.save_checkpoint(model, tmp_path / layout, layout=layout, max_shard_bytes=20_000)
    found = find_checkpoint(out)
    assert found.layout == layout
    if layout == "hf":
        assert len(found.files) > 1 and (out / "model.safetensors.index.json").exists()
    again = ge.load_checkpoint(out, dtype=torch.float32)
    tokens = torch.randint(0, cfg["vocab_size"], (2, 15))
    with torch.no_grad():
        # the experts were already on the MXFP4 grid, so re-quantizing them is exact
        torch.testing.assert_close(again(tokens), model(tokens))


def test_refuses_to_overwrite(tmp_path, ckpt):
    path, cfg, t = ckpt
    model = ge.load_checkpoint(write_original(path, cfg, t))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ge.save_checkpoint(model, path)


def test_missing_key(ckpt):
    path, cfg, t = ckpt
    del t["block.2.attn.sinks"]
    with pytest.raises(CheckpointError, match=r"missing.*block\.2\.attn\.sinks"):
        ge.load_checkpoint(write_original(path, cfg, t))


def test_wrong_shape_names_key_and_shapes(ckpt):
    path, cfg, t = ckpt
    key = "block.1.mlp.mlp1_weight.scales"
    t[key] = t[key][..., :-1].contiguous()
    with pytest.raises(CheckpointError, match=r"block\.1\.mlp\.mlp1_weight\.scales has shape"):
        ge.load_checkpoint(write_original(path, cfg, t))


def test_wrong_dtype(ckpt):
    path, cfg, t = ckpt
    t["block.0.mlp.mlp2_weight.blocks"] = t["block.0.mlp.mlp2_weight.blocks"].to(torch.int32)
    with pytest.raises(CheckpointError, match="dtype"):
        ge.load_checkpoint(write_original(path, cfg, t))


def test_truncated_file(ckpt):
    path, cfg, t = ckpt
    write_original(path, cfg, t)
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ge.load_checkpoint(path)
    f.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        ge.load_checkpoint(path)


def test_config_contradicts_weights(ckpt):
    path, cfg, t = ckpt
    write_original(path, cfg, t)
    (path / "config.json").write_text(json.dumps(dict(cfg, hidden_size=cfg["hidden_size"] + 32)))
    with pytest.raises(CheckpointError, match="hidden_size"):
        ge.load_checkpoint(path)
    (path / "config.json").write_text(
        json.dumps(dict(cfg, num_hidden_layers=cfg["num_hidden_layers"] - 1))
    )
    with pytest.raises(CheckpointError, match=r"num_hidden_layers is 2.*hold layers 0\.\.2 \(3\)"):
        ge.load_checkpoint(path)


def test_nan_scale_is_refused(ckpt):
    path, cfg, t = ckpt
    t["block.0.mlp.mlp1_weight.scales"][0, 0, 0] = 255
    with pytest.raises(CheckpointError, match="255"):
        ge.load_checkpoint(write_original(path, cfg, t))


def test_no_checkpoint_and_missing_config(tmp_path, ckpt):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ge.load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no gpt-oss checkpoint"):
        ge.load_checkpoint(tmp_path / "empty")
    path, cfg, t = ckpt
    write_original(path, cfg, t)
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ge.load_checkpoint(path)


def test_unknown_keys_layout(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    save_file({"foo": torch.zeros(2)}, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="neither gpt-oss layout"):
        ge.load_checkpoint(d)


def test_repo_root_with_original_subfolder(tmp_path, ckpt):
    _, cfg, t = ckpt
    write_original(tmp_path / "repo" / "original", cfg, t)
    assert find_checkpoint(tmp_path / "repo").layout == "original"
    write_hf_sharded(tmp_path / "repo", cfg, t)
    assert find_checkpoint(tmp_path / "repo").layout == "hf"  # the root's own files win


def test_spec_matches_published_sizes():
    """SPEC.md: the 20b checkpoint is 13,761,264,768 bytes of tensors; keys per layout."""
    cfg = ge.ModelConfig.gpt_oss_20b()
    spec = original_spec(cfg)
    nbytes = sum(torch.Size(s).numel() * (1 if d == torch.uint8 else 2) for s, d in spec.values())
    assert nbytes == 13_761_264_768 == ge.count_parameters(cfg).checkpoint_bytes
    assert spec["block.0.mlp.mlp1_weight.blocks"][0] == (32, 5760, 90, 16)
    assert spec["block.23.attn.qkv.weight"][0] == (5120, 2880)
    assert len(hf_spec(cfg)) == len(spec) + 4 * 24  # qkv split into 3 weights + 3 biases


# ---- property-based tests of the safetensors header parser (fixed, small budget) -------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gptoss_edu.checkpoint.safetensors import DTYPES, parse_header  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200), size=st.integers(0, 10**6))
def test_random_bytes_are_accepted_or_a_checkpoint_error(raw, size):
    try:
        parse_header(raw, size, "f")
    except CheckpointError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    header=st.dictionaries(st.text(max_size=6), _json_values, max_size=5), size=st.integers(0, 99)
)
def test_random_json_headers_are_accepted_or_a_checkpoint_error(header, size):
    raw = json.dumps(header).encode()
    try:
        out = parse_header(raw, size, "f")
    except CheckpointError:
        return
    # whatever is accepted tiles [0, size) exactly with consistent byte sizes
    spans = sorted(tuple(h["data_offsets"]) for h in out.values())
    assert sum(e - b for b, e in spans) == size
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


@st.composite
def valid_headers(draw):
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=n, max_size=n, unique=True))
    header, offset = {}, 0
    for name in names:
        if name == "__metadata__":
            continue
        dtype = draw(st.sampled_from(sorted(DTYPES)))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        nbytes = DTYPES[dtype].itemsize * int(torch.Size(shape).numel())
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return header, offset


@settings(max_examples=100, deadline=None)
@given(valid=valid_headers(), data=st.data())
def test_valid_headers_parse_and_any_broken_offset_is_refused(valid, data):
    header, size = valid
    assert parse_header(json.dumps(header).encode(), size, "f") == header
    if not header:
        return
    key = data.draw(st.sampled_from(sorted(header)))
    which = data.draw(st.integers(0, 1))
    delta = data.draw(st.integers(-3, 3).filter(bool))
    broken = json.loads(json.dumps(header))
    broken[key]["data_offsets"][which] += delta
    with pytest.raises(CheckpointError):
        parse_header(json.dumps(broken).encode(), size, "f")
