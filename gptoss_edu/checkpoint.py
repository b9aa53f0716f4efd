"""Reading and writing gpt-oss checkpoints in both published layouts (chapters 7 and 12).

Two layouts exist for the same weights (SPEC.md, "Checkpoint layouts"):

- OpenAI "original": one `model.safetensors` + a 16-key `config.json`; key names such as
  `block.3.attn.qkv.weight` that map one to one onto `GptOss`'s parameters.
- Hugging Face: `model.safetensors` or shards `model-0000K-of-0000M.safetensors` with
  `model.safetensors.index.json`, key names such as `model.layers.3.self_attn.q_proj.weight`.

In both, expert weights are MXFP4: `*.blocks` (uint8, two 4-bit codes per byte) and `*.scales`
(uint8 exponents), everything else bf16. `load_checkpoint` finds out which layout a directory
holds, checks every key, shape and dtype against the config from the file headers before
allocating anything, builds the model on the meta device, and reads tensors one at a time
straight into their final place; expert weights stay packed (experts="mxfp4", the default) or
are decoded (experts="dequantized"). `write_synthetic` writes a checkpoint of any config with
the real key names, shapes and dtypes and random values, streamed tensor by tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
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
    headers: dict[str, dict] = field(default_factory=dict)  # key -> header entry (+ "file_offset")

    def nbytes(self) -> int:
        """Bytes of tensor data in all the files."""
        return sum(h["data_offsets"][1] - h["data_offsets"][0] for h in self.headers.values())


def _read_header(path: Path) -> dict:
    """Read a safetensors header by hand and check it describes the file.

    Layout: 8-byte little-endian header length n, n bytes of JSON
    {key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
    tensors' bytes; offsets count from the end of the header. Each entry gets "file_offset",
    the absolute position of its first byte.
    """
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
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    end = 0
    for key, h in header.items():
        try:
            dtype = _SAFETENSORS_DTYPES[h["dtype"]]
            begin, stop = (int(x) for x in h["data_offsets"])
            numel = torch.Size([int(d) for d in h["shape"]]).numel()
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{path}: corrupt safetensors header entry for {key}: {h!r} ({e!r})"
            ) from None
        if stop - begin != numel * dtype.itemsize or begin < 0:
            raise CheckpointError(
                f"{path}: corrupt safetensors header: {key} has shape {h['shape']} "
                f"{h['dtype']} ({numel * dtype.itemsize} bytes) but data_offsets {[begin, stop]}"
            )
        h["file_offset"] = 8 + n + begin
        end = max(end, stop)
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
        headers: dict[str, dict] = {}
        for f in files:
            for key, h in _read_header(f).items():
                if key in key_to_file:
                    raise CheckpointError(f"key {key} appears in both {key_to_file[key]} and {f}")
                key_to_file[key] = f
                headers[key] = h
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
        return CheckpointFiles(layout, d, config_path, files, key_to_file, headers)
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no gpt-oss checkpoint in {looked}: expected *.safetensors files (original layout: "
        "model.safetensors + config.json; Hugging Face: model-0000K-of-0000M.safetensors + "
        "model.safetensors.index.json + config.json)"
    )


def _check_tensors(ckpt: CheckpointFiles, spec: dict, config: ModelConfig) -> None:
    headers = ckpt.headers
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
    E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
    spec = dict(spec)
    for key in dense:  # stored (E, in, out), the transpose of ours
        spec[key] = ((E, H, 2 * I) if key.endswith("gate_up_proj") else (E, I, H)), BF16
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


class _TensorReader:
    """Reads one tensor at a time from safetensors files, straight into a fresh CPU tensor.

    Why not keep `safe_open`'s memory map for the whole load: pages of a mapping that has been
    read count in the process's resident memory until it is unmapped, so mapping a 13 GB file
    and copying every tensor out of it shows up to twice the model's size as "used" (the
    copies + the mapped pages), even though the kernel could drop the mapped pages. A positioned
    read (`readinto`) of each tensor's byte range goes through the page cache, which does not
    count as the process's memory, and lands the bytes directly in the tensor we keep: one copy,
    never the whole file at once. The packed expert bytes are copied, not left memory-mapped:
    a mapping would tie the model to the file (rewriting or deleting it under a running model
    changes its weights or crashes it).
    """

    def __init__(self, ckpt: CheckpointFiles, bar=None):
        self.ckpt, self.bar, self.handles = ckpt, bar, {}

    def read(self, key: str) -> torch.Tensor:
        h = self.ckpt.headers[key]
        f = self.ckpt.key_to_file[key]
        if f not in self.handles:
            self.handles[f] = open(f, "rb")  # noqa: SIM115 (closed in close())
        out = torch.empty(h["shape"], dtype=_SAFETENSORS_DTYPES[h["dtype"]])
        view = memoryview(out.view(-1).view(torch.uint8).numpy()) if out.numel() else b""
        fh = self.handles[f]
        fh.seek(h["file_offset"])
        got = fh.readinto(view) if out.numel() else 0
        if got != len(view):
            raise CheckpointError(f"{f}: {key}: read {got} of {len(view)} bytes; truncated file")
        if self.bar is not None:
            self.bar.update(len(view))
        return out

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()


def _check_scales(scales: torch.Tensor, key: str, where: Path) -> None:
    """A scale byte of 255 is NaN in E8M0: refuse it (it would poison every output it touches)."""
    bad = (scales == 255).nonzero()
    if len(bad):
        idx = tuple(bad[0].tolist())
        raise CheckpointError(
            f"{where}: {key} has {len(bad)} scale byte(s) of 255 (NaN in E8M0), first at index "
            f"{idx} (expert, row, block); the file is corrupt: download or write it again"
        )


_said_dense_quantize: set[str] = set()


def load_checkpoint(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    experts: str = "mxfp4",
    backend: str = "auto",
):
    """Load a gpt-oss checkpoint (either layout, detected) into a `GptOss` module.

    experts="mxfp4" (default): expert weights stay packed as stored, 4.25 bits per weight
    (gpt-oss-20b: ~13 GB in memory); the MoE blocks run on `gptoss_edu.kernels` with `backend`.
    experts="dequantized": they are decoded to `dtype` (20b in bf16: ~42 GB), for training and
    for reading the weights as ordinary tensors. Everything else (attention, router, embeddings,
    norms, biases) is in `dtype`, bfloat16 or float32.

    Every key, shape and dtype is checked against config.json from the file headers before any
    memory is allocated; the model is built on the meta device (no memory) and filled tensor by
    tensor, each read from disk straight into its final tensor, so peak memory stays near the
    final model size. Any error (including a NaN scale found while reading) raises before a
    model exists: nothing half-loaded is ever returned. progress=None shows a tqdm bar when the
    checkpoint is over 200 MB.
    """
    from .kernels import BACKENDS
    from .model.moe import EXPERT_MODES
    from .model.rope import yarn_inv_freq
    from .model.transformer import GptOss
    from .mxfp4 import dequantize, quantize

    if dtype not in (torch.float32, torch.bfloat16, torch.float64):
        raise ValueError(
            f"load_checkpoint: dtype must be torch.bfloat16 or torch.float32; found {dtype} "
            "(float16 overflows in gpt-oss's deep layers)"
        )
    if experts not in EXPERT_MODES:
        raise ValueError(
            f"load_checkpoint: experts must be one of {EXPERT_MODES}; found {experts!r}"
        )
    if backend not in BACKENDS:
        raise ValueError(f"load_checkpoint: backend must be one of {BACKENDS}; found {backend!r}")
    device = torch.device(device)
    ckpt = find_checkpoint(path)
    config = ModelConfig.from_json(ckpt.config_path)
    spec = original_spec(config) if ckpt.layout == "original" else hf_spec(config)
    _check_tensors(ckpt, spec, config)

    hf_of = {}  # original name -> HF key
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
    total = ckpt.nbytes()
    show = progress if progress is not None else total > 200 * 10**6
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"loading {ckpt.directory.name}")
    reader = _TensorReader(ckpt, bar)
    read = reader.read
    state: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        state[name] = t.to(device=device)

    try:
        for name in original_spec(config):
            if name.endswith(".scales"):
                continue
            if name.endswith(".blocks"):
                param = name[: -len(".blocks")]  # block.N.mlp.mlp1_weight
                bkey, skey = name, param + ".scales"
                if ckpt.layout == "hf":
                    h = hf_of[name][: -len("_blocks")]
                    bkey, skey = h + "_blocks", h + "_scales"
                    if h in ckpt.key_to_file:  # dense HF experts: (E, in, out) -> (E, out, in)
                        w = read(h).transpose(1, 2)
                        if experts == "dequantized":
                            put(param, w.to(dtype).contiguous())
                            continue
                        if h not in _said_dense_quantize:
                            _said_dense_quantize.add(h)
                            warnings.warn(
                                f"load_checkpoint: {ckpt.directory} holds dense (dequantized) "
                                "experts; quantizing them to MXFP4 on load (pass "
                                "experts='dequantized' to keep them exactly)",
                                stacklevel=2,
                            )
                        packed = [quantize(w[e].float()) for e in range(w.shape[0])]
                        put(name, torch.stack([b for b, _ in packed]))
                        put(param + ".scales", torch.stack([s for _, s in packed]))
                        continue
                blocks, scales = read(bkey), read(skey)
                _check_scales(scales, skey, ckpt.directory)
                if experts == "mxfp4":
                    put(name, blocks)
                    put(param + ".scales", scales)
                else:  # decode expert by expert: temporaries stay 1/E of the tensor
                    w = torch.empty(spec_shape_out(config, param), dtype=dtype)
                    for e in range(w.shape[0]):
                        w[e] = dequantize(blocks[e], scales[e], dtype=dtype)
                    del blocks, scales
                    put(param, w)
            elif ckpt.layout == "hf" and name.endswith(("attn.qkv.weight", "attn.qkv.bias")):
                p = "model.layers." + name.split(".")[1] + ".self_attn."
                kind = name.rsplit(".", 1)[1]
                put(name, torch.cat([read(p + f"{x}_proj.{kind}").to(dtype) for x in "qkv"]))
            else:
                key = hf_of[name] if ckpt.layout == "hf" else name
                put(name, read(key).to(dtype))
    finally:
        reader.close()
        if bar is not None:
            bar.close()

    with torch.device("meta"):
        model = GptOss(config, experts=experts, backend=backend)
    model.load_state_dict(state, strict=True, assign=True)
    inv_freq = yarn_inv_freq(config)[0].float().to(device)
    for block in model.block:
        block.attn.rope.inv_freq = inv_freq.clone()
        if experts == "mxfp4":
            block.mlp.mlp1_weight.dtype = block.mlp.mlp2_weight.dtype = dtype
    model.checkpoint_layout = ckpt.layout
    return model.eval()


def spec_shape_out(config: ModelConfig, param: str) -> tuple[int, ...]:
    E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
    return (E, 2 * I, H) if param.endswith("mlp1_weight") else (E, H, I)


# ---------------------------------------------------------------------------- saving
def _original_tensors(model, dtype=BF16):
    """Yield (original key, tensor) with experts in MXFP4, in file order.

    Packed experts (experts="mxfp4") are written as they are, byte for byte; dense ones are
    quantized (exact when the weights are already on the MXFP4 grid, as after loading).
    """
    from .mxfp4 import quantize

    params = dict(model.state_dict())
    for key in original_spec(model.config):
        if key.endswith(".scales"):
            continue
        if key.endswith(".blocks"):
            param = key[: -len(".blocks")]
            if key in params:  # packed: the checkpoint's own bytes
                yield key, params[key].detach().cpu().contiguous()
                yield param + ".scales", params[param + ".scales"].detach().cpu().contiguous()
                continue
            w = params[param].detach()
            packed = [quantize(w[e].float().cpu()) for e in range(w.shape[0])]  # expert by expert
            yield key, torch.stack([b for b, _ in packed]).contiguous()
            yield param + ".scales", torch.stack([s for _, s in packed]).contiguous()
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


# ---------------------------------------------------------------------------- synthetic checkpoints
_ST_NAMES = {torch.bfloat16: "BF16", torch.uint8: "U8", torch.float32: "F32"}
_CHUNK = 1 << 24  # values generated and written at a time (16 M: 32 MB of bf16)


def _synthetic_values(key: str) -> tuple[str, float, float]:
    """How a tensor of this name looks in a trained model: ("codes"|"scales"|"normal", mean, std)."""
    if key.endswith(("blocks", "_blocks")):
        return "codes", 0.0, 0.0  # every 4-bit code equally likely
    if key.endswith(("scales", "_scales")):
        return "scales", 0.0, 0.0  # 2^(118..122 - 127): weights of size ~1e-2
    if key.endswith(("norm.scale", "layernorm.weight", "norm.weight")):
        return "normal", 1.0, 0.02  # RMSNorm gains near 1
    if key.endswith("sinks"):
        return "normal", 0.0, 0.5
    return "normal", 0.0, 0.02  # weights and biases


def _write_streaming(path: Path, entries: list[tuple[str, torch.dtype, tuple]], seed: int, bar):
    """Write one safetensors file: our own header, then each tensor generated chunk by chunk.

    Memory stays at one chunk whatever the file size. Each tensor has its own random stream,
    seeded by (seed, crc32 of its key), so a tensor's values do not depend on which shard or
    in which order it is written.
    """
    import zlib

    import numpy as np

    header, offset = {}, 0
    for key, dtype, shape in entries:
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        header[key] = {
            "dtype": _ST_NAMES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header["__metadata__"] = {"format": "pt", "synthetic": "gptoss_edu.write_synthetic"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad so that the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for key, dtype, shape in entries:
            kind, mean, std = _synthetic_values(key)
            rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
            n = torch.Size(shape).numel()
            for start in range(0, n, _CHUNK):
                m = min(_CHUNK, n - start)
                if kind == "codes":
                    chunk = rng.integers(0, 256, m, dtype=np.uint8)
                elif kind == "scales":
                    chunk = rng.integers(118, 123, m, dtype=np.uint8)
                else:
                    x = torch.from_numpy(rng.standard_normal(m, dtype=np.float32) * std + mean)
                    chunk = x.to(dtype).view(torch.uint8).numpy()
                f.write(memoryview(chunk))
                if bar is not None:
                    bar.update(chunk.nbytes)


def write_synthetic(
    path: str | os.PathLike,
    config: ModelConfig,
    layout: str = "original",
    seed: int = 0,
    max_shard_bytes: int = 5 * 1024**3,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write a checkpoint with exactly the real key names, shapes and dtypes, random values.

    For testing and measuring without downloading: `write_synthetic(d, ModelConfig.gpt_oss_20b())`
    writes the 13.8 GB of a gpt-oss-20b checkpoint using a few tens of MB of memory. Values look
    like a trained model's: bf16 weights and biases ~ N(0, 0.02), norm gains ~ 1, MXFP4 codes
    uniform, scale bytes 118..122 (expert weights ~ 1e-2). The files are valid safetensors
    (the header is written here, the bytes tensor by tensor, chunk by chunk), with config.json
    in the layout's dialect; layout "hf" is sharded past max_shard_bytes with an index. As in
    `save_checkpoint`, everything is written into a temporary directory and moved into place
    at the end: an error leaves no file behind.
    """
    if layout not in ("original", "hf"):
        raise ValueError(f"write_synthetic: layout must be 'original' or 'hf'; found {layout!r}")
    config.validate()
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"write_synthetic: {path} exists and is not empty; pass overwrite=True to replace it"
        )
    spec = original_spec(config) if layout == "original" else hf_spec(config)
    entries = [(k, dtype, shape) for k, (shape, dtype) in spec.items()]
    total = sum(torch.Size(s).numel() * d.itemsize for _, d, s in entries)
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    if total > free:
        raise OSError(
            f"write_synthetic: the checkpoint needs {total / 1e9:.1f} GB; "
            f"{path.parent} has {free / 1e9:.1f} GB free"
        )
    shards: list[list] = [[]]
    size = 0
    for entry in entries:
        nbytes = torch.Size(entry[2]).numel() * entry[1].itemsize
        if layout == "hf" and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    bar = None
    if progress if progress is not None else total > 200 * 10**6:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if len(shards) == 1:
            _write_streaming(tmp / "model.safetensors", shards[0], seed, bar)
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                _write_streaming(tmp / name, shard, seed, bar)
                weight_map.update({key: name for key, _, _ in shard})
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config.to_json(tmp / "config.json", dialect="openai" if layout == "original" else "hf")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
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
    "write_synthetic",
]
