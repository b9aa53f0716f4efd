"""Chapter 12's checkers accept a right answer and name each classic mistake."""

import json
import math

import torch

from gptoss_edu.checkpoint import _hf_names, original_spec
from gptoss_edu.exercises import ch12_checkpoints as ch


def run(check, fn, capsys):
    ok = check(fn)
    return ok, capsys.readouterr().out


def read_header(path, keep_meta=False):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8 : 8 + n])
    if not keep_meta:
        h.pop("__metadata__")
    return h


def read_tensor(path, key, base=None):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    e = json.loads(raw[8 : 8 + n])[key]
    b, end = e["data_offsets"]
    start = 8 + n if base is None else base(n)
    dt = {"BF16": torch.bfloat16, "F32": torch.float32, "U8": torch.uint8}[e["dtype"]]
    return torch.frombuffer(bytearray(raw[start + b : start + end]), dtype=dt).reshape(e["shape"])


def test_read_header(capsys):
    assert run(ch.check_read_header, read_header, capsys)[0]
    ok, out = run(ch.check_read_header, lambda p: read_header(p, keep_meta=True), capsys)
    assert not ok and "__metadata__" in out


def test_read_tensor(capsys):
    assert run(ch.check_read_tensor, read_tensor, capsys)[0]
    ok, out = run(ch.check_read_tensor, lambda p, k: read_tensor(p, k, base=lambda n: 0), capsys)
    assert not ok and "end of the header" in out
    ok, out = run(ch.check_read_tensor, lambda p, k: read_tensor(p, k, base=lambda n: n), capsys)
    assert not ok and "8 bytes" in out


def hf_key(key, swap=False):
    top = {
        "embedding.weight": "model.embed_tokens.weight",
        "norm.scale": "model.norm.weight",
        "unembedding.weight": "lm_head.weight",
    }
    if key in top:
        return top[key]
    n = int(key.split(".")[1])
    table = {o: h for h, o in _hf_names(n).items()}
    out = table[key]
    if swap:
        out = out.replace("input_layernorm", "X").replace(
            "post_attention_layernorm", "input_layernorm"
        )
        out = out.replace("X", "post_attention_layernorm")
    return out


def test_hf_key(capsys):
    assert run(ch.check_hf_key, hf_key, capsys)[0]
    ok, out = run(ch.check_hf_key, lambda k: hf_key(k, swap=True), capsys)
    assert not ok and "swapped" in out


def loaded_bytes(cfg, experts, scales=True, itemsize=2):
    total = 0
    for key, (shape, dtype) in original_spec(cfg).items():
        n = math.prod(shape)
        if experts == "mxfp4":
            total += n * dtype.itemsize if (scales or not key.endswith(".scales")) else 0
        elif key.endswith(".blocks"):
            total += 2 * n * itemsize
        elif not key.endswith(".scales"):
            total += n * itemsize
    return total


def test_loaded_bytes(capsys):
    assert run(ch.check_loaded_bytes, loaded_bytes, capsys)[0]
    ok, out = run(ch.check_loaded_bytes, lambda c, e: loaded_bytes(c, e, scales=False), capsys)
    assert not ok and "scales" in out
    ok, out = run(ch.check_loaded_bytes, lambda c, e: loaded_bytes(c, e, itemsize=4), capsys)
    assert not ok and "float32" in out


def validate_header(path, check_dtype=True, check_overlap=True):
    """Independent: reads the whole file, checks each promise of the format."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    if 8 + n > len(raw):
        raise ValueError(f"header length {n} runs past the end of the file")
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    sizes = {"BF16": 2, "F32": 4, "U8": 1, "F16": 2, "I64": 8}
    used = []
    for key, e in header.items():
        if check_dtype and e["dtype"] not in sizes:
            raise ValueError(f"{key}: dtype {e['dtype']}")
        b, end = e["data_offsets"]
        if end - b != math.prod(e["shape"]) * sizes.get(e["dtype"], 2):  # the damaged one is bf16
            raise ValueError(f"{key}: size")
        if end > len(raw) - 8 - n:
            raise ValueError(f"{key}: past the end")
        for b2, e2, k2 in used:
            if check_overlap and b < e2 and b2 < end:
                raise ValueError(f"{key} overlaps {k2}")
        used.append((b, end, key))
    return header


def test_validate_header(capsys):
    ok, out = run(ch.check_validate_header, validate_header, capsys)
    assert ok and out.startswith("✅"), out
    ok, out = run(lambda f: ch.check_validate_header(f, seed=8), validate_header, capsys)
    assert ok, out
    ok, out = run(ch.check_validate_header, lambda p: validate_header(p, check_dtype=False), capsys)
    assert not ok and "unknown dtype" in out, out
    ok, out = run(
        ch.check_validate_header, lambda p: validate_header(p, check_overlap=False), capsys
    )
    assert not ok and "sharing bytes" in out, out

    def unnamed(path):
        try:
            return validate_header(path)
        except ValueError:
            raise ValueError("bad file") from None

    ok, out = run(ch.check_validate_header, unnamed, capsys)
    assert not ok and "does not name the tensor" in out, out


def test_every_ch12_checker_has_hidden_cases():
    assert all(getattr(ch, name).hidden for name in ch.__all__)
