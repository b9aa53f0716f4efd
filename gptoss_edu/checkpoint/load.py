"""Finding, checking and loading gpt-oss checkpoints (chapter 12).

`find_checkpoint` works out which layout a directory holds and reads every file's header (never a
tensor); `load_checkpoint` compares config.json with those headers, then builds the model on the
meta device and fills it with tensors that are views of the memory-mapped files (no copy when the
stored dtype is the compute dtype: the weights stay file-backed page cache, not process memory).
`CheckpointReader` gives the same views one tensor, or one range of experts, at a time: a rank
that holds experts a..b reads only their bytes (see `CheckpointReader.experts`).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from ..config import ModelConfig
from .atomic import recover
from .layouts import (
    BF16,
    U8,
    hf_key,
    hf_qkv_keys,
    hf_spec,
    layer_indices,
    original_spec,
    spec_shape_out,
)
from .safetensors import DTYPES, CheckpointError, MappedFile

_SAFETENSORS_DTYPES = DTYPES  # the name this module's callers used before


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


def _shard_name(index: Path, key, name) -> str:
    """Check one weight_map entry: a str key naming a file inside the checkpoint directory."""
    if not isinstance(key, str) or not isinstance(name, str):
        raise CheckpointError(
            f"{index}: weight_map must map tensor names (str) to file names (str); "
            f"found {key!r}: {name!r}"
        )
    p, w = PurePosixPath(name), PureWindowsPath(name)
    if not name or p.is_absolute() or w.is_absolute() or w.drive or ".." in p.parts or "\\" in name:
        raise CheckpointError(
            f"{index}: weight_map names {name!r} for {key}; shard files must be plain names "
            "inside the checkpoint directory (no absolute paths, no '..')"
        )
    return name


def _read_index(index: Path) -> dict[str, str]:
    try:  # ValueError: bad JSON or UTF-8, or an int literal of more than 4300 digits
        data = json.loads(index.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{index}: a safetensors index must be a JSON object with a 'weight_map'; "
            f"found {type(data).__name__}"
        )
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(
            f"{index}: 'weight_map' must be an object {{tensor name: shard file}}; "
            f"found {type(weight_map).__name__}"
        )
    return {k: _shard_name(index, k, v) for k, v in weight_map.items()}


def find_checkpoint(path: str | os.PathLike) -> CheckpointFiles:
    """Work out which layout `path` holds and list its files, without reading any tensor."""
    root = recover(Path(path).expanduser())  # a save killed between its two renames
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
        weight_map = None
        if index.is_file():
            weight_map = _read_index(index)
            files = sorted({d / f for f in weight_map.values()})
            for f in files:
                if not f.is_file():
                    what = "is not a file" if f.exists() else "is missing"
                    raise FileNotFoundError(
                        f"{index} names shard {f.relative_to(d)}, which {what} in {d}"
                    )
        else:
            files = sorted(d.glob("*.safetensors"))
        if not files:
            continue
        key_to_file: dict[str, Path] = {}
        headers: dict[str, dict] = {}
        for f in files:
            mapped = MappedFile(f)
            for key, h in mapped.header.items():
                if key in key_to_file:
                    raise CheckpointError(f"key {key} appears in both {key_to_file[key]} and {f}")
                key_to_file[key] = f
                headers[key] = dict(h, file_offset=mapped.data_start + h["data_offsets"][0])
        if weight_map is not None:
            for key, name in weight_map.items():
                if key_to_file.get(key) != d / name:
                    where = key_to_file.get(key)
                    raise CheckpointError(
                        f"{index}: says {key} is in {name}, but "
                        + (f"it is in {where.name}" if where else "no shard holds it")
                    )
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


def _check_layers(ckpt: CheckpointFiles, config: ModelConfig) -> None:
    """Cheap first check, before anything that grows with the config is built."""
    found = layer_indices(ckpt.key_to_file)
    n = config.num_hidden_layers
    if len(found) != n or (found and max(found) != n - 1):
        held = f"layers {min(found)}..{max(found)} ({len(found)})" if found else "no layers"
        raise CheckpointError(
            f"{ckpt.config_path}: num_hidden_layers is {n}, but the weights in {ckpt.directory} "
            f"hold {held}; does config.json belong to these weights?"
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
                f"{ckpt.key_to_file[key]}: {key} has shape {tuple(h['shape'])}; expected "
                f"{tuple(shape)} from {ckpt.config_path} {sizes}"
            )
        found_dtype = DTYPES.get(h["dtype"])
        ok = found_dtype == dtype or (dtype != U8 and found_dtype in (BF16, torch.float32))
        if not ok:
            raise CheckpointError(
                f"{ckpt.key_to_file[key]}: {key} has dtype {h['dtype']}; "
                f"expected {str(dtype).split('.')[-1]}"
            )


def read_config(path: str | os.PathLike) -> ModelConfig:
    return ModelConfig.from_json(find_checkpoint(path).config_path)


def _check_scales(scales: torch.Tensor, key: str, where: Path, first_expert: int = 0) -> None:
    """A scale byte of 255 is NaN in E8M0, and 253 or 254 (2^126, 2^127) turn E2M1 codes of
    2 or more into weights past bfloat16's and float32's maximum, Inf: refuse them all (they
    would poison every output they touch; no trained model has a block scale near 1e38)."""
    for low, what in (
        (255, "of 255 (NaN in E8M0)"),
        (
            253,
            "of 253 or 254 (2^126 or 2^127: its weights reach 6 times that, past the float maximum)",
        ),
    ):
        bad = (scales >= low).nonzero()
        if len(bad):
            idx = tuple(bad[0].tolist())
            idx = (idx[0] + first_expert, *idx[1:])
            raise CheckpointError(
                f"{where}: {key} has {len(bad)} scale byte(s) {what}, first at index "
                f"{idx} (expert, row, block); the file is corrupt: download or write it again"
            )


FINITE_CHUNK = 1 << 20  # elements checked at a time: one 2-4 MB scratch buffer
# float dtype -> (same-size integer view, mask clearing the sign, smallest non-finite magnitude):
# a float is NaN or Inf exactly when its exponent bits are all ones, i.e. |bits| >= that value.
_NONFINITE = {
    torch.bfloat16: (torch.int16, 0x7FFF, 0x7F80),
    torch.float16: (torch.int16, 0x7FFF, 0x7C00),
    torch.float32: (torch.int32, 0x7FFFFFFF, 0x7F800000),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000),
}


def check_finite(t: torch.Tensor, key: str, where, allow: bool = False) -> None:
    """Refuse NaN or Inf in a float tensor, naming it (a warning instead when allow=True).

    On the bits, chunk by chunk into one reused buffer: max(bits & ~sign) >= the all-ones
    exponent. No temporaries that scale with the tensor, one pass over its bytes (~5 GB/s on
    one core; benchmarks/memory_20b.py measures it on 20b's bf16 tensors).
    """
    import numpy as np

    if t.dtype not in _NONFINITE or t.numel() == 0:
        return
    int_dtype, mask, limit = _NONFINITE[t.dtype]
    flat = t.contiguous().view(-1).view(int_dtype).numpy()
    buf = np.empty(min(FINITE_CHUNK, flat.size), dtype=flat.dtype)
    for start in range(0, flat.size, FINITE_CHUNK):
        chunk = flat[start : start + FINITE_CHUNK]
        b = buf[: chunk.size]
        np.bitwise_and(chunk, mask, out=b)
        if b.max() < limit:
            continue
        values = t.reshape(-1)
        bad = (~torch.isfinite(values)).nonzero()
        first = int(bad[0])
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), t.shape))
        msg = (
            f"{where}: {key} holds {len(bad)} non-finite value(s) (NaN or Inf), first "
            f"{float(values[first])} at index {index}"
        )
        if allow:
            warnings.warn(msg + "; loading anyway (allow_nonfinite=True)", stacklevel=3)
            return
        raise CheckpointError(
            msg + "; the file is corrupt (download or write it again), or pass "
            "allow_nonfinite=True to load it anyway"
        )


def _narrower(stored: torch.dtype, dtype: torch.dtype) -> bool:
    """True when converting `stored` to `dtype` can overflow to Inf (float32 -> bfloat16)."""
    return torch.finfo(dtype).max < torch.finfo(stored).max


class CheckpointReader:
    """Tensors of a checkpoint as views of its memory-mapped files, one at a time.

        r = CheckpointReader(path)                       # headers only: no tensor is read
        r.config, r.layout
        w = r.tensor("block.0.attn.qkv.weight")          # original names in either layout
        mine = r.experts(layer=3, experts=range(8, 16))  # {"mlp1_weight.blocks": (8, 2I, H/32, 16),
                                                         #  "mlp1_weight.scales", "mlp1_bias", "mlp2_..."}

    `experts(...)` returns views of exactly those experts' bytes (experts are the first dim of
    each MXFP4 tensor, so a range is one contiguous slice of the file): an expert-parallel rank
    touches only its own experts' pages, a quarter of the experts -> a quarter of the bytes.
    Views of a MAP_PRIVATE mapping: writing into them changes this process's copy, never the file.
    """

    def __init__(self, path: str | os.PathLike, files: CheckpointFiles | None = None):
        self.files = files or find_checkpoint(path)
        self.layout = self.files.layout
        self.config = ModelConfig.from_json(self.files.config_path)
        _check_layers(self.files, self.config)  # before anything scales with the config
        self._maps: dict[Path, MappedFile] = {}
        self._checked = False

    def check(self) -> None:
        """Compare every key, shape and dtype with the config (from the headers alone)."""
        spec = original_spec(self.config) if self.layout == "original" else hf_spec(self.config)
        _check_tensors(self.files, spec, self.config)
        self._checked = True

    def raw(self, key: str, rows: range | None = None) -> torch.Tensor:
        """The tensor stored under `key` (the file's own name), a view of the mapping."""
        if not self._checked:  # no tensor of a shape or dtype the config does not describe
            self.check()
        if key not in self.files.key_to_file:
            raise KeyError(f"{self.files.directory}: no tensor {key!r} in the checkpoint")
        f = self.files.key_to_file[key]
        if f not in self._maps:
            self._maps[f] = MappedFile(f)
        return self._maps[f].tensor(key, rows)

    def tensor(self, name: str, rows: range | None = None) -> torch.Tensor:
        """The tensor of original key `name`; HF q/k/v are concatenated (a copy) for attn.qkv."""
        if self.layout == "original":
            return self.raw(name, rows)
        if name.endswith(("attn.qkv.weight", "attn.qkv.bias")):
            n, kind = int(name.split(".")[1]), name.rsplit(".", 1)[1]
            return torch.cat([self.raw(k) for k in hf_qkv_keys(n, kind)])
        return self.raw(hf_key(name), rows)

    def experts(self, layer: int, experts: range) -> dict[str, torch.Tensor]:
        """Expert weights of `layer` for a contiguous range of experts, reading only their bytes.

        Keys: mlp1_weight.blocks, mlp1_weight.scales, mlp1_bias, mlp2_weight.blocks,
        mlp2_weight.scales, mlp2_bias (original names, without "block.N.mlp."). Scales are
        checked for the NaN byte 255 (only the selected experts' scales are read).
        """
        E = self.config.num_experts
        if (
            not isinstance(experts, range)
            or experts.step != 1
            or not (0 <= experts.start < experts.stop <= E)
        ):
            raise ValueError(
                f"CheckpointReader.experts: experts must be a range a..b with 0 <= a < b <= "
                f"{E} (num_experts); found {experts!r}"
            )
        if not 0 <= layer < self.config.num_hidden_layers:
            raise ValueError(
                f"CheckpointReader.experts: layer must be in 0..{self.config.num_hidden_layers - 1}"
                f"; found {layer}"
            )
        out = {}
        for part in ("mlp1_weight.blocks", "mlp1_weight.scales", "mlp1_bias", "mlp2_weight.blocks",
                     "mlp2_weight.scales", "mlp2_bias"):  # fmt: skip
            name = f"block.{layer}.mlp.{part}"
            out[part] = self.tensor(name, rows=experts)
            if part.endswith("scales"):
                stored = name if self.layout == "original" else hf_key(name)
                _check_scales(out[part], stored, self.files.directory, experts.start)
        return out


_said_dense_quantize: set[str] = set()

# Expert tensors, by name: original block.N.mlp.mlp{1,2}_{weight.blocks,weight.scales,bias};
# Hugging Face model.layers.N.mlp.experts.*. (The routers, mlp.gate / mlp.router, are not.)
_EXPERT_MARKS = (".mlp.mlp1_", ".mlp.mlp2_", ".mlp.experts.")


def _is_expert_key(key: str) -> bool:
    """True for a tensor whose first dim is the expert (original or Hugging Face name)."""
    return any(m in key for m in _EXPERT_MARKS)


def _expert_rows(expert_range, num_experts: int) -> range | None:
    """load_checkpoint's expert_range as a range(lo, hi), checked against num_experts."""
    if expert_range is None:
        return None
    if isinstance(expert_range, range) and expert_range.step == 1:
        lo, hi = expert_range.start, expert_range.stop
    elif isinstance(expert_range, (tuple, list)) and len(expert_range) == 2:
        lo, hi = expert_range
    else:
        lo = hi = None
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi))
    if not ok or not 0 <= lo < hi <= num_experts:
        raise ValueError(
            f"load_checkpoint: expert_range must be (lo, hi) or range(lo, hi) with integers "
            f"0 <= lo < hi <= {num_experts} (the checkpoint's num_experts); found "
            f"{expert_range!r}"
        )
    return range(lo, hi)


def _refuse_partial_forward(mlp, args):
    lo, hi = mlp.local_experts.start, mlp.local_experts.stop
    raise RuntimeError(
        f"this MoE block holds experts {lo}..{hi - 1} of {mlp.num_experts} only (loaded with "
        "expert_range=...), so it cannot run alone; wrap the model with "
        "gptoss_edu.distributed.shard_experts(model) under torchrun (or load it with "
        "gptoss_edu.distributed.load_expert_parallel)"
    )


def load_checkpoint(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    experts: str = "mxfp4",
    backend: str = "auto",
    allow_nonfinite: bool = False,
    mmap: bool = True,
    expert_range: range | tuple[int, int] | None = None,
):
    """Load a gpt-oss checkpoint (either layout, detected) into a `GptOss` module.

    experts="mxfp4" (default): expert weights stay packed as stored, 4.25 bits per weight
    (gpt-oss-20b: ~13 GB); the MoE blocks run on `gptoss_edu.kernels` with `backend`.
    experts="dequantized": they are decoded to `dtype` (20b in bf16: ~42 GB), for training and
    for reading the weights as ordinary tensors. Everything else (attention, router, embeddings,
    norms, biases) is in `dtype`, bfloat16 or float32.

    mmap=True (default): the files are memory-mapped copy-on-write, and every tensor stored in
    the dtype it is used in (the packed experts always; the bf16 weights when dtype=bfloat16) IS
    a view of the mapping: no copy, the bytes stay the kernel's page cache (file-backed memory
    that the OS can drop and re-read), so gpt-oss-20b runs in less anonymous memory than its
    file. mmap=False copies every tensor into process memory (the loader before issue 15).

    config.json is compared with the file headers before anything that grows with the config is
    built; every key, shape and dtype is checked; every float tensor is checked for NaN/Inf
    (CheckpointError naming it; allow_nonfinite=True loads anyway with a warning) and every MXFP4
    scale for the NaN byte 255. Any error raises before a model exists. progress=None shows a
    tqdm bar when the checkpoint is over 200 MB.

    expert_range=(lo, hi) (or range(lo, hi)): for one rank of expert parallelism (chapter 17).
    Every MoE block holds experts lo..hi-1 only (their blocks, scales and biases), and only their
    bytes are read from the files and checked: the other experts' bytes are never touched. Such
    a model is not runnable alone (its router still chooses among all experts): it refuses a
    forward pass until `gptoss_edu.distributed.shard_experts` wraps it, which
    `gptoss_edu.distributed.load_expert_parallel` does.
    """
    from ..kernels import BACKENDS
    from ..model.moe import EXPERT_MODES
    from ..model.rope import yarn_inv_freq
    from ..model.transformer import GptOss
    from ..mxfp4 import dequantize, quantize

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
    reader = CheckpointReader(path)
    reader.check()
    ckpt, config = reader.files, reader.config
    local = _expert_rows(expert_range, config.num_experts)

    total = ckpt.nbytes()
    if local is not None:  # the other experts' bytes are not read
        expert_bytes = sum(
            h["data_offsets"][1] - h["data_offsets"][0]
            for k, h in ckpt.headers.items()
            if _is_expert_key(k)
        )
        total -= expert_bytes * (config.num_experts - len(local)) // config.num_experts
    show = progress if progress is not None else total > 200 * 10**6
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"loading {ckpt.directory.name}")

    def read(name: str) -> torch.Tensor:
        t = reader.tensor(name, local if _is_expert_key(name) else None)
        if bar is not None:
            bar.update(t.numel() * t.element_size())
        return t

    def raw(key: str) -> torch.Tensor:
        t = reader.raw(key, local if _is_expert_key(key) else None)
        if bar is not None:
            bar.update(t.numel() * t.element_size())
        return t

    def where(key: str) -> str | Path:
        """Where a tensor comes from, for error messages (indices are within a rank's slice)."""
        if local is None or not _is_expert_key(key):
            return ckpt.directory
        return f"{ckpt.directory} (experts {local.start}..{local.stop - 1}, indexed from 0)"

    state: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor, copied: bool = False) -> None:
        if not mmap and not copied:
            t = t.clone()
        state[name] = t.to(device=device)

    try:
        for name in original_spec(config):
            if name.endswith(".scales"):
                continue
            if name.endswith(".blocks"):
                param = name[: -len(".blocks")]  # block.N.mlp.mlp1_weight
                dense_key = None
                if ckpt.layout == "hf":
                    dense_key = hf_key(name)[: -len("_blocks")]
                if dense_key in ckpt.key_to_file:  # dense HF experts: (E, in, out) -> (E, out, in)
                    w = raw(dense_key)
                    check_finite(w, dense_key, where(dense_key), allow_nonfinite)
                    w = w.transpose(1, 2)
                    if experts == "dequantized":
                        c = w.to(dtype).contiguous()
                        if _narrower(w.dtype, dtype):  # float32 past bfloat16's max: Inf
                            conv = f"{dense_key} (converted from {w.dtype} to {dtype})"
                            check_finite(c, conv, where(dense_key), allow_nonfinite)
                        put(param, c, copied=True)
                        continue
                    if dense_key not in _said_dense_quantize:
                        _said_dense_quantize.add(dense_key)
                        warnings.warn(
                            f"load_checkpoint: {ckpt.directory} holds dense (dequantized) "
                            "experts; quantizing them to MXFP4 on load (pass "
                            "experts='dequantized' to keep them exactly)",
                            stacklevel=2,
                        )
                    packed = [quantize(w[e].float()) for e in range(w.shape[0])]
                    put(name, torch.stack([b for b, _ in packed]), copied=True)
                    put(param + ".scales", torch.stack([s for _, s in packed]), copied=True)
                    continue
                blocks, scales = read(name), read(param + ".scales")
                skey = param + ".scales" if ckpt.layout == "original" else hf_key(param + ".scales")
                _check_scales(scales, skey, ckpt.directory, local.start if local else 0)
                if experts == "mxfp4":
                    put(name, blocks)
                    put(param + ".scales", scales)
                else:  # decode expert by expert: temporaries stay 1/E of the tensor
                    w = torch.empty(
                        blocks.shape[0], *spec_shape_out(config, param)[1:], dtype=dtype
                    )
                    for e in range(w.shape[0]):
                        w[e] = dequantize(blocks[e], scales[e], dtype=dtype)
                    del blocks, scales
                    put(param, w, copied=True)
            else:
                t = read(name)
                stored = name if ckpt.layout == "original" or ".attn.qkv." in name else hf_key(name)
                check_finite(t, stored, where(name), allow_nonfinite)
                c = t.to(dtype)
                if _narrower(t.dtype, dtype):  # a float32 beyond bfloat16's range becomes Inf
                    conv = f"{stored} (converted from {t.dtype} to {dtype})"
                    check_finite(c, conv, where(name), allow_nonfinite)
                put(name, c, copied=t.dtype != dtype)
    finally:
        if bar is not None:
            bar.close()

    with torch.device("meta"):
        model = GptOss(config, experts=experts, backend=backend)
    if local is not None:
        from ..distributed import _keep_experts

        for block in model.block:  # on meta: the blocks' expert tensors shrink to `local`
            _keep_experts(block.mlp, local)
            block.mlp.local_experts = local
            block.mlp.register_forward_pre_hook(_refuse_partial_forward)
    model.load_state_dict(state, strict=True, assign=True)
    inv_freq = yarn_inv_freq(config)[0].float().to(device)
    for block in model.block:
        block.attn.rope.inv_freq = inv_freq.clone()
        if experts == "mxfp4":
            block.mlp.mlp1_weight.dtype = block.mlp.mlp2_weight.dtype = dtype
    model.checkpoint_layout = ckpt.layout
    model.checkpoint_mapped = mmap
    return model.eval()


def find_tokenizer(path: str | os.PathLike) -> Path | None:
    """The tokenizer.tiktoken a checkpoint ships (in its weights' folder or the repository root)."""
    path = Path(path)
    found = find_checkpoint(path)
    places = [found.directory, path if path.is_dir() else path.parent]
    if found.directory.name == "original":  # a repository root holding original/
        places.append(found.directory.parent)
    for d in places:
        if (d / "tokenizer.tiktoken").is_file():
            return d / "tokenizer.tiktoken"
    return None


def load_model_and_tokenizer(
    checkpoint: str | os.PathLike | None = None, dtype: torch.dtype | None = None, **kwargs
):
    """(model, tokenizer) for every command: the shipped tiny model when checkpoint is None,
    else the checkpoint with its own tokenizer.tiktoken when it ships one (the tiny model and
    everything `train` writes do), else gpt-oss's o200k_harmony.

    A tokenizer with more ids than the model's vocab_size is refused (it would index past the
    embedding): that is what using o200k on a small model trained with its own tokenizer does.
    """
    if checkpoint is None:
        from ..tiny import load_tiny

        return load_tiny(**({"dtype": dtype} if dtype else {}), **kwargs)
    path = Path(checkpoint).expanduser()
    if not recover(path).exists():
        raise FileNotFoundError(
            f"checkpoint {path}: no such file or directory; give a gpt-oss checkpoint folder "
            "(original layout or Hugging Face layout)"
        )
    rank_file = find_tokenizer(path)
    if rank_file is not None:
        from ..tokenizer.bpe import BPETokenizer

        tokenizer = BPETokenizer.load(rank_file)
    else:
        from ..tokenizer import o200k_harmony

        tokenizer = o200k_harmony()
    config = read_config(path)
    if tokenizer.n_vocab > config.vocab_size:
        where = rank_file or "o200k_harmony (no tokenizer.tiktoken in the checkpoint)"
        raise ValueError(
            f"checkpoint {path}: the tokenizer {where} has {tokenizer.n_vocab} ids but the "
            f"model's vocab_size is {config.vocab_size}; put the tokenizer the model was "
            "trained with beside its weights as tokenizer.tiktoken"
        )
    model = load_checkpoint(path, dtype=dtype or torch.bfloat16, **kwargs)
    return model, tokenizer


__all__ = [
    "CheckpointFiles",
    "CheckpointReader",
    "check_finite",
    "find_checkpoint",
    "find_tokenizer",
    "load_checkpoint",
    "load_model_and_tokenizer",
    "read_config",
]
