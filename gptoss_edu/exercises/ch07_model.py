"""Checkers for chapter 7's exercises (exercises/07_whole_model.ipynb): the residual block, the
whole forward pass, the layer types, the parameter count and the checkpoint's size.

    ge.exercises.check_model_forward(my_forward)
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..params import count_parameters
from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_block_forward",
    "check_model_forward",
    "check_layer_types",
    "check_total_parameters",
    "check_checkpoint_bytes",
    "check_my_gptoss",
]


def _small_model():
    """A 2-layer random gpt-oss with weights large enough that every part changes the output."""
    from ..model.transformer import GptOss

    cfg = ModelConfig.tiny().replace(num_hidden_layers=2, vocab_size=256, sliding_window=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = GptOss(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.scale"):
                    p.uniform_(0.5, 1.5)
                else:
                    p.normal_(std=0.1)
    return model


@Checker("check_block_forward")
def check_block_forward(fn):
    """fn(block, x (B, T, H), positions (T,)) -> (B, T, H): x + attention, then + MoE."""
    model = _small_model()
    block = model.block[1]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 9, model.config.hidden_size, generator=g)
    pos = torch.arange(9)
    with torch.no_grad():
        got = fn(block, x.clone(), pos)
        a = block.attn(x, pos)
        expected = x + a + block.mlp(x + a)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            if not torch.allclose(got, expected, atol=1e-4):
                wrong = {
                    "parallel residual: the MoE must read the stream AFTER the attention's update "
                    "(x = x + attn(x); then x = x + mlp(x))": x + a + block.mlp(x),
                    "no residual connections: add each block's output to x": block.mlp(a),
                    "the MoE's residual is missing: return h + mlp(h), not mlp(h)": block.mlp(
                        x + a
                    ),
                    "the attention's residual is missing: h = x + attn(x)": a + block.mlp(a),
                    "the MoE is missing: after h = x + attn(x), return h + mlp(h)": x + a,
                }
                for message, value in wrong.items():
                    if torch.allclose(got, value, atol=1e-4):
                        raise ExerciseFailure(message)
    expect_close(got, expected, "block output", rtol=1e-4, atol=1e-4)
    return "x + attn(x), then + mlp(...)"


@Checker("check_model_forward")
def check_model_forward(fn):
    """fn(model, tokens (T,)) -> logits (T, V) using model.embedding, .block, .norm, .unembedding."""
    model = _small_model()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, model.config.vocab_size, (11,), generator=g)
    with torch.no_grad():
        got = fn(model, tokens.clone())
        expected = model(tokens)
        if isinstance(got, torch.Tensor):
            if got.dim() == 3 and got.shape[0] == 1:
                raise ExerciseFailure(
                    f"shape {tuple(got.shape)}: drop the batch axis you added, return (T, V)"
                )
            if got.shape[-1] == model.config.hidden_size:
                raise ExerciseFailure(
                    "the last axis is the hidden size: apply the final norm and the unembedding"
                )
            if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-4):
                x = model.embedding(tokens)[None]
                pos = torch.arange(len(tokens))
                for block in model.block:
                    x = block(x, pos)
                if torch.allclose(got, model.unembedding(x)[0], atol=1e-4):
                    raise ExerciseFailure(
                        "the final norm is missing: logits = unembedding(norm(x))"
                    )
    expect_close(got, expected, "logits", rtol=1e-4, atol=1e-4)
    return "embedding -> blocks -> norm -> unembedding"


@Checker("check_layer_types")
def check_layer_types(fn):
    """fn(config) -> list of "sliding_attention" / "full_attention", one per layer."""
    for c in (ModelConfig.gpt_oss_20b(), ModelConfig.gpt_oss_120b(), ModelConfig.tiny()):
        got = fn(c)
        expected = c.layer_types
        if not isinstance(got, list | tuple):
            raise ExerciseFailure(f"return a list of strings; got {type(got).__name__}")
        if len(got) != len(expected):
            raise ExerciseFailure(
                f"{len(got)} entries; expected one per layer, {c.num_hidden_layers}"
            )
        if list(got) == expected:
            continue
        flipped = ["full_attention" if t == "sliding_attention" else "sliding_attention"
                   for t in expected]  # fmt: skip
        if list(got) == flipped:
            raise ExerciseFailure(
                "sliding and full are swapped: layer 0 (and every even layer) uses the sliding "
                "window"
            )
        bad = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
        raise ExerciseFailure(f"layer {bad}: got {got[bad]!r}; expected {expected[bad]!r}")
    return "even layers slide, odd layers see everything"


def _parts(c):
    H, I, E, V, L = (c.hidden_size, c.intermediate_size, c.num_experts, c.vocab_size,
                     c.num_hidden_layers)  # fmt: skip
    return dict(
        V=V,
        H=H,
        L=L,
        norms=(2 * L + 1) * H,
        sinks=L * c.num_attention_heads,
        attn_bias=L * (c.qkv_dim + H),
        router_bias=L * E,
        expert_bias=L * E * (2 * I + H),
    )


@Checker("check_total_parameters")
def check_total_parameters(fn):
    """fn(config) -> int: every parameter of the model."""
    for name in ("gpt_oss_20b", "gpt_oss_120b", "tiny"):
        c = getattr(ModelConfig, name)()
        p = count_parameters(c)
        got = fn(c)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailure(f"return an int; got {type(got).__name__} for {name}")
        if got == p.total:
            continue
        q = _parts(c)
        diff = got - p.total
        hints = {
            -p.embedding: "only one V x H matrix: the embedding and unembedding are separate (untied)",
            -q["norms"]: "the RMSNorm scales are missing: two per layer plus the final one, H each",
            -2 * q["L"] * q["H"]: "the two RMSNorm scales per layer (H each) are missing",
            -q["H"]: "the final norm's scale (H) is missing",
            -q["sinks"]: "the attention sinks are missing (num_attention_heads per layer)",
            -q["attn_bias"]: "the attention biases (qkv and out) are missing",
            -q["router_bias"]: "the router's bias (num_experts per layer) is missing",
            -q["expert_bias"]: "the expert biases (2I + H per expert) are missing",
            -(q["attn_bias"] + q["router_bias"] + q["expert_bias"]): "all biases are missing",
            p.active - p.total: "this is the active count; count every expert and the embedding",
        }
        if diff in hints:
            raise ExerciseFailure(f"{name}: {hints[diff]}")
        raise ExerciseFailure(f"{name}: got {got:,}; expected {p.total:,} (off by {diff:+,})")
    return "gpt-oss-20b: 20,914,757,184; gpt-oss-120b: 116,829,156,672"


@Checker("check_checkpoint_bytes")
def check_checkpoint_bytes(fn):
    """fn(config) -> int: bytes of the published checkpoint (MXFP4 expert matrices, rest bf16)."""
    for name in ("gpt_oss_20b", "gpt_oss_120b", "tiny"):
        c = getattr(ModelConfig, name)()
        p = count_parameters(c)
        got = fn(c)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailure(f"return an int; got {type(got).__name__} for {name}")
        if got == p.checkpoint_bytes:
            continue
        E, L, H, I = c.num_experts, c.num_hidden_layers, c.hidden_size, c.intermediate_size
        matrices = L * E * 3 * I * H  # expert weights, all layers
        biases = L * E * (2 * I + H)
        diff = got - p.checkpoint_bytes
        hints = {
            -matrices // 32: "4 bits per weight but no scales: each block of 32 weights also "
            "stores one scale byte (17 bytes per 32 weights)",
            p.bf16_bytes - p.checkpoint_bytes: "this is everything in bf16; the expert "
            "matrices are MXFP4 (17 bytes per 32 weights)",
            -biases * 2 + biases * 17 // 32: "the expert biases are bf16, not MXFP4: only the "
            "two expert matrices are quantized",
            -(2 * p.total - 2 * matrices) // 2: "the non-expert weights are bf16, 2 bytes each",
        }
        if diff in hints:
            raise ExerciseFailure(f"{name}: {hints[diff]}")
        raise ExerciseFailure(
            f"{name}: got {got:,} bytes; expected {p.checkpoint_bytes:,} (off by {diff:+,})"
        )
    return "gpt-oss-20b: 13,761,264,768 bytes"


# ------------------------------------------------------------- the capstone: your own gpt-oss

CAPSTONE_TEXT = "def greet(name):\n    return 'Hello, ' + name\n\n\nclass Point:\n"


def _tiny_and_ids():
    from ..tiny import load_tiny

    model, tok = load_tiny(experts="dequantized")
    return model, torch.tensor(tok.encode(CAPSTONE_TEXT))


def _model_variants(model, ids):
    """What the trained tiny model computes with a classic mistake instead."""
    x0 = model.embedding(ids[None])
    positions = torch.arange(ids.shape[0])
    out = {}
    x = x0
    for block in model.block:
        x = x + block.attn(x, positions) + block.mlp(x)  # both from the same x
    out["a parallel residual: the MoE block must read x after the attention's update was added"] = (
        model.unembedding(model.norm(x))[0]
    )
    x = x0
    for block in model.block:
        x = block(x, positions)
    out["the final RMSNorm before the unembedding is missing"] = model.unembedding(x)[0]
    out["the unembedding is tied to the embedding: gpt-oss has a separate unembedding matrix"] = (
        model.norm(x) @ model.embedding.weight.T
    )[0]
    x = x0
    for block in model.block:
        x = block.attn(x, positions) + x
        x = block.mlp(x)  # no residual around the MoE
    out["the MoE update replaces x instead of being added to it (x = x + mlp(x))"] = (
        model.unembedding(model.norm(x))[0]
    )
    return out


@Checker("check_my_gptoss")
def check_my_gptoss(cls):
    """The capstone. cls: your `GptOss(config)` (my_gptoss/model.py), built from your modules
    of chapters 3-6, with the checkpoint's names (embedding, block.N.attn/mlp, norm,
    unembedding). Loads the shipped trained tiny gpt-oss (ge.load_tiny) with strict names and must
    reproduce the package's logits to float32 round-off (relative difference < 1e-5), for one
    sequence (T,) and a batch (B, T), and, if it has new_cache(), in chunks through the cache."""
    ref, ids = _tiny_and_ids()
    mine = cls(ref.config)
    missing, unexpected = mine.load_state_dict(ref.state_dict(), strict=False)
    if missing or unexpected:
        raise ExerciseFailure(
            f"your GptOss's parameters do not match the checkpoint's names: missing "
            f"{sorted(missing)[:6]}, unexpected {sorted(unexpected)[:6]}"
        )
    mine.eval()
    with torch.no_grad():
        got, expected = mine(ids), ref(ids)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            rel = float((got - expected).norm() / expected.norm())
            if rel >= 1e-5:
                for mistake, wrong in _model_variants(ref, ids).items():
                    if torch.allclose(got, wrong, rtol=1e-4, atol=1e-4):
                        raise ExerciseFailure(mistake)
                raise ExerciseFailure(
                    f"logits differ from the package's: relative difference {rel:.2e} (need "
                    "< 1e-5); check each block against chapters 5 and 6 (the checkers of "
                    "check_my_attention_block and check_my_mlp_block)"
                )
        expect_close(got, expected, "logits of one sequence (T,)", rtol=1e-4, atol=1e-4)
        batch = torch.stack([ids, ids.flip(0)])  # (2, T)
        expect_close(mine(batch), ref(batch), "logits of a batch (B, T)", rtol=1e-4, atol=1e-4)
        detail = (
            f"the trained tiny gpt-oss in your model: logits equal the package's (rel {rel:.1e})"
        )
        if hasattr(mine, "new_cache"):
            cache = mine.new_cache()
            n = ids.shape[0]
            parts = [mine(ids[a:b], cache) for a, b in ((0, n - 5), (n - 5, n - 4), (n - 4, n))]
            expect_close(torch.cat(parts), expected, "logits through your cache, in chunks",
                         rtol=1e-4, atol=1e-4)  # fmt: skip
            detail += ", with and without your KV cache"
    return detail
