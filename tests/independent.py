"""Test helpers written independently of the package: a float64 MXFP4 decoder and writers of
random gpt-oss checkpoints in both layouts, straight from SPEC.md's key tables."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

FP4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def decode_mxfp4_f64(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(..., G, 16) uint8 codes + (..., G) uint8 scales -> (..., G*32) float64."""
    lut = torch.tensor(FP4, dtype=torch.float64)
    lo = lut[(blocks & 0x0F).long()]
    hi = lut[(blocks >> 4).long()]
    vals = torch.stack([lo, hi], dim=-1).reshape(
        *blocks.shape[:-1], 32
    )  # element 2j low, 2j+1 high
    exp = scales.to(torch.float64) - 127
    vals = vals * torch.pow(2.0, exp)[..., None]
    vals[scales == 255] = float("nan")
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def random_config(seed: int) -> dict:
    """A small OpenAI-style config.json dict (16 keys) that exercises every feature."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda xs: xs[int(torch.randint(len(xs), (1,), generator=g))]
    heads_kv = pick([1, 2])
    return {
        "num_hidden_layers": pick([3, 4]),
        "num_experts": pick([4, 6, 8]),
        "experts_per_token": pick([2, 3]),
        "vocab_size": pick([97, 160]),
        "hidden_size": pick([64, 96]),
        "intermediate_size": pick([32, 64]),
        "swiglu_limit": 7.0,
        "head_dim": 16,
        "num_attention_heads": heads_kv * pick([2, 4]),
        "num_key_value_heads": heads_kv,
        "sliding_window": pick([4, 8]),
        "initial_context_length": 4096,
        "rope_theta": pick([150000.0, 10000.0]),
        "rope_scaling_factor": 32.0,
        "rope_ntk_alpha": 1.0,
        "rope_ntk_beta": 32.0,
    }


def random_original_tensors(cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in the OpenAI layout, bf16 + MXFP4 experts, with non-zero sinks and biases."""
    g = torch.Generator().manual_seed(seed)
    H, E, I, V = cfg["hidden_size"], cfg["num_experts"], cfg["intermediate_size"], cfg["vocab_size"]
    nq, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    qkv = (nq + 2 * nkv) * d

    def normal(*shape, std=0.05, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(torch.bfloat16)

    def codes(*shape):
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)

    def scales(*shape):  # 2^-7 .. 2^-4: expert weights of size ~0.01..0.4
        return torch.randint(120, 124, shape, generator=g, dtype=torch.uint8)

    t = {"embedding.weight": normal(V, H, std=1.0)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"block.{n}."
        t[p + "attn.norm.scale"] = normal(H, std=0.1, mean=1.0)
        t[p + "attn.qkv.weight"] = normal(qkv, H, std=0.15)
        t[p + "attn.qkv.bias"] = normal(qkv, std=0.1)
        t[p + "attn.sinks"] = normal(nq, std=1.0)
        t[p + "attn.out.weight"] = normal(H, nq * d, std=0.05)
        t[p + "attn.out.bias"] = normal(H, std=0.05)
        t[p + "mlp.norm.scale"] = normal(H, std=0.1, mean=1.0)
        t[p + "mlp.gate.weight"] = normal(E, H, std=0.2)
        t[p + "mlp.gate.bias"] = normal(E, std=0.2)
        t[p + "mlp.mlp1_weight.blocks"] = codes(E, 2 * I, H // 32, 16)
        t[p + "mlp.mlp1_weight.scales"] = scales(E, 2 * I, H // 32)
        t[p + "mlp.mlp1_bias"] = normal(E, 2 * I, std=0.1)
        t[p + "mlp.mlp2_weight.blocks"] = codes(E, H, I // 32, 16)
        t[p + "mlp.mlp2_weight.scales"] = scales(E, H, I // 32)
        t[p + "mlp.mlp2_bias"] = normal(E, H, std=0.1)
    t["norm.scale"] = normal(H, std=0.1, mean=1.0)
    t["unembedding.weight"] = normal(V, H, std=0.1)
    return t


def write_original(path: Path, cfg: dict, tensors: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def hf_config_dict(cfg: dict) -> dict:
    return {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_local_experts": cfg["num_experts"],
        "num_experts_per_tok": cfg["experts_per_token"],
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "head_dim": cfg["head_dim"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "sliding_window": cfg["sliding_window"],
        "swiglu_limit": cfg["swiglu_limit"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": cfg["rope_scaling_factor"],
            "beta_fast": cfg["rope_ntk_beta"],
            "beta_slow": cfg["rope_ntk_alpha"],
            "original_max_position_embeddings": cfg["initial_context_length"],
            "truncate": False,
        },
        "max_position_embeddings": int(cfg["initial_context_length"] * cfg["rope_scaling_factor"]),
        "layer_types": [
            "sliding_attention" if i % 2 == 0 else "full_attention"
            for i in range(cfg["num_hidden_layers"])
        ],
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    }


def to_hf_tensors(cfg: dict, t: dict) -> dict[str, torch.Tensor]:
    """Rename/split the original layout into the Hugging Face layout (MXFP4 experts kept)."""
    nq, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    out = {"model.embed_tokens.weight": t["embedding.weight"]}
    for n in range(cfg["num_hidden_layers"]):
        o, h = f"block.{n}.", f"model.layers.{n}."
        w, b = t[o + "attn.qkv.weight"], t[o + "attn.qkv.bias"]
        q_end, k_end = nq * d, nq * d + nkv * d
        for name, sl in (
            ("q", slice(0, q_end)),
            ("k", slice(q_end, k_end)),
            ("v", slice(k_end, None)),
        ):
            out[h + f"self_attn.{name}_proj.weight"] = w[sl].clone()
            out[h + f"self_attn.{name}_proj.bias"] = b[sl].clone()
        out[h + "self_attn.o_proj.weight"] = t[o + "attn.out.weight"]
        out[h + "self_attn.o_proj.bias"] = t[o + "attn.out.bias"]
        out[h + "self_attn.sinks"] = t[o + "attn.sinks"]
        out[h + "input_layernorm.weight"] = t[o + "attn.norm.scale"]
        out[h + "post_attention_layernorm.weight"] = t[o + "mlp.norm.scale"]
        out[h + "mlp.router.weight"] = t[o + "mlp.gate.weight"]
        out[h + "mlp.router.bias"] = t[o + "mlp.gate.bias"]
        for hf, orig in (("gate_up_proj", "mlp1"), ("down_proj", "mlp2")):
            out[h + f"mlp.experts.{hf}_blocks"] = t[o + f"mlp.{orig}_weight.blocks"]
            out[h + f"mlp.experts.{hf}_scales"] = t[o + f"mlp.{orig}_weight.scales"]
            out[h + f"mlp.experts.{hf}_bias"] = t[o + f"mlp.{orig}_bias"]
    out["model.norm.weight"] = t["norm.scale"]
    out["lm_head.weight"] = t["unembedding.weight"]
    return out


def write_hf_sharded(path: Path, cfg: dict, tensors: dict, shards: int = 2) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    hf = to_hf_tensors(cfg, tensors)
    keys = list(hf)
    per = -(-len(keys) // shards)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: hf[k] for k in keys[i * per : (i + 1) * per]}
        save_file(part, str(path / name))
        weight_map.update({k: name for k in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps(hf_config_dict(cfg)))
    return path
