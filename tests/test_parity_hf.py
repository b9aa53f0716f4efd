"""Parity with an independent implementation: Hugging Face transformers' GptOss.

Random tiny checkpoints are written by tests/independent.py (not by save_checkpoint), loaded
through load_checkpoint in both layouts, and compared with transformers' model built from the
same tensors (experts decoded by the test's own float64 MXFP4 decoder)."""

import sys
import types

import pytest
import torch
from independent import (
    decode_mxfp4_f64,
    hf_config_dict,
    random_config,
    random_original_tensors,
    write_hf_sharded,
    write_original,
)

import gptoss_edu as ge

transformers = pytest.importorskip("transformers")
from gptoss_edu import hf as ge_hf  # noqa: E402
from gptoss_edu.hf import hf_config, transformers_version  # noqa: E402


def reference_config(cfg: dict):
    """transformers' own reading of the checkpoint's HF config.json (written by independent.py),
    the path a real gpt-oss checkpoint from the Hub takes, on every transformers version."""
    from transformers import GptOssConfig

    hc = GptOssConfig.from_dict(hf_config_dict(cfg))
    hc._attn_implementation = "eager"
    return hc


def hf_model(cfg: dict, t: dict, hc=None):
    """transformers' GptOssForCausalLM on the tensors `t` (original layout), experts decoded by
    the test's own float64 MXFP4 decoder; its config is `reference_config(cfg)` unless given."""
    from transformers import GptOssForCausalLM

    hc = reference_config(cfg) if hc is None else hc
    model = GptOssForCausalLM(hc).float().eval()
    nq, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    f = lambda x: x.float()
    sd = {"model.embed_tokens.weight": f(t["embedding.weight"])}
    for n in range(cfg["num_hidden_layers"]):
        o, h = f"block.{n}.", f"model.layers.{n}."
        w, b = f(t[o + "attn.qkv.weight"]), f(t[o + "attn.qkv.bias"])
        qe, ke = nq * d, (nq + nkv) * d
        sd[h + "self_attn.q_proj.weight"], sd[h + "self_attn.q_proj.bias"] = w[:qe], b[:qe]
        sd[h + "self_attn.k_proj.weight"], sd[h + "self_attn.k_proj.bias"] = w[qe:ke], b[qe:ke]
        sd[h + "self_attn.v_proj.weight"], sd[h + "self_attn.v_proj.bias"] = w[ke:], b[ke:]
        sd[h + "self_attn.o_proj.weight"] = f(t[o + "attn.out.weight"])
        sd[h + "self_attn.o_proj.bias"] = f(t[o + "attn.out.bias"])
        sd[h + "self_attn.sinks"] = f(t[o + "attn.sinks"])
        sd[h + "input_layernorm.weight"] = f(t[o + "attn.norm.scale"])
        sd[h + "post_attention_layernorm.weight"] = f(t[o + "mlp.norm.scale"])
        sd[h + "mlp.router.weight"] = f(t[o + "mlp.gate.weight"])
        sd[h + "mlp.router.bias"] = f(t[o + "mlp.gate.bias"])
        w1 = decode_mxfp4_f64(t[o + "mlp.mlp1_weight.blocks"], t[o + "mlp.mlp1_weight.scales"])
        w2 = decode_mxfp4_f64(t[o + "mlp.mlp2_weight.blocks"], t[o + "mlp.mlp2_weight.scales"])
        sd[h + "mlp.experts.gate_up_proj"] = w1.transpose(1, 2).float()  # (E, H, 2I)
        sd[h + "mlp.experts.gate_up_proj_bias"] = f(t[o + "mlp.mlp1_bias"])
        sd[h + "mlp.experts.down_proj"] = w2.transpose(1, 2).float()  # (E, I, H)
        sd[h + "mlp.experts.down_proj_bias"] = f(t[o + "mlp.mlp2_bias"])
    sd["model.norm.weight"] = f(t["norm.scale"])
    sd["lm_head.weight"] = f(t["unembedding.weight"])
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert not [k for k in missing if "rotary" not in k], missing
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logits_match_transformers_both_layouts(tmp_path, seed):
    cfg = random_config(seed)
    tensors = random_original_tensors(cfg, seed)
    reference = hf_model(cfg, tensors)
    T = cfg["sliding_window"] * 3 + 5  # longer than the window
    tokens = torch.randint(
        0, cfg["vocab_size"], (2, T), generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        expected = reference(tokens).logits  # (2, T, V)

    orig = ge.load_checkpoint(write_original(tmp_path / "orig", cfg, tensors), dtype=torch.float32)
    hf = ge.load_checkpoint(write_hf_sharded(tmp_path / "hf", cfg, tensors), dtype=torch.float32)
    assert orig.checkpoint_layout == "original" and hf.checkpoint_layout == "hf"
    with torch.no_grad():
        for model in (orig, hf):
            got = model(tokens)
            assert got.shape == expected.shape
            assert rel_err(got, expected) < 1e-4
            # per position too, so a wrong sliding mask on late tokens cannot hide in the norm
            per_pos = (got - expected).norm(dim=-1) / expected.norm(dim=-1)
            assert float(per_pos.max()) < 1e-4
            # unbatched input gives the same
            torch.testing.assert_close(model(tokens[1]), got[1], rtol=1e-5, atol=1e-5)


def test_parity_is_sensitive_to_a_wrong_transpose(tmp_path):
    """mlp2 is square (H == I here): a transposed mlp2 raises no shape error, so values must
    catch it. Guard that the comparison above is able to fail."""
    cfg = dict(random_config(0), hidden_size=64, intermediate_size=64)
    tensors = random_original_tensors(cfg, 0)
    reference = hf_model(cfg, tensors)
    model = ge.load_checkpoint(write_original(tmp_path / "o", cfg, tensors), dtype=torch.float32)
    tokens = torch.randint(0, cfg["vocab_size"], (20,))
    with torch.no_grad():
        for block in model.block:
            block.mlp.mlp2_weight.copy_(block.mlp.mlp2_weight.transpose(1, 2).clone())
        assert rel_err(model(tokens), reference(tokens[None]).logits[0]) > 1e-3


def short_context_config(seed: int) -> dict:
    """A random config whose original context (256) is shorter than the test sequence, with a
    non-default rope_theta, so that every YaRN setting changes the logits."""
    return dict(
        random_config(seed), initial_context_length=256, rope_scaling_factor=4.0, rope_theta=1e4
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_hf_config_matches_transformers_reading_the_checkpoint_config(tmp_path, seed):
    """gptoss_edu.hf.hf_config (used by chapter 7) builds the same transformers model as
    transformers' own reading of config.json, on the installed transformers version."""
    cfg = short_context_config(seed)
    tensors = random_original_tensors(cfg, seed)
    ours_cfg = ge.ModelConfig.from_dict(cfg)
    built = hf_model(cfg, tensors, hc=hf_config(ours_cfg))
    reference = hf_model(cfg, tensors)
    tokens = torch.randint(0, cfg["vocab_size"], (1, 300))  # past the original context
    with torch.no_grad():
        expected = reference(tokens).logits
        torch.testing.assert_close(built(tokens).logits, expected, rtol=1e-6, atol=1e-6)
        # and our model agrees with both at this short context too
        model = ge.load_checkpoint(
            write_original(tmp_path / "o", cfg, tensors), dtype=torch.float32
        )
        assert rel_err(model(tokens[0]), expected[0]) < 1e-4
        # the comparison can fail: a different YaRN factor or theta moves the logits
        for change in ({"rope_scaling_factor": 8.0}, {"rope_theta": 150000.0}):
            other = hf_model(cfg, tensors, hc=hf_config(ours_cfg.replace(**change)))
            assert rel_err(other(tokens).logits, expected) > 1e-3, change


def test_hf_config_refuses_what_the_installed_transformers_cannot_express():
    cfg = ge.ModelConfig.tiny().replace(swiglu_limit=5.0)
    with pytest.raises(TypeError, match="ModelConfig.from_dict"):
        hf_config(random_config(0))
    if transformers_version() >= (5, 0):
        assert hf_config(cfg).swiglu_limit == 5.0
    else:
        with pytest.raises(ValueError, match="swiglu_limit=5.0.*hard-codes"):
            hf_config(cfg)


def test_transformers_problem_names_the_version(monkeypatch):
    assert ge_hf.transformers_problem() is None  # installed and new enough here
    old = types.ModuleType("transformers")  # a stand-in for an old Colab image's transformers
    old.__version__ = "4.54.1"
    monkeypatch.setitem(sys.modules, "transformers", old)
    problem = ge_hf.transformers_problem()
    assert "4.54.1" in problem and "4.55" in problem and "pip install -U transformers" in problem
    with pytest.raises(ImportError, match="has no GptOss"):
        hf_config(ge.ModelConfig.tiny())
