"""Safetensors files: a validating header parser, a memory-mapped reader, a streaming writer
(chapter 12).

Layout of a file: 8-byte little-endian header length n, n bytes of JSON
{key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
tensors' bytes; offsets count from the end of the header.

Every file is untrusted input, so `parse_header` checks it at the boundary, before anything
is allocated from what it says: the header length is capped (100 MB, the format's own limit)
before it is read; the JSON nesting depth is bounded before it is parsed (no RecursionError),
in linear time; the JSON is UTF-8 with no key given twice; every entry has a known dtype, a
shape of non-negative ints (whose product fits in int64) and a byte size that matches its
data_offsets; and the offsets tile the data region exactly (no overlap, no gap, nothing past
the end of the file).

`MappedFile` maps a file once (mmap, MAP_PRIVATE: copy-on-write, so writing into a tensor
never touches the file and never faults) and hands out tensors that ARE views of the mapping:
no copy, and the pages stay the kernel's page cache (file-backed, not the process's anonymous
memory), read from disk the first time they are touched. Only the bytes of the tensors (or
tensor slices) actually used are ever read.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from pathlib import Path

import torch

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
MAX_JSON_DEPTH = 4  # {key: {"shape": [..]}} is 3 deep; __metadata__ {str: str} is 2

DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint on disk that cannot describe the model: says which file or key, and why."""


# a whole string, or a bracket, or a quote that starts a string never closed
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|["\[\]{}]', re.DOTALL)
MAX_ELEMENTS = 2**63  # torch's sizes and strides are int64


def _json_depth(raw: bytes) -> int:
    """Deepest nesting of [ and { in a JSON text, strings skipped; linear, no recursion.

    The scan stops at a string that is never closed (json.loads refuses it): retrying from each
    later quote, as a plain search for strings does, is quadratic (hours on a 100 MB header).
    """
    depth = deepest = 0
    for m in _TOKEN.finditer(raw):
        tok = m.group()
        if tok == b'"':
            break
        if tok[:1] != b'"':
            depth += 1 if tok in (b"[", b"{") else -1
            deepest = max(deepest, depth)
    return deepest


def _unique_keys(pairs: list) -> dict:
    """json.loads object_pairs_hook: refuse a key given twice (parsers differ on which wins)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse_header(raw: bytes, data_bytes: int, where: str = "safetensors") -> dict[str, dict]:
    """Validate a header's JSON bytes against a data region of `data_bytes` bytes.

    Returns {key: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}} (offsets
    relative to the data region, as in the file), "__metadata__" removed. Raises CheckpointError naming the
    file, the key and what is wrong.
    """
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise CheckpointError(
            f"{where}: corrupt safetensors header: JSON nested deeper than {MAX_JSON_DEPTH} "
            "levels (a safetensors header is 3 deep)"
        )
    try:  # UTF-8 only (json.loads would take UTF-16/32 bytes too); ValueError covers bad JSON,
        # bad UTF-8, a duplicate key and an int literal of more than 4300 digits
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{where}: corrupt safetensors header: expected a JSON object, "
            f"found {type(header).__name__}"
        )
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise CheckpointError(
            f"{where}: corrupt safetensors header: __metadata__ must map strings to strings"
        )
    out: dict[str, dict] = {}
    for key, h in header.items():
        bad = f"{where}: corrupt safetensors header entry for {key!r}: {h!r:.200}"
        if not isinstance(h, dict) or set(h) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(bad + " (expected exactly dtype, shape and data_offsets)")
        dtype, shape, offsets = h["dtype"], h["shape"], h["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(f"{bad} (dtype must be one of {sorted(DTYPES)})")
        if not isinstance(shape, list) or not all(_int(d) for d in shape):
            raise CheckpointError(bad + " (shape must be a list of non-negative integers)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(x) for x in offsets)):
            raise CheckpointError(bad + " (data_offsets must be [begin, end], integers >= 0)")
        begin, end = offsets
        numel = span = 1  # span: the product of the non-zero dims, bounded as it grows
        for d in shape:
            numel, span = numel * d, span * max(d, 1)
            if span >= MAX_ELEMENTS:
                raise CheckpointError(
                    f"{bad} (shape's dims multiply to 2**63 or more; torch cannot hold it)"
                )
        nbytes = numel * DTYPES[dtype].itemsize
        if end - begin != nbytes:
            raise CheckpointError(
                f"{where}: corrupt safetensors header: {key} has shape {shape} {dtype} "
                f"({nbytes} bytes) but data_offsets {[begin, end]} ({end - begin} bytes)"
            )
        out[key] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
    # the tensors must tile the data region exactly: sorted by offset, each starts where the
    # previous ended, the first at 0, the last at the end of the file
    pos, prev = 0, None
    for key, h in sorted(out.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = h["data_offsets"]
        if begin != pos:
            what = "overlaps" if begin < pos else "leaves a gap after"
            raise CheckpointError(
                f"{where}: corrupt safetensors header: {key} (bytes {begin}..{end}) "
                f"{what} {prev or 'the start of the data'} (which ends at byte {pos})"
            )
        pos, prev = end, key
    if pos != data_bytes:
        if pos > data_bytes:
            raise CheckpointError(
                f"{where}: truncated safetensors file: the tensors need {pos} bytes after the "
                f"header, the file has {data_bytes}; download or write it again"
            )
        raise CheckpointError(
            f"{where}: corrupt safetensors file: {data_bytes - pos} bytes after the last tensor "
            "that no tensor describes"
        )
    return out


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict], int]:
    """(validated header, byte offset of the data region) of one safetensors file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        n = int.from_bytes(raw, "little")
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: safetensors header length {n:,} bytes exceeds the format's limit of "
                f"{MAX_HEADER_BYTES:,}; not a safetensors file, or corrupt"
            )
        if n <= 0 or 8 + n > size:
            raise CheckpointError(
                f"{path}: safetensors header says {n} header bytes but the file has {size} bytes "
                "(truncated or not a safetensors file); download it again"
            )
        raw = f.read(n)
    return parse_header(raw, size - 8 - n, str(path)), 8 + n


class MappedFile:
    """One safetensors file mapped copy-on-write; `tensor(key)` is a zero-copy view.

    The mapping lives as long as any tensor made from it (torch keeps a reference to the
    buffer). Replacing the file by rename (as `save_checkpoint` does) leaves a running model on
    the old bytes; truncating it in place under a running model would fault (SIGBUS), as for any
    memory-mapped program.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.header, self.data_start = read_header(self.path)
        self._map = None

    def _mapping(self):
        if self._map is None:
            with open(self.path, "rb") as f:
                # ACCESS_COPY = MAP_PRIVATE, PROT_READ|PROT_WRITE: writes go to private pages
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        return self._map

    def keys(self):
        return self.header.keys()

    def tensor(self, key: str, rows: range | None = None) -> torch.Tensor:
        """The tensor `key` (or the slice [rows] along its first dim) as a view of the file.

        A slice touches only its own bytes: this is how one rank reads only its experts.
        If the bytes are not aligned for the dtype (files not written by the safetensors
        library or by us), a copy is returned instead.
        """
        h = self.header[key]
        shape, dtype = list(h["shape"]), DTYPES[h["dtype"]]
        begin = self.data_start + h["data_offsets"][0]
        if rows is not None:
            if not shape or rows.step != 1 or not (0 <= rows.start <= rows.stop <= shape[0]):
                raise IndexError(
                    f"{self.path}: {key}: rows {rows} out of range for shape {tuple(shape)}"
                )
            row_bytes = (h["data_offsets"][1] - h["data_offsets"][0]) // max(shape[0], 1)
            begin += rows.start * row_bytes
            shape[0] = len(rows)
        numel = 1
        for d in shape:
            numel *= d
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        mm = self._mapping()
        if begin % dtype.itemsize:
            raw = torch.frombuffer(
                mm, dtype=torch.uint8, count=numel * dtype.itemsize, offset=begin
            )
            return raw.clone().view(dtype).reshape(shape)
        return torch.frombuffer(mm, dtype=dtype, count=numel, offset=begin).reshape(shape)


def write_safetensors(path: str | os.PathLike, entries, metadata: dict | None = None) -> None:
    """Write a safetensors file from `entries`: [(key, dtype, shape, source)], streamed.

    `source` is a tensor (written as its bytes) or a callable yielding numpy/bytes chunks.
    Tensors are laid out by decreasing element size (as the safetensors library does), so that
    every tensor's data is aligned for its dtype; the header is padded to 8 bytes. The file is
    flushed and fsync'ed before returning.
    """
    entries = sorted(entries, key=lambda e: -e[1].itemsize)  # stable: keeps order within a size
    header, offset = {}, 0
    for key, dtype, shape, _ in entries:
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        header[key] = {
            "dtype": NAMES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for key, dtype, shape, source in entries:
            want = header[key]["data_offsets"][1] - header[key]["data_offsets"][0]
            got = 0
            if isinstance(source, torch.Tensor):
                t = source.detach().cpu().contiguous()
                if t.dtype != dtype or tuple(t.shape) != tuple(shape):
                    raise ValueError(
                        f"write_safetensors: {key} is {t.dtype} {tuple(t.shape)}; "
                        f"declared {dtype} {tuple(shape)}"
                    )
                if t.numel():
                    f.write(memoryview(t.view(-1).view(torch.uint8).numpy()))
                got = t.numel() * t.element_size()
            else:
                for chunk in source():
                    f.write(memoryview(chunk))
                    got += memoryview(chunk).nbytes
            if got != want:
                raise ValueError(f"write_safetensors: {key}: wrote {got} bytes, declared {want}")
        f.flush()
        os.fsync(f.fileno())


__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "CheckpointError",
    "MappedFile",
    "parse_header",
    "read_header",
    "write_safetensors",
]
