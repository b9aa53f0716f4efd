"""Chapter 8's checkers accept a right answer and name each classic mistake."""

import math

import torch

import gptoss_edu as ge
from gptoss_edu.exercises import ch08_mxfp4 as ch

FP4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def run(check, fn, capsys):
    ok = check(fn)
    return ok, capsys.readouterr().out


def e2m1(code, bias=1, subnormal=True, sign_bit=3):
    sign, e, m = (code >> sign_bit) & 1, (code >> 1) & 3, code & 1
    if e == 0 and subnormal:
        v = (m / 2) * 2.0 ** (1 - bias)
    else:
        v = (1 + m / 2) * 2.0 ** (e - bias)
    return -v if sign else v


def test_decode_e2m1(capsys):
    assert run(ch.check_decode_e2m1, e2m1, capsys)[0]
    ok, out = run(ch.check_decode_e2m1, lambda c: e2m1(c, subnormal=False), capsys)
    assert not ok and "subnormal" in out
    ok, out = run(ch.check_decode_e2m1, lambda c: e2m1(c, bias=0), capsys)
    assert not ok and "bias" in out and "factor 2" in out
    ok, out = run(ch.check_decode_e2m1, lambda c: abs(e2m1(c)), capsys)
    assert not ok and "sign" in out
    ok, out = run(ch.check_decode_e2m1, lambda c: FP4[c] if c != 8 else 0.0, capsys)
    assert not ok and "code 8" in out


def test_decode_scale(capsys):
    right = lambda s: float("nan") if s == 255 else 2.0 ** (s - 127)
    assert run(ch.check_decode_scale, right, capsys)[0]
    ok, out = run(ch.check_decode_scale, lambda s: 2.0 ** (s - 128), capsys)
    assert not ok and "bias" in out and "off by one" in out
    ok, out = run(ch.check_decode_scale, lambda s: 2.0 ** (s - 127), capsys)
    assert not ok and "NaN" in out
    ok, out = run(ch.check_decode_scale, lambda s: float(s), capsys)
    assert not ok and "exponent" in out


def test_unpack_nibbles(capsys):
    right = lambda b: torch.stack([b & 0x0F, b >> 4], -1).flatten(-2)
    assert run(ch.check_unpack_nibbles, right, capsys)[0]
    ok, out = run(
        ch.check_unpack_nibbles, lambda b: torch.stack([b >> 4, b & 15], -1).flatten(-2), capsys
    )
    assert not ok and "swapped" in out and "LOW" in out
    ok, out = run(ch.check_unpack_nibbles, lambda b: torch.cat([b & 15, b >> 4], -1), capsys)
    assert not ok and "interleave" in out


def dequant(blocks, scales, swap=False, mult=False):
    lut = torch.tensor(FP4)
    lo, hi = blocks & 15, blocks >> 4
    codes = torch.stack([hi, lo] if swap else [lo, hi], -1).flatten(-2)
    s = scales.float() if mult else torch.exp2(scales.double() - 127).float()
    return (lut[codes.long()] * s[..., None]).flatten(-2)


def test_dequantize(capsys):
    assert run(ch.check_dequantize_mxfp4, dequant, capsys)[0]
    ok, out = run(ch.check_dequantize_mxfp4, lambda b, s: dequant(b, s, mult=True), capsys)
    assert not ok and "2^(s - 127)" in out
    ok, out = run(ch.check_dequantize_mxfp4, lambda b, s: dequant(b, s, swap=True), capsys)
    assert not ok and "swapped" in out
    ok, out = run(ch.check_dequantize_mxfp4, lambda b, s: dequant(b, s).double(), capsys)
    assert not ok and "dtype" in out


def quantize_block(w, minus=2, rounding="nearest"):
    amax = float(w.abs().max())
    s = 127 if amax == 0 else math.frexp(amax)[1] - 1 - minus + 127
    mags = FP4[:8]
    codes = []
    for x in (w / 2.0 ** (s - 127)).tolist():
        if rounding == "nearest":
            c = min(range(8), key=lambda c: (abs(abs(x) - mags[c]), c % 2))
        else:  # truncate toward zero
            c = max(c for c in range(8) if mags[c] <= min(abs(x), 6.0))
        codes.append(c | (8 if math.copysign(1, x) < 0 else 0))
    return torch.tensor(codes, dtype=torch.uint8), s


def test_quantize_block(capsys):
    ok, out = run(ch.check_quantize_block, quantize_block, capsys)
    assert ok, out
    ok, out = run(ch.check_quantize_block, lambda w: quantize_block(w, minus=0), capsys)
    assert not ok and "- 2" in out
    ok, out = run(ch.check_quantize_block, lambda w: quantize_block(w, rounding="trunc"), capsys)
    assert not ok and "NEAREST" in out
    # the reference agrees with the package's quantize on a random block
    w = torch.randn(32) * 0.1
    codes, s = quantize_block(w)
    b, sc = ge.mxfp4.quantize(w[None])
    assert s == int(sc[0, 0]) and torch.equal(ge.mxfp4.unpack_codes(b)[0, 0], codes)


def test_mxfp4_bytes(capsys):
    assert run(ch.check_mxfp4_bytes, lambda sh: math.prod(sh) * 17 // 32, capsys)[0]
    ok, out = run(ch.check_mxfp4_bytes, lambda sh: math.prod(sh) // 2, capsys)
    assert not ok and "scale byte" in out
    ok, out = run(ch.check_mxfp4_bytes, lambda sh: math.prod(sh) * 2, capsys)
    assert not ok and "bf16" in out


def test_unfinished_is_friendly(capsys):
    def todo(*a):
        raise NotImplementedError("fill me")

    ok, out = run(ch.check_decode_e2m1, todo, capsys)
    assert not ok and out.startswith("⏳")


def int4_block(w, block, levels=7, per_row=False):
    """Independent: a Python loop over blocks, float64."""
    out = torch.empty_like(w)
    flat, res = w.reshape(-1, w.shape[-1]).double(), out.reshape(-1, w.shape[-1])
    size = w.shape[-1] if per_row else block
    for r in range(flat.shape[0]):
        for b in range(0, w.shape[-1], size):
            g = flat[r, b : b + size]
            scale = float(g.abs().max()) / levels
            q = [0.0 if scale == 0 else max(-7, min(7, round(float(x) / scale))) for x in g]
            res[r, b : b + size] = torch.tensor(q, dtype=torch.float64) * scale
    return out


def test_int4_block(capsys):
    ok, out = run(ch.check_int4_block, int4_block, capsys)
    assert ok and out.startswith("✅"), out
    ok, out = run(lambda f: ch.check_int4_block(f, seed=4), int4_block, capsys)
    assert ok, out
    ok, out = run(ch.check_int4_block, lambda w, b: int4_block(w, b, levels=8), capsys)
    assert not ok and "max|w| / 8" in out, out
    ok, out = run(ch.check_int4_block, lambda w, b: int4_block(w, b, per_row=True), capsys)
    assert not ok and "one scale per row" in out, out

    def nan_on_zeros(w, block):
        g = w.reshape(*w.shape[:-1], -1, block)
        scale = g.abs().amax(-1, keepdim=True) / 7
        return (torch.round(g / scale).clamp(-7, 7) * scale).reshape(w.shape)

    ok, out = run(ch.check_int4_block, nan_on_zeros, capsys)
    assert not ok and "NaN" in out, out


def test_every_ch08_checker_has_hidden_cases():
    assert all(getattr(ch, name).hidden for name in ch.__all__)
