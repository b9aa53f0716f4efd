"""Checkers for chapter 10's exercises (exercises/10_quantized_matmul.ipynb): a naive MXFP4 GEMV,
the bytes of a packed matrix, arithmetic intensity, the roofline time, effective bandwidth, and
version 5's decode: `vpermps` emulated, then a block decoded with it.

    ge.exercises.check_mxfp4_gemv(my_gemv)   # ✅ check_mxfp4_gemv: passed

The references are `gptoss_edu.mxfp4.dequantize` and chapter 10's formulas. Each checker also
recognises the classic mistakes: the two nibbles of a byte in swapped order, the scale exponent
without its bias of 127, the scale byte used as a multiplier, the sign bit ignored, the scale
bytes forgotten in a byte count, the factor 2 of a multiply-add, a sum (or a min) where the
roofline takes the max, an index that vpermps would take whole, the block left in split order,
and the factor 2 of the doubled table not undone.
"""

from __future__ import annotations

import math

import torch

from ..mxfp4 import FP4_VALUES, dequantize
from ._common import Checker, ExerciseFailure, cases, expect_close

__all__ = [
    "check_mxfp4_gemv",
    "check_packed_bytes",
    "check_arithmetic_intensity",
    "check_roofline_seconds",
    "check_effective_gbs",
    "check_roofline_point",
    "check_vpermps",
    "check_decode_block_vpermps",
]


def _random_weight(N: int, G: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (N, G, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(122, 132, (N, G), dtype=torch.uint8, generator=g)
    x = torch.randn(G * 32, generator=g)
    return x, blocks, scales


def _decode_variant(blocks, scales, swap=False, bias=127, multiplier=False, unsigned=False):
    """float64 (N, K) decode with one deliberate mistake, to recognise a reader's result."""
    lut = torch.tensor(FP4_VALUES, dtype=torch.float64)
    if unsigned:
        lut = lut.abs()
    lo, hi = (blocks & 15).long(), (blocks >> 4).long()
    if swap:
        lo, hi = hi, lo
    codes = torch.stack([lo, hi], dim=-1).flatten(-2)  # (N, G, 32)
    s = scales.double()
    scale = s if multiplier else torch.exp2(s - bias)
    return (lut[codes] * scale[..., None]).flatten(-2)


_ROOF = ((6, 13), (5, 11), (10, 15), (9, 13))  # log10 ranges: flops, bytes, peak, bandwidth


def _nk(rng) -> tuple[int, int]:
    """A hidden (N, K): K a multiple of 32 (whole MXFP4 blocks)."""
    return rng.randint(1, 6000), 32 * rng.randint(1, 200)


def _number(x, what: str) -> float:
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        x = x.item()
    if not isinstance(x, (int, float)):
        raise ExerciseFailure(f"{what}: expected a number, got {type(x).__name__}")
    return float(x)


@Checker("check_mxfp4_gemv")
def check_mxfp4_gemv(fn, seed=None):
    """fn(x (K,) float32, blocks (N, K//32, 16) uint8, scales (N, K//32) uint8) -> y (N,) float32."""
    drawn = cases(
        ((1, 1, 0), (5, 2, 1), (24, 4, 2)),
        seed,
        lambda rng: (rng.randint(1, 40), rng.randint(1, 6), rng.randrange(2**31)),
    )
    for N, G, data_seed in drawn:
        x, blocks, scales = _random_weight(N, G, data_seed)
        want = (dequantize(blocks, scales, torch.float64) @ x.double()).float()
        got = fn(x.clone(), blocks.clone(), scales.clone())
        if (
            isinstance(got, torch.Tensor)
            and got.shape == (N,)
            and not torch.allclose(got.double(), want.double(), rtol=1e-4, atol=1e-4)
        ):
            gd = got.double()
            mistakes = (
                (dict(swap=True), "the two nibbles are swapped: element 2j is the LOW nibble "
                 "(byte & 0x0F) of byte j, element 2j+1 the high one (byte >> 4)"),
                (dict(bias=0), "the scale is 2^s: the E8M0 exponent has a bias of 127, the "
                 "scale is 2^(s - 127)"),
                (dict(multiplier=True), "the scale byte is used as a multiplier; it is an "
                 "exponent: the scale is 2^(s - 127)"),
                (dict(unsigned=True), "all values came out non-negative: bit 3 of a code is "
                 "the sign (codes 8-15 are negative)"),
            )  # fmt: skip
            for kw, msg in mistakes:
                wrong = _decode_variant(blocks, scales, **kw) @ x.double()
                finite = torch.isfinite(wrong) & torch.isfinite(gd)
                if bool(finite.all()) and torch.allclose(gd, wrong, rtol=1e-4, atol=1e-4):
                    raise ExerciseFailure(msg)
                if kw.get("bias") == 0 and not bool(torch.isfinite(gd).all()):
                    raise ExerciseFailure(msg + " (your result overflowed to inf)")
        expect_close(got, want, f"y (N={N}, K={32 * G})", rtol=1e-4, atol=1e-4)
    return "decoded nibbles and scales, multiplied"


@Checker("check_packed_bytes")
def check_packed_bytes(fn, seed=None):
    """fn(N, K) -> int: bytes of an (N, K) MXFP4 matrix, 16 bytes of codes + 1 scale per 32."""
    draw = lambda rng: (rng.randint(1, 9000), 32 * rng.randint(1, 300))  # noqa: E731
    for N, K in cases(((1, 32), (5760, 2880), (2880, 2880)), seed, draw):
        want = N * K // 2 + N * K // 32
        got = _number(fn(N, K), f"packed_bytes({N}, {K})")
        if got == want:
            continue
        if got == N * K // 2:
            raise ExerciseFailure(
                f"packed_bytes({N}, {K}) = {got:.0f}: the scale bytes are missing (one per 32 weights)"
            )
        if got == 2 * N * K:
            raise ExerciseFailure(
                f"packed_bytes({N}, {K}) = {got:.0f}: that is bf16 (2 bytes a weight); MXFP4 is 4.25 bits"
            )
        if got == N * K // 2 + N * K // 32 * 2 or got == N * K * 4.25:
            raise ExerciseFailure(
                f"packed_bytes({N}, {K}) = {got:.0f}: mixed bits and bytes? Expected {want}"
            )
        raise ExerciseFailure(
            f"packed_bytes({N}, {K}) = {got:.0f}; expected {want} (ratio {got / want:.4g})"
        )
    return "4.25 bits a weight"


@Checker("check_arithmetic_intensity")
def check_arithmetic_intensity(fn, seed=None):
    """fn(T, N, K) -> FLOPs per byte of weights: 2*T*N*K / mxfp4 bytes (x and y left out)."""
    draw = lambda rng: (rng.choice([1, 2, 3, 16, 100, 4096]), *_nk(rng))  # noqa: E731
    for T, N, K in cases(((1, 5760, 2880), (8, 2880, 2880), (512, 64, 64)), seed, draw):
        want = 2 * T * N * K / (N * K * 17 / 32)
        got = _number(fn(T, N, K), f"arithmetic_intensity({T}, {N}, {K})")
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        if math.isclose(got, want / 2, rel_tol=1e-6):
            raise ExerciseFailure("half the expected value: a multiply-add counts as 2 FLOPs")
        if T > 1 and math.isclose(got, want / T, rel_tol=1e-6):
            raise ExerciseFailure("T is missing: every one of the T tokens uses each weight once")
        raise ExerciseFailure(
            f"arithmetic_intensity({T}, {N}, {K}) = {got:.4g}; expected {want:.4g}"
        )
    return "FLOPs per byte"


@Checker("check_roofline_seconds")
def check_roofline_seconds(fn, seed=None):
    """fn(flops, nbytes, peak_flops, bandwidth) -> the roofline's lower bound on the time."""
    visible = ((1e9, 1e6, 1e12, 1e10), (1e6, 1e9, 1e12, 1e10), (3e9, 2e8, 1e11, 1e10))
    draw = lambda rng: tuple(10 ** rng.uniform(lo, hi) for lo, hi in _ROOF)  # noqa: E731
    for f, b, pf, bw in cases(visible, seed, draw):
        want = max(f / pf, b / bw)
        got = _number(fn(f, b, pf, bw), "roofline_seconds")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if math.isclose(got, f / pf + b / bw, rel_tol=1e-9):
            raise ExerciseFailure(
                "you added compute time and memory time; with both running at once the slower one bounds the time: take the max"
            )
        if math.isclose(got, min(f / pf, b / bw), rel_tol=1e-9):
            raise ExerciseFailure(
                "you took the min; the time cannot be less than either part: take the max"
            )
        raise ExerciseFailure(
            f"roofline_seconds({f:g}, {b:g}, {pf:g}, {bw:g}) = {got:.4g}; expected {want:.4g}"
        )
    return "max(compute time, memory time)"


@Checker("check_effective_gbs")
def check_effective_gbs(fn, seed=None):
    """fn(T, N, K, seconds) -> GB/s: (packed weights + x + y in float32) / seconds / 1e9."""
    draw = lambda rng: (rng.choice([1, 4, 64]), *_nk(rng), 10 ** rng.uniform(-5, -1))  # noqa: E731
    for T, N, K, sec in cases(((1, 5760, 2880, 0.002), (8, 2880, 2880, 0.01)), seed, draw):
        nbytes = N * K // 2 + N * K // 32 + 4 * T * K + 4 * T * N
        want = nbytes / sec / 1e9
        got = _number(fn(T, N, K, sec), f"effective_gbs({T}, {N}, {K}, {sec})")
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        if math.isclose(got, want * 1e9, rel_tol=1e-6) or math.isclose(
            got, nbytes / sec / 2**30, rel_tol=1e-6
        ):
            raise ExerciseFailure("units: GB/s here is 10^9 bytes per second")
        no_scales = (nbytes - N * K // 32) / sec / 1e9
        if math.isclose(got, no_scales, rel_tol=1e-6):
            raise ExerciseFailure("the scale bytes are missing (one per 32 weights)")
        raise ExerciseFailure(
            f"effective_gbs({T}, {N}, {K}, {sec}) = {got:.4g}; expected {want:.4g}"
        )
    return "bytes that must move / time"


# ---- extension: a roofline point of your own kernel -----------------------------------------------


def _sleepy_gemv(delay: float, calls: list):
    """A stand-in kernel that takes `delay` seconds (a little more on its first call)."""
    import time

    def gemv(x, blocks, scales):
        calls.append(tuple(blocks.shape))
        time.sleep(delay * (5 if len(calls) == 1 else 1))
        return torch.zeros(blocks.shape[0])

    return gemv


@Checker("check_roofline_point")
def check_roofline_point(fn, seed=None):
    """fn(gemv, N, K, repeats) -> dict(seconds=, intensity=, gflops=, gbs=): time gemv(x, blocks,
    scales) on a random (N, K) MXFP4 weight (one warm-up call, then the median of `repeats`
    calls) and place it on the roofline: FLOPs per weight byte, GFLOP/s, GB/s moved."""
    visible = [(64, 256, 5, 0.005)]
    draw = lambda rng: (rng.randint(8, 256), 32 * rng.randint(1, 16), rng.randint(3, 7), 0.005)  # noqa: E731
    for N, K, repeats, delay in cases(visible, seed, draw, n=1):
        calls: list = []
        got = fn(_sleepy_gemv(delay, calls), N, K, repeats)
        where = f"roofline_point(gemv, N={N}, K={K}, repeats={repeats})"
        if not isinstance(got, dict) or not {"seconds", "intensity", "gflops", "gbs"} <= set(got):
            raise ExerciseFailure(f"{where}: expected a dict with seconds, intensity, gflops, gbs")
        if not calls or calls[0] != (N, K // 32, 16):
            raise ExerciseFailure(
                f"{where}: gemv was called with blocks of shape {calls[0] if calls else None}; "
                f"expected ({N}, {K // 32}, 16), the packed (N, K) weight"
            )
        if len(calls) != repeats + 1:
            raise ExerciseFailure(
                f"{where}: gemv was called {len(calls)} times; expected {repeats + 1} (one warm-up "
                "call that is not timed, then `repeats` timed calls)"
            )
        sec = _number(got["seconds"], "seconds")
        if sec >= delay * (repeats - 0.5):  # the kernel sleeps `delay` s a call (5x the first)
            raise ExerciseFailure(
                f"{where}: seconds = {sec:.4g} looks like the total of all {repeats} calls; "
                "report the time of one call (the median)"
            )
        if sec < 0.9 * delay:
            raise ExerciseFailure(f"{where}: seconds = {sec:.4g}, less than one call takes")
        flops, nbytes = 2 * N * K, N * K * 17 // 32
        moved = nbytes + 4 * K + 4 * N
        for key, want in (
            ("intensity", flops / nbytes),
            ("gflops", flops / sec / 1e9),
            ("gbs", moved / sec / 1e9),
        ):
            value = _number(got[key], key)
            if not math.isclose(value, want, rel_tol=1e-6):
                raise ExerciseFailure(
                    f"{where}: {key} = {value:.6g}; from your seconds = {sec:.6g} expected "
                    f"{want:.6g} (T = 1: x (K,) and y (N,) in float32, the weight packed)"
                )
    return "warm-up, median of the timed calls, and the point's coordinates"


# ----------------------------------------------------------------------------- version 5


@Checker("check_vpermps")
def check_vpermps(fn, seed=None):
    """fn(table (16,) float32, index (16,) int32) -> (16,) float32: out[i] = table[index[i] & 15],
    as vpermps: only the low 4 bits of each index count."""

    def draw(rng):
        return rng.randrange(2**31), rng.choice([255, 2**16, 2**31 - 1])

    for data_seed, high in cases(((0, 15), (1, 255), (2, 2**31 - 1)), seed, draw):
        g = torch.Generator().manual_seed(data_seed)
        table = torch.randn(16, generator=g)
        index = torch.randint(0, high + 1, (16,), dtype=torch.int32, generator=g)
        index[0] = high  # at least one index with high bits set, when high > 15
        want = table[(index & 15).long()]
        try:
            got = fn(table.clone(), index.clone())
        except (IndexError, RuntimeError) as err:
            if high > 15:
                raise ExerciseFailure(
                    f"index {int(index[0])} raised {type(err).__name__}: vpermps reads only the "
                    "low 4 bits of each lane's index (index & 15), so any int32 is a valid index"
                ) from err
            raise
        expect_close(got, want, f"vpermps(table, index up to {high})", rtol=0, atol=0)
    return "table[index & 15], lane by lane"


@Checker("check_decode_block_vpermps")
def check_decode_block_vpermps(fn, seed=None):
    """fn(block (16,) uint8, scale_byte int) -> (32,) float32: the block's 32 weights in their
    own order, decoded as version 5 does (two table look-ups of 2 x the E2M1 values, then the
    block's scale halved)."""

    def draw(rng):
        return rng.randrange(2**31), rng.randint(100, 150)

    for data_seed, s in cases(((0, 127), (1, 120), (2, 133)), seed, draw):
        g = torch.Generator().manual_seed(data_seed)
        block = torch.randint(0, 256, (16,), dtype=torch.uint8, generator=g)
        block[0], block[1] = 0x71, 0x2F  # codes that differ between the nibbles
        got = fn(block.clone(), s)
        want = dequantize(
            block.view(1, 1, 16), torch.tensor([[s]], dtype=torch.uint8), torch.float32
        )[0]
        if isinstance(got, torch.Tensor) and got.shape == (32,):
            gd, w64 = got.double(), want.double()
            if torch.allclose(gd, 2 * w64):
                raise ExerciseFailure(
                    "every weight is twice too large: the table holds 2 x the E2M1 values, so "
                    "the scale to apply is 2^(s - 127) / 2"
                )
            if torch.allclose(gd, torch.cat([w64[0::2], w64[1::2]])):
                raise ExerciseFailure(
                    "the weights are in split order (all even elements, then all odd ones); "
                    "interleave them: element 2j from the low nibble of byte j, 2j + 1 from its "
                    "high nibble"
                )
            if torch.allclose(gd, torch.stack([w64[1::2], w64[0::2]], 1).flatten()):
                raise ExerciseFailure(
                    "the two nibbles are swapped: element 2j is the LOW nibble of byte j"
                )
        expect_close(got, want, f"decode_block(block, scale byte {s})", rtol=0, atol=0)
    return "two look-ups of a doubled table, interleaved, scaled by 2^(s - 127) / 2"
