"""Checkers for chapter 12's exercises (exercises/12_real_checkpoints.ipynb): reading a safetensors
header and a tensor by hand, mapping key names between the two layouts, and predicting the memory
of a loaded model.

    ge.exercises.check_read_header(my_read_header)   # ✅ check_read_header: passed

References: `gptoss_edu.checkpoint` (chapter 12's final code) and the safetensors library.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import tempfile
from pathlib import Path

import torch

from ..checkpoint import _hf_names, original_spec
from ..config import ModelConfig
from ._common import Checker, ExerciseFailure, cases, expect_close

__all__ = [
    "check_read_header",
    "check_read_tensor",
    "check_hf_key",
    "check_loaded_bytes",
    "check_validate_header",
]


def _sample_file(directory: Path, seed: int | None = None) -> Path:
    """A small safetensors file: three fixed tensors, or (with a seed) 2-6 tensors of drawn
    names, shapes and dtypes (bf16, float32, uint8)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(12 if seed is None else seed)
    tensors = {
        "block.0.attn.sinks": torch.randn(4, generator=g).to(torch.bfloat16),
        "block.0.mlp.mlp1_weight.blocks": torch.randint(0, 256, (2, 3, 1, 16), dtype=torch.uint8),
        "norm.scale": torch.randn(8, generator=g),
    }
    if seed is not None:
        rng = random.Random(seed)
        tensors = {}
        for _ in range(rng.randint(2, 6)):
            key = f"block.{rng.randrange(36)}.{rng.choice(['attn.sinks', 'mlp.gate.bias', 'x'])}"
            shape = tuple(rng.randint(1, 9) for _ in range(rng.randint(1, 3)))
            kind = rng.choice(["bf16", "f32", "u8"])
            if kind == "u8":
                tensors[key] = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
            else:
                t = torch.randn(shape, generator=g)
                tensors[key] = t.to(torch.bfloat16) if kind == "bf16" else t
    path = directory / "sample.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _header(path: Path) -> tuple[dict, int]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), n


@Checker("check_read_header")
def check_read_header(fn, seed=None):
    """fn(path) -> dict: the JSON header of a safetensors file, without "__metadata__"."""
    with tempfile.TemporaryDirectory() as d:
        path = _sample_file(Path(d), seed)
        want, _ = _header(path)
        want.pop("__metadata__")
        got = fn(path)
    if not isinstance(got, dict):
        raise ExerciseFailure(f"expected a dict, got {type(got).__name__}")
    if "__metadata__" in got:
        raise ExerciseFailure(
            'the header has a "__metadata__" entry that is not a tensor: drop it from the dict'
        )
    if got != want:
        missing = sorted(set(want) - set(got))
        if missing:
            raise ExerciseFailure(f"keys missing: {missing}")
        key = next(k for k in want if got.get(k) != want[k])
        raise ExerciseFailure(f"entry {key!r} is {got.get(key)!r}; expected {want[key]!r}")
    return f"{len(want)} tensors"


@Checker("check_read_tensor")
def check_read_tensor(fn, seed=None):
    """fn(path, key) -> Tensor: one tensor read by seeking to its byte range."""
    from safetensors import safe_open

    with tempfile.TemporaryDirectory() as d:
        path = _sample_file(Path(d), seed)
        header, n = _header(path)
        raw = path.read_bytes()
        with safe_open(str(path), framework="pt") as f:
            for key in [k for k in header if k != "__metadata__"]:
                want = f.get_tensor(key)
                got = fn(path, key)
                if (
                    isinstance(got, torch.Tensor)
                    and got.shape == want.shape
                    and got.dtype == want.dtype
                ):
                    b, e = header[key]["data_offsets"]
                    for offset, mistake in (
                        (0, "offsets count from the end of the header: add 8 + n"),
                        (8, "offsets count from the end of the header: add the JSON length n too"),
                        (n, "the 8 bytes of the length come first: add 8 + n, not n"),
                    ):
                        wrong = bytearray(raw[offset + b : offset + e])
                        if len(wrong) == e - b and not torch.equal(want, got):
                            as_t = torch.frombuffer(wrong, dtype=want.dtype).reshape(want.shape)
                            if torch.equal(got, as_t):
                                raise ExerciseFailure(f"{key}: read the wrong bytes; {mistake}")
                expect_close(got, want, f"read_tensor(path, {key!r})", rtol=0, atol=0)
    return "bf16, float32 and uint8"


@Checker("check_hf_key")
def check_hf_key(fn, seed=None):
    """fn(original_key) -> the Hugging Face key (for every key except attn.qkv.*)."""
    layers = cases((0, 7), seed, lambda rng: rng.randrange(8, 120), n=2)
    pairs = {o: h for n in layers for h, o in _hf_names(n).items()}
    pairs.update(
        {
            "embedding.weight": "model.embed_tokens.weight",
            "norm.scale": "model.norm.weight",
            "unembedding.weight": "lm_head.weight",
        }
    )
    for orig, want in pairs.items():
        got = fn(orig)
        if got == want:
            continue
        if (
            "input_layernorm" in str(got)
            and "post_attention" in want
            or ("post_attention_layernorm" in str(got) and "input_layernorm" in want)
        ):
            raise ExerciseFailure(
                f"{orig} -> {got!r}: the two norms are swapped. attn.norm (before attention) is "
                "input_layernorm; mlp.norm (before the MoE) is post_attention_layernorm"
            )
        raise ExerciseFailure(f"{orig} -> {got!r}; expected {want!r}")
    return f"{len(pairs)} keys"


def _random_config(rng) -> ModelConfig:
    return dataclasses.replace(
        ModelConfig.tiny(),
        num_hidden_layers=rng.randint(1, 12),
        num_experts=rng.choice([4, 8, 16, 32]),
        hidden_size=64 * rng.randint(1, 8),
        intermediate_size=32 * rng.randint(1, 8),
    )


@Checker("check_loaded_bytes")
def check_loaded_bytes(fn, seed=None):
    """fn(config, experts) -> bytes of the model's tensors loaded in bf16."""
    visible = (ModelConfig.gpt_oss_20b(), ModelConfig.gpt_oss_120b(), ModelConfig.tiny())
    for cfg in cases(visible, seed, _random_config, n=3):
        spec = original_spec(cfg)
        packed = sum(math.prod(s) * d.itemsize for s, d in spec.values())
        dense = sum(
            2 * math.prod(s) * (2 if k.endswith(".blocks") else 1)
            for k, (s, d) in spec.items()
            if not k.endswith(".scales")
        )
        for experts, want in (("mxfp4", packed), ("dequantized", dense)):
            got = fn(cfg, experts)
            if got == want:
                continue
            if isinstance(got, (int, float)) and want:
                if experts == "mxfp4":
                    scales = sum(
                        math.prod(s) for k, (s, _) in spec.items() if k.endswith(".scales")
                    )
                    if got == want - scales:
                        raise ExerciseFailure(
                            f"{experts}: {got:,} bytes leaves out the scales "
                            f"({scales:,} bytes, one per 32 expert weights)"
                        )
                if got == 2 * want or (experts == "dequantized" and got == 2 * dense):
                    raise ExerciseFailure(
                        f"{experts}: {got:,} is float32's size; the model is bf16, 2 bytes"
                    )
                raise ExerciseFailure(
                    f"{experts} ({cfg.num_hidden_layers} layers): got {got:,} bytes, expected "
                    f"{want:,} (ratio {got / want:.4g})"
                )
            raise ExerciseFailure(f"expected an int, got {got!r}")
    return "20b, 120b and tiny, both ways"


# ---- extension: validate a safetensors header by hand --------------------------------------------


def _write_raw(path: Path, header: dict, data: bytes, n_claimed: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    n = len(raw) if n_claimed is None else n_claimed
    path.write_bytes(n.to_bytes(8, "little") + raw + data)
    return path


def _corruptions(header: dict, data: bytes, rng: random.Random):
    """(what is wrong, the key at fault or None, header, data, claimed length) for each mistake."""
    keys = [k for k in header if k != "__metadata__"]
    key = rng.choice(keys)
    first = min(keys, key=lambda k: header[k]["data_offsets"][0])
    last = max(keys, key=lambda k: header[k]["data_offsets"][1])
    out = [("a header length larger than the file", None, header, data, 10**9)]
    bad = json.loads(json.dumps(header))
    bad[key]["dtype"] = "F7_E9"
    out.append(("an unknown dtype", key, bad, data, None))
    bad = json.loads(json.dumps(header))
    bad[key]["shape"] = [*bad[key]["shape"], 2]
    out.append(("a shape whose bytes do not fill the tensor's byte range", key, bad, data, None))
    bad = json.loads(json.dumps(header))
    b, e = bad[last]["data_offsets"]
    bad[last]["data_offsets"] = [b + 64, e + 64]
    bad[last]["shape"] = header[last]["shape"]
    out.append(("a byte range past the end of the file", last, bad, data, None))
    if len(keys) > 1:
        bad = json.loads(json.dumps(header))
        other = next(k for k in keys if k != first)
        size = bad[other]["data_offsets"][1] - bad[other]["data_offsets"][0]
        bad[other]["data_offsets"] = [0, size]  # now overlaps `first`
        out.append(("two tensors sharing bytes", (first, other), bad, data, None))
    return out


@Checker("check_validate_header")
def check_validate_header(fn, seed=None):
    """fn(path) -> the header dict (without "__metadata__") of a valid safetensors file; for a
    damaged file, raise ValueError with a message that names the tensor at fault."""
    with tempfile.TemporaryDirectory() as d:
        path = _sample_file(Path(d), seed)
        header, n = _header(path)
        data = path.read_bytes()[8 + n :]
        want = {k: v for k, v in header.items() if k != "__metadata__"}
        try:
            got = fn(path)
        except ValueError as e:
            raise ExerciseFailure(f"a valid file was refused: {e}") from None
        if got != want:
            raise ExerciseFailure("for a valid file, return its header without __metadata__")
        rng = random.Random(0 if seed is None else seed)
        for what, key, bad, bad_data, claimed in _corruptions(header, data, rng):
            damaged = _write_raw(Path(d) / "damaged.safetensors", bad, bad_data, claimed)
            try:
                fn(damaged)
            except ValueError as e:
                keys = key if isinstance(key, tuple) else (key,)
                if key is not None and not any(k in str(e) for k in keys):
                    raise ExerciseFailure(
                        f"{what}: your ValueError ({e}) does not name the tensor at fault "
                        f"({' or '.join(keys)})"
                    ) from None
                continue
            except Exception as e:  # noqa: BLE001 - any other error is the wrong kind
                raise ExerciseFailure(
                    f"{what}: raised {type(e).__name__}: {e}; raise a ValueError that says what "
                    "is wrong with the file"
                ) from None
            raise ExerciseFailure(f"a file with {what} was accepted; check for it")
    return "valid header read; every damage found and named"
