"""Writing gpt-oss checkpoints: `save_checkpoint` (a model) and `write_synthetic` (random
weights of any config, streamed) (chapter 12).

Both write through `atomic_directory`: into a temporary directory beside the target, then
swapped in, so that a kill at any moment leaves the old checkpoint or the new one at the path.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..config import ModelConfig
from .atomic import atomic_directory
from .layouts import BF16, QKV, hf_key, hf_spec, original_spec
from .safetensors import write_safetensors

_CHUNK = 1 << 24  # values generated and written at a time (16 M: 32 MB of bf16)


def _original_tensors(model, dtype=BF16):
    """Yield (original key, tensor) with experts in MXFP4, in file order.

    Packed experts (experts="mxfp4") are written as they are, byte for byte; dense ones are
    quantized (exact when the weights are already on the MXFP4 grid, as after loading).
    """
    from ..mxfp4 import quantize

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
    """(HF key, tensor) of a model, through the one name map of layouts.py."""
    c = model.config
    out = {}
    for key, t in _original_tensors(model, dtype):
        kind = key.rsplit(".", 1)[1]
        if key.endswith(("attn.qkv.weight", "attn.qkv.bias")):
            n = int(key.split(".")[1])
            for x, part in zip(QKV, t.split([c.q_dim, c.kv_dim, c.kv_dim])):
                out[f"model.layers.{n}.self_attn.{x}_proj.{kind}"] = part.contiguous()
        else:
            out[hf_key(key)] = t
    order = list(hf_spec(c))
    return {k: out[k] for k in order}


def _shards(entries, max_shard_bytes: int):
    shards: list[list] = [[]]
    size = 0
    for entry in entries:
        nbytes = torch.Size(entry[2]).numel() * entry[1].itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    return shards


def _write_files(tmp: Path, entries, layout: str, max_shard_bytes: int, config, metadata):
    """Write entries [(key, dtype, shape, source)] as one file or HF shards + index, + config."""
    shards = _shards(entries, max_shard_bytes) if layout == "hf" else [entries]
    if len(shards) == 1:
        write_safetensors(tmp / "model.safetensors", shards[0], metadata)
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(tmp / name, shard, metadata)
            weight_map.update({e[0]: name for e in shard})
        total = sum(torch.Size(e[2]).numel() * e[1].itemsize for e in entries)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.to_json(tmp / "config.json", dialect="openai" if layout == "original" else "hf")


def _check_layout(fn: str, layout: str) -> None:
    if layout not in ("original", "hf"):
        raise ValueError(f"{fn}: layout must be 'original' or 'hf'; found {layout!r}")


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
    Written through `atomic_directory`: a kill at any moment leaves the old or the new
    checkpoint at `path`, never a mix or nothing.
    """
    _check_layout("save_checkpoint", layout)
    path = Path(path)
    with atomic_directory(path, overwrite=overwrite, what="save_checkpoint") as tmp:
        write_checkpoint_files(model, tmp, layout, max_shard_bytes)
    return path


def write_checkpoint_files(
    model, directory: Path, layout: str = "original", max_shard_bytes: int = 5 * 1024**3
) -> None:
    """Write a checkpoint's files into `directory`, a fresh one (for writers that put more
    beside the weights inside one `atomic_directory`, as `train` does)."""
    _check_layout("write_checkpoint_files", layout)
    tensors = _original_tensors(model) if layout == "original" else _hf_tensors(model).items()
    entries = [(k, t.dtype, tuple(t.shape), t) for k, t in tensors]
    _write_files(Path(directory), entries, layout, max_shard_bytes, model.config, {"format": "pt"})


# ---------------------------------------------------------------------------- synthetic checkpoints
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


def _synthetic_source(key: str, dtype: torch.dtype, shape, seed: int, bar):
    """A callable yielding the tensor's bytes chunk by chunk, from its own seeded stream.

    Each tensor's random stream is seeded by (seed, crc32 of its key), so its values do not
    depend on which shard or in which order it is written.
    """
    import zlib

    import numpy as np

    def chunks():
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
            if bar is not None:
                bar.update(chunk.nbytes)
            yield chunk

    return chunks


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
    `save_checkpoint`, written through `atomic_directory`: an error or a kill leaves no
    half-written checkpoint at `path`.
    """
    _check_layout("write_synthetic", layout)
    config.validate()
    path = Path(path)
    spec = original_spec(config) if layout == "original" else hf_spec(config)
    total = sum(torch.Size(s).numel() * d.itemsize for s, d in spec.values())
    parent = path.parent if path.parent.exists() else Path.cwd()
    free = shutil.disk_usage(parent).free
    if total > free:
        raise OSError(
            f"write_synthetic: the checkpoint needs {total / 1e9:.1f} GB; "
            f"{path.parent} has {free / 1e9:.1f} GB free"
        )
    bar = None
    if progress if progress is not None else total > 200 * 10**6:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {path.name}")
    try:
        with atomic_directory(path, overwrite=overwrite, what="write_synthetic") as tmp:
            entries = [
                (k, dtype, shape, _synthetic_source(k, dtype, shape, seed, bar))
                for k, (shape, dtype) in spec.items()
            ]
            meta = {"format": "pt", "synthetic": "gptoss_edu.write_synthetic"}
            _write_files(tmp, entries, layout, max_shard_bytes, config, meta)
    finally:
        if bar is not None:
            bar.close()
    return path


__all__ = ["save_checkpoint", "write_checkpoint_files", "write_synthetic"]
