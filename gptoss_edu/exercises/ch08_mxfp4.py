"""Checkers for chapter 8's exercises (exercises/08_mxfp4.ipynb): E2M1 and E8M0 from their bits,
unpacking nibbles, dequantizing MXFP4, quantizing a block, and counting the bytes of a packed
weight.

    ge.exercises.check_decode_e2m1(my_decode_e2m1)   # ✅ check_decode_e2m1: passed

The references are `gptoss_edu.mxfp4` (chapter 8's final code). Each checker also recognises the
classic mistakes: exponent 0 treated as a normal number, a wrong exponent bias, nibbles in the
wrong order, the scale used as a multiplier instead of a power of two, the shared exponent
without the "- 2", rounding by truncation, forgetting the scale bytes.
"""

from __future__ import annotations

import math

import torch

from ..mxfp4 import FP4_VALUES, dequantize, quantize, unpack_codes
from ._common import Checker, ExerciseFailure, cases, expect_close

__all__ = [
    "check_decode_e2m1",
    "check_decode_scale",
    "check_unpack_nibbles",
    "check_dequantize_mxfp4",
    "check_quantize_block",
    "check_mxfp4_bytes",
    "check_int4_block",
]


def _as_float(x, what: str) -> float:
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ExerciseFailure(
                f"{what}: expected one number, got a tensor of shape {tuple(x.shape)}"
            )
        x = x.item()
    if not isinstance(x, (int, float)):
        raise ExerciseFailure(f"{what}: expected a Python float, got {type(x).__name__}")
    return float(x)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


@Checker("check_decode_e2m1")
def check_decode_e2m1(fn, seed=None):
    """fn(code: int) -> float, the E2M1 value of a 4-bit code (bit 3 sign, bits 2-1 exponent with
    bias 1, bit 0 mantissa; exponent 0 is subnormal). Exhaustive: hidden cases = visible ones."""
    got = [_as_float(fn(code), f"decode_e2m1({code})") for code in range(16)]
    want = FP4_VALUES
    if all(_same(g, w) for g, w in zip(got, want)):
        return "all 16 codes"
    if got[1] == 0.75 and got[0] == 0.5:
        raise ExerciseFailure(
            "code 0 gave 0.5 and code 1 gave 0.75: exponent 0 is treated as a normal number "
            "(1.m x 2^(0-1)). E2M1 has subnormals: exponent field 0 means 0.m x 2^(1-bias), so "
            "code 0 is 0 and code 1 is 0.5"
        )
    if all(g != 0 for g in got[2:8]):
        ratios = {round(g / w, 6) for g, w in zip(got[2:8], want[2:8])}
        if len(ratios) == 1 and ratios != {1.0}:
            r = ratios.pop()
            raise ExerciseFailure(
                f"codes 2-7 are all off by a factor {r:g}: wrong exponent bias (E2M1's bias is 1, "
                "so exponent field 1 means 2^0)"
            )
    if [abs(g) for g in got] == [abs(w) for w in want] or got[8:] == want[:8]:
        raise ExerciseFailure(
            "magnitudes are right but the signs are wrong: bit 3 (code >> 3) is the sign, and "
            "code 8 is -0.0 (write -value: 0.0 - value would give +0.0)"
        )
    bad = next(i for i in range(16) if not _same(got[i], want[i]))
    raise ExerciseFailure(f"code {bad} ({bad:04b}) gave {got[bad]!r}; expected {want[bad]!r}")


@Checker("check_decode_scale")
def check_decode_scale(fn, seed=None):
    """fn(s: int) -> float, the E8M0 scale 2^(s - 127); 255 is NaN."""
    todo = [127, 128, 120, 0, 1, 254, 131]
    todo += cases([], seed, lambda rng: rng.randrange(255), n=12)
    got = {s: _as_float(fn(s), f"decode_scale({s})") for s in todo}
    for s in todo:
        want = 2.0 ** (s - 127)
        if got[s] != want:
            if got[127] == 2.0 or got[127] == 0.5:
                raise ExerciseFailure(
                    f"decode_scale(127) = {got[127]}; expected 1.0: the bias of E8M0 is 127 "
                    "(off by one in the exponent)"
                )
            if got[s] == s or got[s] == s - 127:
                raise ExerciseFailure(
                    f"decode_scale({s}) = {got[s]}: the byte is an exponent, the scale is "
                    f"2^(s - 127) = {want!r}"
                )
            raise ExerciseFailure(
                f"decode_scale({s}) = {got[s]!r}; expected 2^({s}-127) = {want!r}"
            )
    nan = _as_float(fn(255), "decode_scale(255)")
    if not math.isnan(nan):
        raise ExerciseFailure(
            f"decode_scale(255) = {nan!r}; expected NaN: E8M0 has no infinity, 255 means NaN"
        )
    return None


@Checker("check_unpack_nibbles")
def check_unpack_nibbles(fn, seed=None):
    """fn(blocks (..., G, 16) uint8) -> codes (..., G, 32) uint8, element 2j from the low nibble."""
    g = torch.Generator().manual_seed(8 if seed is None else seed)
    shape = (3, 5, 16) if seed is None else (1 + seed % 4, 1 + seed % 7, 2 + seed % 3, 16)
    blocks = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    want = unpack_codes(blocks)
    got = fn(blocks)
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"expected a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        raise ExerciseFailure(f"wrong shape {tuple(got.shape)}; expected {tuple(want.shape)}")
    got = got.to(torch.uint8)
    if torch.equal(got, want):
        return None
    swapped = torch.stack([blocks >> 4, blocks & 0x0F], dim=-1).flatten(-2)
    if torch.equal(got, swapped):
        raise ExerciseFailure(
            "high and low nibbles are swapped: element 2j is the LOW nibble (byte & 0x0F), "
            "element 2j+1 the high one (byte >> 4)"
        )
    concat = torch.cat([blocks & 0x0F, blocks >> 4], dim=-1)
    if torch.equal(got, concat):
        raise ExerciseFailure(
            "all low nibbles then all high nibbles: interleave them instead (stack on a new last "
            "dim, then flatten), so that byte j gives elements 2j and 2j+1"
        )
    raise ExerciseFailure("codes differ from the expected ones (check the order of the nibbles)")


@Checker("check_dequantize_mxfp4")
def check_dequantize_mxfp4(fn, seed=None):
    """fn(blocks (..., G, 16), scales (..., G)) -> float32 weights (..., G*32)."""
    g = torch.Generator().manual_seed(80 if seed is None else seed)
    lead = (2, 4, 3) if seed is None else (1 + seed % 3, 2 + seed % 5)
    blocks = torch.randint(0, 256, (*lead, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(118, 130, lead, dtype=torch.uint8, generator=g)
    want = dequantize(blocks, scales, torch.float32)
    got = fn(blocks, scales)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape):
        lut = torch.tensor(FP4_VALUES)
        values = lut[unpack_codes(blocks).long()]
        as_mult = (values * scales.float()[..., None]).flatten(-2)
        if torch.allclose(got.float(), as_mult):
            raise ExerciseFailure(
                "the scale byte was used as a multiplier: the scale is 2^(s - 127), not s"
            )
        swapped = torch.stack([blocks >> 4, blocks & 0x0F], dim=-1).flatten(-2)
        if torch.allclose(
            got.float(),
            (lut[swapped.long()] * 2.0 ** (scales[..., None].double() - 127)).flatten(-2).float(),
        ):
            raise ExerciseFailure("nibbles swapped: element 2j is the low nibble of byte j")
    expect_close(got, want, "dequantize_mxfp4(blocks, scales)", rtol=0, atol=0)
    return None


@Checker("check_quantize_block")
def check_quantize_block(fn, seed=None):
    """fn(w (32,) float32) -> (codes (32,) uint8 in 0..15, scale byte int): one MXFP4 block."""
    g = torch.Generator().manual_seed(800)

    def draw(rng):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        w = torch.randn(32, generator=gen) * 10 ** rng.uniform(-3, 2)
        if rng.random() < 0.5:  # values on grid midpoints of this block's scale: ties
            amax = float(w.abs().max())
            step = 2.0 ** (math.frexp(amax)[1] - 1 - 2) / 4
            w[:8] = torch.tensor([1.25, 2.5, 0.75, -1.25, 5.0, -2.5, 0.25, 3.5]) * step * 2
        return w

    visible = [
        torch.tensor([0.9, 0.3, -0.05, 0.19] + [0.0] * 28),
        torch.randn(32, generator=g) * 0.02,
        torch.tensor([1.0, -0.25, 0.125, 0.375] * 8),  # ties: 0.375 / 0.25 = 1.5, exactly on grid
        torch.tensor([0.0, 0.3125, 0.625, 1.25] + [0.0] * 28),  # midpoints 1.25 and 2.5 when / 0.25
        torch.randn(32, generator=g) * 3.0,
    ]
    blocks_to_check = cases(visible, seed, draw, n=6)
    for w in blocks_to_check:
        blocks, scales = quantize(w[None])
        want_codes, want_s = unpack_codes(blocks)[0, 0], int(scales[0, 0])
        out = fn(w.clone())
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ExerciseFailure("expected a tuple (codes, scale_byte)")
        codes, s = out
        s = int(s)
        if s != want_s:
            amax = float(w.abs().max())
            if s == want_s + 2:
                raise ExerciseFailure(
                    f"scale byte {s}, expected {want_s}: the shared exponent is "
                    f"floor(log2(amax)) - 2 (amax = {amax:g}), so the largest value lands in E2M1's "
                    "top binade [4, 8); you left out the - 2"
                )
            raise ExerciseFailure(
                f"scale byte {s} for amax {amax:g}; expected {want_s} = floor(log2(amax)) - 2 + 127"
            )
        codes = torch.as_tensor(codes).to(torch.uint8).reshape(-1)
        if not torch.equal(codes, want_codes):
            lut = torch.tensor(FP4_VALUES)
            scaled = w / 2.0 ** (s - 127)
            i = int((codes != want_codes).nonzero()[0])
            got_v, want_v = float(lut[codes[i].long()]), float(lut[want_codes[i].long()])
            hint = ""
            if abs(got_v) < abs(want_v) and abs(float(scaled[i])) < 6:
                hint = " (rounded toward zero: round to the NEAREST E2M1 value, ties to even)"
            raise ExerciseFailure(
                f"element {i}: w / scale = {float(scaled[i]):g} became {got_v:g}; expected "
                f"{want_v:g}{hint}"
            )
    return f"{len(blocks_to_check)} blocks, ties and saturation included"


@Checker("check_mxfp4_bytes")
def check_mxfp4_bytes(fn, seed=None):
    """fn(shape: tuple) -> int, bytes of an MXFP4 weight of logical shape (..., N, K)."""

    def draw(rng):
        lead = tuple(rng.randint(1, 64) for _ in range(rng.randint(0, 2)))
        return (*lead, 32 * rng.randint(1, 200))

    visible = [(32, 5760, 2880), (2880, 4096), (128, 2880, 2880), (1, 32)]
    for shape in cases(visible, seed, draw):
        n = math.prod(shape)
        want = n // 2 + n // 32
        got = fn(shape)
        if got != want:
            if got == n // 2:
                raise ExerciseFailure(
                    f"{shape}: {got:,} bytes counts only the 4-bit codes; add one scale byte per "
                    f"32 weights: {want:,}"
                )
            if got == n * 2:
                raise ExerciseFailure(
                    f"{shape}: {got:,} bytes is bf16's size; MXFP4 is 4.25 bits per weight"
                )
            raise ExerciseFailure(f"{shape}: got {got!r} bytes; expected {want:,}")
    return None


# ---- extension: int4 with one scale per 32 weights, the fair control for MXFP4 ------------------


def _int4_blocks(w: torch.Tensor, block: int, levels: int = 7, low: int = -7) -> torch.Tensor:
    """Symmetric int4 per block: scale = max|w| / 7 (float32), q = round(w / scale) in -7..7.
    (levels, low) = (8, -8) or (8, -7) are the classic mistake of dividing by 8."""
    g = w.float().reshape(*w.shape[:-1], -1, block)  # (..., K/block, block)
    scale = g.abs().amax(dim=-1, keepdim=True) / levels
    q = torch.round(g / torch.where(scale == 0, torch.ones_like(scale), scale)).clamp(low, 7)
    return (q * scale).reshape(w.shape)


@Checker("check_int4_block")
def check_int4_block(fn, seed=None):
    """fn(w (..., K) float32, block) -> the weights after symmetric int4 quantization with one
    float32 scale per `block` consecutive weights (scale = max|w| / 7, codes -7..7), dequantized."""

    def draw(rng):
        shape = (rng.randint(2, 6), 32 * rng.randint(1, 6))
        return shape, rng.choice([32, 32, 16, shape[1]]), rng.randrange(2**31)

    for shape, block, data_seed in cases([((4, 64), 32, 0), ((3, 96), 96, 1)], seed, draw):
        g = torch.Generator().manual_seed(data_seed)
        w = torch.randn(shape, generator=g) * 0.02
        w[0, :block] = 0.0  # an all-zero block: its scale is 0, nothing to divide by
        want = _int4_blocks(w, block)
        got = fn(w.clone(), block)
        where = f"int4 of a {shape} weight, block {block}"
        if isinstance(got, torch.Tensor) and got.shape == w.shape:
            if torch.allclose(got.double(), want.double(), rtol=1e-5, atol=1e-7):
                continue
            if bool(torch.isnan(got).any()):
                raise ExerciseFailure(
                    f"{where}: NaN in the result; a block of zeros has scale 0, so w / scale is "
                    "0/0. Divide by 1 where the scale is 0 (the codes are 0 anyway)"
                )
            by_8 = [_int4_blocks(w, block, levels=8, low=low) for low in (-8, -7)]
            if any(torch.allclose(got.float(), v, atol=1e-9) for v in by_8):
                raise ExerciseFailure(
                    f"{where}: your scale is max|w| / 8; with a symmetric grid -7..7 the largest "
                    "weight maps to 7 (max|w| / 7), or it would be clipped"
                )
            if block != w.shape[-1] and torch.allclose(
                got.float(), _int4_blocks(w, w.shape[-1]), atol=1e-9
            ):
                raise ExerciseFailure(
                    f"{where}: one scale per row; the exercise asks one per block"
                )
        expect_close(got, want, where, rtol=1e-5, atol=1e-7)
    return "symmetric int4, one scale per block"
