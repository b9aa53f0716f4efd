"""The two published layouts of a gpt-oss checkpoint and the ONE name map between them (chapter 12).

- OpenAI "original": `block.3.attn.qkv.weight`, ... one to one with `GptOss`'s parameters.
- Hugging Face: `model.layers.3.self_attn.q_proj.weight`, ... with q, k, v stored apart.

Everything that translates names (the loader, the saver, `hf_spec`, the exercises) uses
`LAYER_NAMES` / `GLOBAL_NAMES` below; nothing else spells an HF key.
"""

from __future__ import annotations

import re

import torch

from ..config import ModelConfig

BF16, U8 = torch.bfloat16, torch.uint8

# (HF suffix under model.layers.N., original suffix under block.N.); q/k/v are split, below
LAYER_NAMES = (
    ("input_layernorm.weight", "attn.norm.scale"),
    ("self_attn.sinks", "attn.sinks"),
    ("self_attn.o_proj.weight", "attn.out.weight"),
    ("self_attn.o_proj.bias", "attn.out.bias"),
    ("post_attention_layernorm.weight", "mlp.norm.scale"),
    ("mlp.router.weight", "mlp.gate.weight"),
    ("mlp.router.bias", "mlp.gate.bias"),
    ("mlp.experts.gate_up_proj_blocks", "mlp.mlp1_weight.blocks"),
    ("mlp.experts.gate_up_proj_scales", "mlp.mlp1_weight.scales"),
    ("mlp.experts.gate_up_proj_bias", "mlp.mlp1_bias"),
    ("mlp.experts.down_proj_blocks", "mlp.mlp2_weight.blocks"),
    ("mlp.experts.down_proj_scales", "mlp.mlp2_weight.scales"),
    ("mlp.experts.down_proj_bias", "mlp.mlp2_bias"),
)
GLOBAL_NAMES = (  # (HF key, original key)
    ("model.embed_tokens.weight", "embedding.weight"),
    ("model.norm.weight", "norm.scale"),
    ("lm_head.weight", "unembedding.weight"),
)
QKV = ("q", "k", "v")  # HF's three projections, concatenated in this order into attn.qkv

_ORIG_LAYER = {o: h for h, o in LAYER_NAMES}
_ORIG_GLOBAL = {o: h for h, o in GLOBAL_NAMES}
_LAYER_KEY = re.compile(r"^(?:block|model\.layers)\.(\d+)\.")


def _hf_names(n: int) -> dict[str, str]:
    """HF key -> original key for layer n (q/k/v are handled separately)."""
    o, h = f"block.{n}.", f"model.layers.{n}."
    return {h + hf: o + orig for hf, orig in LAYER_NAMES}


def hf_key(original_key: str) -> str:
    """The HF key holding an original key's tensor (attn.qkv.* has three: see `hf_qkv_keys`)."""
    if original_key in _ORIG_GLOBAL:
        return _ORIG_GLOBAL[original_key]
    m = re.match(r"^block\.(\d+)\.(.*)$", original_key)
    if m and m.group(2) in _ORIG_LAYER:
        return f"model.layers.{m.group(1)}.{_ORIG_LAYER[m.group(2)]}"
    raise KeyError(f"{original_key!r} has no single Hugging Face key (attn.qkv is split in three)")


def hf_qkv_keys(layer: int, kind: str) -> list[str]:
    """The HF q/k/v keys whose concatenation is block.{layer}.attn.qkv.{kind} (weight|bias)."""
    return [f"model.layers.{layer}.self_attn.{x}_proj.{kind}" for x in QKV]


def layer_indices(keys) -> set[int]:
    """The layer numbers N appearing in keys `block.N.*` / `model.layers.N.*` (cheap: no config)."""
    out = set()
    for k in keys:
        m = _LAYER_KEY.match(k)
        if m:
            out.add(int(m.group(1)))
    return out


def original_spec(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every key of the OpenAI layout with its shape and dtype, in file order."""
    c = config
    E, H, I, V = c.num_experts, c.hidden_size, c.intermediate_size, c.vocab_size
    spec = {"embedding.weight": ((V, H), BF16)}
    for n in range(c.num_hidden_layers):
        p = f"block.{n}."
        spec[p + "attn.norm.scale"] = ((H,), BF16)
        spec[p + "attn.qkv.weight"] = ((c.qkv_dim, H), BF16)
        spec[p + "attn.qkv.bias"] = ((c.qkv_dim,), BF16)
        spec[p + "attn.sinks"] = ((c.num_attention_heads,), BF16)
        spec[p + "attn.out.weight"] = ((H, c.q_dim), BF16)
        spec[p + "attn.out.bias"] = ((H,), BF16)
        spec[p + "mlp.norm.scale"] = ((H,), BF16)
        spec[p + "mlp.gate.weight"] = ((E, H), BF16)
        spec[p + "mlp.gate.bias"] = ((E,), BF16)
        spec[p + "mlp.mlp1_weight.blocks"] = ((E, 2 * I, H // 32, 16), U8)
        spec[p + "mlp.mlp1_weight.scales"] = ((E, 2 * I, H // 32), U8)
        spec[p + "mlp.mlp1_bias"] = ((E, 2 * I), BF16)
        spec[p + "mlp.mlp2_weight.blocks"] = ((E, H, I // 32, 16), U8)
        spec[p + "mlp.mlp2_weight.scales"] = ((E, H, I // 32), U8)
        spec[p + "mlp.mlp2_bias"] = ((E, H), BF16)
    spec["norm.scale"] = ((H,), BF16)
    spec["unembedding.weight"] = ((V, H), BF16)
    return spec


def hf_spec(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every key of the Hugging Face layout (MXFP4 experts) with its shape and dtype."""
    c = config
    orig = original_spec(c)
    spec = {hf_key("embedding.weight"): orig["embedding.weight"]}
    for n in range(c.num_hidden_layers):
        for x, rows in zip(QKV, (c.q_dim, c.kv_dim, c.kv_dim)):
            spec[f"model.layers.{n}.self_attn.{x}_proj.weight"] = ((rows, c.hidden_size), BF16)
            spec[f"model.layers.{n}.self_attn.{x}_proj.bias"] = ((rows,), BF16)
        for hf, o in _hf_names(n).items():
            spec[hf] = orig[o]
    spec[hf_key("norm.scale")] = orig["norm.scale"]
    spec[hf_key("unembedding.weight")] = orig["unembedding.weight"]
    return spec


def spec_shape_out(config: ModelConfig, param: str) -> tuple[int, ...]:
    """Logical (E, out, in) shape of a dense expert weight block.N.mlp.mlp{1,2}_weight."""
    E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
    return (E, 2 * I, H) if param.endswith("mlp1_weight") else (E, H, I)


__all__ = [
    "GLOBAL_NAMES",
    "LAYER_NAMES",
    "QKV",
    "hf_key",
    "hf_qkv_keys",
    "hf_spec",
    "layer_indices",
    "original_spec",
    "spec_shape_out",
]
