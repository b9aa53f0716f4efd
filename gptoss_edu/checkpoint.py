"""Reading and writing gpt-oss checkpoints in both published layouts (chapters 7 and 12).

Two layouts exist for the same weights (SPEC.md, "Checkpoint layouts"):

- OpenAI "original": one `model.safetensors` + a 16-key `config.json`; key names such as
  `block.3.attn.qkv.weight` that map one to one onto `GptOss`'s parameters.
- Hugging Face: `model.safetensors` or shards `model-0000K-of-0000M.safetensors` with
  `model.safetensors.index.json`, key names such as `model.layers.3.self_attn.q_proj.weight`.

In both, expert weights are MXFP4: `*.blocks` (uint8, two 4-bit codes per byte) and `*.scales`
(uint8 exponents), everything else bf16. `load_checkpoint` finds out which layout a directory
holds, checks every key, shape and dtype against the config before reading any data, and reads
tensors one at a time from the memory-mapped files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import OPENAI_KEYS, ModelConfig

BF16, U8 = torch.bfloat16, torch.uint8
_SAFETENSORS_DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


class CheckpointError(ValueError):
    """A checkpoint on disk that cannot describe the model: says which file or key, and why."""


# ---------------------------------------------------------------------------- key specs
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


def _hf_names(n: int) -> dict[str, str]:
    """HF key suffix -> original key, for layer n (q/k/v are handled separately)."""
    o, h = f"block.{n}.", f"model.layers.{n}."
    return {
        h + "input_layernorm.weight": o + "attn.norm.scale",
        h + "self_attn.sinks": o + "attn.sinks",
        h + "self_attn.o_proj.weight": o + "attn.out.weight",
        h + "self_attn.o_proj.bias": o + "attn.out.bias",
        h + "post_attention_layernorm.weight": o + "mlp.norm.scale",
        h + "mlp.router.weight": o + "mlp.gate.weight",
        h + "mlp.router.bias": o + "mlp.gate.bias",
        h + "mlp.experts.gate_up_proj_blocks": o + "mlp.mlp1_weight.blocks",
        h + "mlp.experts.gate_up_proj_scales": o + "mlp.mlp1_weight.scales",
        h + "mlp.experts.gate_up_proj_bias": o + "mlp.mlp1_bias",
        h + "mlp.experts.down_proj_blocks": o + "mlp.mlp2_weight.blocks",
        h + "mlp.experts.down_proj_scales": o + "mlp.mlp2_weight.scales",
        h + "mlp.experts.down_proj_bias": o + "mlp.mlp2_bias",
    }


def hf_spec(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every key of the Hugging Face layout (MXFP4 experts) with its shape and dtype."""
    c = config
    orig = original_spec(c)
    spec = {"model.embed_tokens.weight": orig["embedding.weight"]}
    for n in range(c.num_hidden_layers):
        h = f"model.layers.{n}.self_attn."
        for name, rows in (("q", c.q_dim), ("k", c.kv_dim), ("v", c.kv_dim)):
            spec[h + f"{name}_proj.weight"] = ((rows, c.hidden_size), BF16)
            spec[h + f"{name}_proj.bias"] = ((rows,), BF16)
        for hf, o in _hf_names(n).items():
            spec[hf] = orig[o]
    spec["model.norm.weight"] = orig["norm.scale"]
    spec["lm_head.weight"] = orig["unembedding.weight"]
    return spec


# ---------------------------------------------------------------------------- finding files
@dataclass
class CheckpointFiles:
    layout: str  # "original" or "hf"
    directory: Path
    config_path: Path
    files: list[Path]  # safetensors files
    key_to_file: dict[str, Path]


def _read_header(path: Path) -> dict:
    """Read a safetensors header by hand: 8-byte little-endian length, then JSON."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        n = int.from_bytes(raw, "little")
        if n <= 0 or 8 + n > size:
            raise CheckpointError(
                f"{path}: safetensors header says {n} header bytes but the file has {size} bytes "
                "(truncated or not a safetensors file); download it again"
            )
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    header.pop("__metadata__", None)
    end = max((v["data_offsets"][1] for v in header.values()), default=0)
    if 8 + n + end > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file: tensors need {8 + n + end} bytes, "
            f"the file has {size}; download or write it again"
        )
    return header


def find_checkpoint(path: str | os.PathLike) -> CheckpointFiles:
    """Work out which layout `path` holds and list its files, without reading any tensor."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"checkpoint path {root} does not exist")
    if root.is_file():
        if root.suffix != ".safetensors":
            raise CheckpointError(f"{root}: expected a directory or a .safetensors file")
        root = root.parent
    candidates = [root]
    if (root / "original").is_dir():
        candidates.append(root / "original")
    for d in candidates:
        index = d / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
            files = sorted({d / f for f in weight_map.values()})
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"{index} names shard {f.name}, which is missing")
        else:
            files = sorted(d.glob("*.safetensors"))
        if not files:
            continue
        key_to_file: dict[str, Path] = {}
        for f in files:
            for key in _read_header(f):
                if key in key_to_file:
                    raise CheckpointError(f"key {key} appears in both {key_to_file[key]} and {f}")
                key_to_file[key] = f
        if any(k.startswith("model.") or k == "lm_head.weight" for k in key_to_file):
            layout = "hf"
        elif any(k.startswith("block.") or k == "embedding.weight" for k in key_to_file):
            layout = "original"
        else:
            raise CheckpointError(
                f"{d}: safetensors files hold neither gpt-oss layout "
                f"(first keys: {sorted(key_to_file)[:5]})"
            )
        config_path = d / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{d}: found weights ({layout} layout) but no config.json beside them"
            )
        return CheckpointFiles(layout, d, config_path, files, key_to_file)
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no gpt-oss checkpoint in {looked}: expected *.safetensors files (original layout: "
        "model.safetensors + config.json; Hugging Face: model-0000K-of-0000M.safetensors + "
        "model.safetensors.index.json + config.json)"
    )


def _check_tensors(ckpt: CheckpointFiles, spec: dict, config: ModelConfig) -> None:
    headers = {}
    for f in ckpt.files:
        headers.update(_read_header(f))
    found = set(headers)
    missing = [k for k in spec if k not in found]
    extra = sorted(found - set(spec))
    # Hugging Face checkpoints saved after dequantizing carry dense expert weights instead.
    dense = {k for k in extra if k.endswith((".gate_up_proj", ".down_proj"))}
    if dense:
        extra = [k for k in extra if k not in dense]
        missing = [k for k in missing if not k.endswith(("_blocks", "_scales"))]
    sizes = (
        f"(config: layers={config.num_hidden_layers}, experts={config.num_experts}, "
        f"hidden_size={config.hidden_size}, vocab_size={config.vocab_size})"
    )
    if missing:
        raise CheckpointError(
            f"{ckpt.directory}: {len(missing)} key(s) missing from the {ckpt.layout} layout, "
            f"e.g. {missing[:5]} {sizes}"
        )
    if extra:
        raise CheckpointError(
            f"{ckpt.directory}: {len(extra)} unexpected key(s) for the {ckpt.layout} layout, "
            f"e.g. {extra[:5]}; does config.json match these weights? {sizes}"
        )
    for key, (shape, dtype) in spec.items():
        if key not in headers:
            continue
        h = headers[key]
        if tuple(h["shape"]) != tuple(shape):
            raise CheckpointError(
                f"checkpoint.py: {key} has shape {tuple(h['shape'])}; expected {tuple(shape)} "
                f"from {ckpt.config_path} {sizes}"
            )
        found_dtype = _SAFETENSORS_DTYPES.get(h["dtype"])
        ok = found_dtype == dtype or (dtype != U8 and found_dtype in (BF16, torch.float32))
        if not ok:
            raise CheckpointError(
                f"checkpoint.py: {key} has dtype {h['dtype']}; expected {str(dtype).split('.')[-1]}"
            )


# ---------------------------------------------------------------------------- loading
def read_config(path: str | os.PathLike) -> ModelConfig:
    return ModelConfig.from_json(find_checkpoint(path).config_path)


def load_checkpoint(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    progress: bool = False,
):
    """Load a gpt-oss checkpoint (either layout, detected) into a `GptOss` module.

    Every key, shape and dtype is checked against config.json before any tensor is read; the
    model is built on the meta device and filled tensor by tensor, so peak memory stays near
    the final model's size. MXFP4 expert weights are decoded to `dtype` on load.
    """
    from safetensors import safe_open

    from .model.rope import yarn_inv_freq
    from .model.transformer import GptOss
    from .mxfp4 import dequantize

    if dtype not in (torch.float32, torch.bfloat16, torch.float64):
        raise ValueError(
            f"load_checkpoint: dtype must be torch.bfloat16 or torch.float32; found {dtype} "
            "(float16 overflows in gpt-oss's deep layers)"
        )
    ckpt = find_checkpoint(path)
    config = ModelConfig.from_json(ckpt.config_path)
    spec = original_spec(config) if ckpt.layout == "original" else hf_spec(config)
    _check_tensors(ckpt, spec, config)

    handles = {}
    try:
        for f in ckpt.files:
            try:
                handles[f] = safe_open(str(f), framework="pt", device="cpu")
            except Exception as e:  # safetensors raises its own error types
                raise CheckpointError(f"{f}: cannot open as safetensors ({e})") from None

        def read(key: str) -> torch.Tensor:
            return handles[ckpt.key_to_file[key]].get_tensor(key)

        state = {}
        names = list(original_spec(config))
        iterator = names
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(names, desc=f"loading {ckpt.directory.name}", unit="tensor")
        hf_of = {}
        if ckpt.layout == "hf":
            for n in range(config.num_hidden_layers):
                hf_of.update({o: h for h, o in _hf_names(n).items()})
            hf_of.update(
                {
                    "embedding.weight": "model.embed_tokens.weight",
                    "norm.scale": "model.norm.weight",
                    "unembedding.weight": "lm_head.weight",
                }
            )
        for name in iterator:
            if name.endswith(".scales"):
                continue
            if name.endswith(".blocks"):
                param = name[: -len(".blocks")]  # block.N.mlp.mlp1_weight
                if ckpt.layout == "original":
                    w = dequantize(read(name), read(param + ".scales"), dtype=dtype)
                else:
                    h = hf_of[name][: -len("_blocks")]
                    if h in ckpt.key_to_file:  # dense HF experts: (E, in, out) -> (E, out, in)
                        w = read(h).transpose(1, 2).to(dtype)
                    else:
                        w = dequantize(read(h + "_blocks"), read(h + "_scales"), dtype=dtype)
                if torch.isnan(w).any():
                    raise CheckpointError(
                        f"{ckpt.directory}: {param} decodes to NaN: a scale byte of 255 "
                        "(NaN in E8M0) in its MXFP4 scales; the file is corrupt"
                    )
                state[param] = w.reshape(spec_shape_out(config, param))
            elif ckpt.layout == "hf" and name.endswith("attn.qkv.weight"):
                p = "model.layers." + name.split(".")[1] + ".self_attn."
                state[name] = torch.cat([read(p + f"{x}_proj.weight") for x in "qkv"]).to(dtype)
            elif ckpt.layout == "hf" and name.endswith("attn.qkv.bias"):
                p = "model.layers." + name.split(".")[1] + ".self_attn."
                state[name] = torch.cat([read(p + f"{x}_proj.bias") for x in "qkv"]).to(dtype)
            else:
                key = hf_of[name] if ckpt.layout == "hf" else name
                state[name] = read(key).to(dtype)
    finally:
        handles.clear()

    with torch.device("meta"):
        model = GptOss(config)
    model.load_state_dict(state, strict=True, assign=True)
    inv_freq = yarn_inv_freq(config)[0].float()
    for block in model.block:
        block.attn.rope.inv_freq = inv_freq.clone()
    model.checkpoint_layout = ckpt.layout
    return model.to(device).eval()


def spec_shape_out(config: ModelConfig, param: str) -> tuple[int, ...]:
    E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
    return (E, 2 * I, H) if param.endswith("mlp1_weight") else (E, H, I)


# ---------------------------------------------------------------------------- saving
def _original_tensors(model, dtype=BF16):
    """Yield (original key, tensor) with experts quantized to MXFP4, in file order."""
    from .mxfp4 import quantize

    params = dict(model.state_dict())
    for key in original_spec(model.config):
        if key.endswith(".scales"):
            continue
        if key.endswith(".blocks"):
            param = key[: -len(".blocks")]
            blocks, scales = quantize(params[param].detach().float().cpu())
            yield key, blocks.contiguous()
            yield param + ".scales", scales.contiguous()
        else:
            yield key, params[key].detach().to(dtype).cpu().contiguous()


def _hf_tensors(model, dtype=BF16):
    c = model.config
    orig = dict(_original_tensors(model, dtype))
    rename = {"embedding.weight": "model.embed_tokens.weight"}
    for n in range(c.num_hidden_layers):
        rename.update({o: h for h, o in _hf_names(n).items()})
    out = {rename["embedding.weight"]: orig["embedding.weight"]}
    for n in range(c.num_hidden_layers):
        p = f"model.layers.{n}.self_attn."
        w = orig[f"block.{n}.attn.qkv.weight"]
        b = orig[f"block.{n}.attn.qkv.bias"]
        splits = [c.q_dim, c.kv_dim, c.kv_dim]
        for name, wi, bi in zip("qkv", w.split(splits), b.split(splits)):
            out[p + f"{name}_proj.weight"] = wi.contiguous()
            out[p + f"{name}_proj.bias"] = bi.contiguous()
        for h, o in _hf_names(n).items():
            out[h] = orig[o]
    out["model.norm.weight"] = orig["norm.scale"]
    out["lm_head.weight"] = orig["unembedding.weight"]
    return out


def save_checkpoint(
    model,
    path: str | os.PathLike,
    layout: str = "original",
    max_shard_bytes: int = 5 * 1024**3,
    overwrite: bool = False,
) -> Path:
    """Write `model` as a gpt-oss checkpoint: experts in MXFP4, everything else bf16.

    layout "original": path/config.json (OpenAI's 16 keys) + path/model.safetensors.
    layout "hf": path/config.json (Hugging Face) + model.safetensors, or shards
    model-0000K-of-0000M.safetensors and model.safetensors.index.json past max_shard_bytes.
    Files are written into a temporary directory beside `path` and moved into place at the
    end, so an interrupted save never leaves a half-written checkpoint.
    """
    from safetensors.torch import save_file

    if layout not in ("original", "hf"):
        raise ValueError(f"save_checkpoint: layout must be 'original' or 'hf'; found {layout!r}")
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"save_checkpoint: {path} exists and is not empty; pass overwrite=True to replace it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        config = model.config
        if layout == "original":
            tensors = dict(_original_tensors(model))
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config.to_json(tmp / "config.json", dialect="openai")
        else:
            tensors = _hf_tensors(model)
            shards: list[dict] = [{}]
            size = 0
            for k, t in tensors.items():
                nbytes = t.numel() * t.element_size()
                if shards[-1] and size + nbytes > max_shard_bytes:
                    shards.append({})
                    size = 0
                shards[-1][k] = t
                size += nbytes
            if len(shards) == 1:
                save_file(shards[0], str(tmp / "model.safetensors"), metadata={"format": "pt"})
            else:
                weight_map = {}
                for i, shard in enumerate(shards):
                    name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                    save_file(shard, str(tmp / name), metadata={"format": "pt"})
                    weight_map.update({k: name for k in shard})
                total = sum(t.numel() * t.element_size() for t in tensors.values())
                index = {"metadata": {"total_size": total}, "weight_map": weight_map}
                (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
            config.to_json(tmp / "config.json", dialect="hf")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


__all__ = [
    "OPENAI_KEYS",
    "CheckpointError",
    "find_checkpoint",
    "hf_spec",
    "load_checkpoint",
    "original_spec",
    "read_config",
    "save_checkpoint",
]
