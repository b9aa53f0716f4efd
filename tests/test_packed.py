"""Packed MXFP4 experts (issue 5): the model that keeps the checkpoint's bytes computes the same
function as the one that decodes them, in both layouts, and saves them back unchanged.

Checkpoints are written by tests/independent.py (not by the package) and the dequantized model
is the one checked against Hugging Face transformers in test_parity_hf.py."""

import warnings

import pytest
import torch
from independent import (
    decode_mxfp4_f64,
    random_config,
    random_original_tensors,
    write_hf_sharded,
    write_original,
)
from safetensors import safe_open

import gptoss_edu as ge
from gptoss_edu.checkpoint import original_spec
from gptoss_edu.model import Recorder


def write(tmp_path, layout, seed):
    cfg = random_config(seed)
    t = random_original_tensors(cfg, seed)
    writer = write_original if layout == "original" else write_hf_sharded
    return writer(tmp_path / layout, cfg, t), cfg, t


@pytest.mark.parametrize("layout", ["original", "hf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_logits_equal_dequantized(tmp_path, layout, seed):
    path, cfg, _ = write(tmp_path, layout, seed)
    dense = ge.load_checkpoint(path, dtype=torch.float32, experts="dequantized")
    tokens = torch.randint(0, cfg["vocab_size"], (2, 3 * cfg["sliding_window"] + 1))
    with torch.no_grad():
        expected = dense(tokens)
    for backend in ("torch", "numba"):
        packed = ge.load_checkpoint(path, dtype=torch.float32, experts="mxfp4", backend=backend)
        assert isinstance(packed.block[0].mlp.mlp1_weight, ge.mxfp4.MXFP4Weight)
        with torch.no_grad():
            got = packed(tokens)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_packed_is_the_default_and_bf16_runs(tmp_path):
    path, cfg, _ = write(tmp_path, "original", 2)
    model = ge.load_checkpoint(path)  # bf16, packed
    mlp = model.block[0].mlp
    assert mlp.experts == "mxfp4" and mlp.mlp1_weight.blocks.dtype == torch.uint8
    assert model.block[0].attn.qkv.weight.dtype == torch.bfloat16
    assert mlp.mlp1_bias.dtype == torch.bfloat16 and mlp.mlp1_weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(torch.arange(10) % cfg["vocab_size"])
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_routing_and_expert_agree_across_modes(tmp_path):
    path, cfg, t = write(tmp_path, "original", 3)
    dense = ge.load_checkpoint(path, dtype=torch.float32, experts="dequantized")
    packed = ge.load_checkpoint(path, dtype=torch.float32)
    x = torch.randn(7, cfg["hidden_size"])
    md, mp = dense.block[1].mlp, packed.block[1].mlp
    with torch.no_grad():
        rd, rp = Recorder("router_logits", "routing"), Recorder("router_logits", "routing")
        yd, yp = md(x, recorder=rd), mp(x, recorder=rp)
        (ld,), ((idd, wd),) = rd["router_logits"], rd["routing"]
        (lp,), ((idp, wp),) = rp["router_logits"], rp["routing"]
        torch.testing.assert_close(yp, yd, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lp, ld)
        assert torch.equal(idp, idd) and idp.dtype == torch.int64
        torch.testing.assert_close(wp, wd)
        torch.testing.assert_close(wp.sum(-1), torch.ones(7))  # softmax over the k chosen
        for e in range(cfg["num_experts"]):
            torch.testing.assert_close(mp.expert(e, x), md.expert(e, x), rtol=1e-5, atol=1e-6)
    # reads decode to the model dtype, exactly the test's own float64 decoding
    w = decode_mxfp4_f64(t["block.1.mlp.mlp2_weight.blocks"], t["block.1.mlp.mlp2_weight.scales"])
    assert torch.equal(mp.mlp2_weight[2], w[2].float())
    assert torch.equal(mp.mlp2_weight.dequantize(), w.float())
    assert mp.mlp2_weight.data.dtype == torch.float32 and mp.mlp2_weight.shape == w.shape


def test_packed_expert_bytes_are_4_25_bits_per_weight(tmp_path):
    path, cfg, _ = write(tmp_path, "original", 0)
    packed = ge.load_checkpoint(path)
    E, H, I = cfg["num_experts"], cfg["hidden_size"], cfg["intermediate_size"]
    weights = cfg["num_hidden_layers"] * E * (2 * I * H + H * I)
    buffers = [b for n, b in packed.named_buffers() if n.endswith((".blocks", ".scales"))]
    nbytes = sum(b.numel() * b.element_size() for b in buffers)
    assert all(b.dtype == torch.uint8 for b in buffers)
    assert nbytes == weights * 17 // 32  # 16 bytes of codes + 1 scale per 32 weights
    assert nbytes / (2 * weights) == pytest.approx(4.25 / 16)
    dense = ge.load_checkpoint(path, experts="dequantized")  # bf16
    dense_bytes = sum(
        p.numel() * p.element_size() for n, p in dense.named_parameters() if n.endswith("_weight")
    )
    assert dense_bytes == 2 * weights
    assert not any(n.endswith("_weight") for n, _ in packed.named_parameters())


def test_state_dict_uses_checkpoint_names(tmp_path):
    path, cfg, _ = write(tmp_path, "original", 1)
    packed = ge.load_checkpoint(path)
    assert set(packed.state_dict()) == set(original_spec(packed.config))


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_save_load_round_trip_is_bit_exact(tmp_path, layout):
    path, cfg, t = write(tmp_path, "original", 4)
    packed = ge.load_checkpoint(path)
    out = ge.save_checkpoint(packed, tmp_path / f"saved-{layout}", layout=layout)
    blocks = "block.2.mlp.mlp1_weight.blocks"
    scales = "block.2.mlp.mlp2_weight.scales"
    if layout == "original":
        with safe_open(str(out / "model.safetensors"), "pt") as f:
            assert torch.equal(f.get_tensor(blocks), t[blocks])
            assert torch.equal(f.get_tensor(scales), t[scales])
    again = ge.load_checkpoint(out)
    for key, value in again.state_dict().items():
        assert torch.equal(value, packed.state_dict()[key]), key
    mlp = again.block[2].mlp
    assert torch.equal(mlp.mlp1_weight.blocks, t[blocks])
    assert torch.equal(mlp.mlp2_weight.scales, t[scales])


def test_backend_is_said_once_and_can_be_chosen(tmp_path, monkeypatch):
    path, cfg, _ = write(tmp_path, "original", 0)
    monkeypatch.setattr(ge.mxfp4, "_said_backend", set())
    model = ge.load_checkpoint(path, dtype=torch.float32, backend="torch")
    tokens = torch.arange(6)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        model(tokens)
        model(tokens)
    said = [str(w.message) for w in caught if "kernel back end" in str(w.message)]
    assert len(said) == 1 and "'torch'" in said[0]
    assert all(b.mlp.backend == "torch" for b in model.block)
    with pytest.raises(ValueError, match="backend"):
        ge.load_checkpoint(path, backend="fortran")
    with pytest.raises(ValueError, match="experts"):
        ge.load_checkpoint(path, experts="int4")


def test_packed_weight_follows_dtype_and_copy_quantizes():
    cfg = ge.ModelConfig.tiny().replace(num_hidden_layers=1)
    model = ge.GptOss(cfg, experts="mxfp4")
    w = model.block[0].mlp.mlp1_weight
    assert w.dtype == torch.float32
    model.to(torch.bfloat16)
    assert w.dtype == torch.bfloat16 and w[0].dtype == torch.bfloat16
    assert w.blocks.dtype == torch.uint8
    # copy_ rounds to MXFP4: a weight already on the grid comes back exactly
    on_grid = ge.mxfp4.dequantize(*ge.mxfp4.quantize(torch.randn(w.shape)), torch.float32)
    w.copy_(on_grid)
    assert torch.equal(w.dequantize(torch.float32), on_grid)
    with pytest.raises(ValueError, match="shape"):
        w.copy_(on_grid[:, 1:])
