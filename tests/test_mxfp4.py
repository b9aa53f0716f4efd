"""MXFP4 number format (chapter 8): decoding, rounding, packing and the packed-weight type.

Every expected value here comes from a float64 formula written in this file (E2M1 from its
sign/exponent/mantissa bits, E8M0 as 2^(s-127)), never from the code under test.
"""

import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gptoss_edu import mxfp4
from gptoss_edu.mxfp4 import FP4_VALUES, MXFP4Tensor, dequantize, quantize


def e2m1_from_bits(code: int) -> float:
    """E2M1 decoded from its bits: s e1 e0 m. e = 0 is subnormal: m * 0.5; else (1 + m/2) * 2^(e-1)."""
    sign = -1.0 if code & 8 else 1.0
    e, m = (code >> 1) & 3, code & 1
    mag = m * 0.5 if e == 0 else (1 + m / 2) * 2.0 ** (e - 1)
    return math.copysign(mag, sign)


def e8m0(s: int) -> float:
    return math.nan if s == 255 else math.ldexp(1.0, s - 127)  # float64: 2^-127 is a normal here


def pack(codes: list[int]) -> torch.Tensor:
    """32 codes -> 16 bytes, element 2j in the low nibble (written out independently)."""
    return torch.tensor(
        [codes[2 * j] | (codes[2 * j + 1] << 4) for j in range(16)], dtype=torch.uint8
    )


def test_fp4_values_are_e2m1():
    assert len(FP4_VALUES) == 16
    for code in range(16):
        assert FP4_VALUES[code] == e2m1_from_bits(code)
        assert math.copysign(1, FP4_VALUES[code]) == (-1 if code & 8 else 1)


SCALES = [0, 1, 2, 125, 126, 127, 128, 254, 255]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_all_codes_times_scales_decode_exactly(dtype):
    codes = list(range(16)) * 2  # (32,) every code twice
    blocks = pack(codes).repeat(len(SCALES), 1).reshape(len(SCALES), 1, 16)  # (9, 1, 16)
    scales = torch.tensor(SCALES, dtype=torch.uint8).reshape(len(SCALES), 1)  # (9, 1)
    out = dequantize(blocks, scales, dtype)  # (9, 32)
    assert out.shape == (len(SCALES), 32) and out.dtype == dtype
    for i, s in enumerate(SCALES):
        for j, code in enumerate(codes):
            want64 = e2m1_from_bits(code) * e8m0(s)  # exact in float64
            want = torch.tensor(want64, dtype=torch.float64).to(dtype)  # inf where it overflows
            got = out[i, j]
            if s == 255:
                assert torch.isnan(got), (s, code)
            else:
                assert got.item() == want.item() or (torch.isinf(got) and torch.isinf(want)), (
                    s,
                    code,
                    got.item(),
                    want64,
                )
                assert torch.signbit(got) == bool(code & 8), (s, code)  # -0 kept


def test_scale_zero_is_exact_subnormal_float32():
    blocks = pack([1] + [0] * 31).reshape(1, 16)
    out = dequantize(blocks, torch.tensor([0], dtype=torch.uint8), torch.float32)
    assert out[0].item() == 2.0**-128  # 0.5 * 2^-127, a float32 subnormal
    assert out[0].item() != 0.0


def test_negative_zero_kept():
    blocks = pack([8] * 32).reshape(1, 16)
    out = dequantize(blocks, torch.tensor([127], dtype=torch.uint8), torch.float32)
    assert (out == 0).all() and torch.signbit(out).all()
    # and quantizing -0.0 keeps the sign bit
    b, s = quantize(torch.tensor([-0.0] * 32))
    assert (b == 0x88).all()


def test_nibble_order_low_first():
    codes = [(3 * i + 1) % 16 for i in range(32)]
    blocks = pack(codes).reshape(1, 16)
    out = dequantize(blocks, torch.tensor([127], dtype=torch.uint8), torch.float32)
    assert out.tolist() == [e2m1_from_bits(c) for c in codes]
    # and quantize writes the same layout: element 0 = 1.0 (code 2), element 1 = -6 (code 15)
    w = torch.tensor([1.0, -6.0] + [0.0] * 30)
    b, s = quantize(w)
    assert s.item() == 127 and b[0, 0].item() == 0xF2


def test_scale_choice_ocp():
    # amax in [2^e, 2^(e+1)) -> s = e - 2 + 127
    for amax, s_want in [(1.0, 125), (1.99, 125), (2.0, 126), (6.0, 127), (7.9, 127), (0.3, 123)]:
        w = torch.zeros(32, dtype=torch.float64)
        w[5] = -amax
        _, s = quantize(w)
        assert s.item() == s_want, (amax, s.item())
    _, s = quantize(torch.zeros(2, 32))
    assert (s == mxfp4.ZERO_BLOCK_SCALE).all()
    # tiny and huge blocks clamp to the E8M0 range
    _, s = quantize(torch.full((32,), 2.0**-140, dtype=torch.float64))
    assert s.item() == 0
    _, s = quantize(torch.full((32,), 2.0**200, dtype=torch.float64))
    assert s.item() == 254


def test_grid_values_roundtrip_exactly():
    g = torch.Generator().manual_seed(0)
    grid = torch.tensor(FP4_VALUES, dtype=torch.float64)
    codes = torch.randint(0, 16, (6, 4, 32), generator=g)
    codes[..., 0] = 7  # every block holds a 6 so the scale is determined: amax = 6 * 2^x
    exps = torch.randint(-20, 20, (6, 4, 1), generator=g).double()
    w = grid[codes] * torch.exp2(exps)  # (6, 4, 32) already on the grid
    w = w.reshape(6, 128)
    b, s = quantize(w)
    assert b.shape == (6, 4, 16) and s.shape == (6, 4)
    back = dequantize(b, s, torch.float64)
    assert torch.equal(back, w)
    assert torch.equal(torch.signbit(back), torch.signbit(w))
    b2, s2 = quantize(back)  # idempotent
    assert torch.equal(b2, b) and torch.equal(s2, s)


@pytest.mark.parametrize(
    "value, want",
    [
        (0.25, 0.0),  # between 0 (code 0) and 0.5 (code 1): even code 0
        (0.75, 1.0),  # between 0.5 (code 1) and 1 (code 2): even code 2
        (1.25, 1.0),  # between 1 (code 2) and 1.5 (code 3)
        (1.75, 2.0),  # between 1.5 (code 3) and 2 (code 4)
        (2.5, 2.0),  # between 2 (code 4) and 3 (code 5)
        (3.5, 4.0),  # between 3 (code 5) and 4 (code 6)
        (5.0, 4.0),  # between 4 (code 6) and 6 (code 7)
        (0.2500001, 0.5),  # just above a tie rounds up
        (4.9999, 4.0),
        (5.0001, 6.0),
    ],
)
@pytest.mark.parametrize("e", [-10, 0, 7])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_ties_round_to_even(value, want, e, sign):
    w = torch.zeros(32, dtype=torch.float64)
    w[0] = 6.0 * 2.0**e  # fixes the scale at 2^e (s = 127 + e)
    w[3] = sign * value * 2.0**e
    b, s = quantize(w)
    assert s.item() == 127 + e
    got = dequantize(b, s, torch.float64)[3].item()
    assert got == sign * want * 2.0**e


def test_saturation():
    w = torch.zeros(32)
    w[0] = 7.5  # amax in [4, 8) -> scale 1; 7.5 is beyond 6 and saturates
    w[1] = -7.0
    b, s = quantize(w)
    out = dequantize(b, s, torch.float32)
    assert s.item() == 127 and out[0].item() == 6.0 and out[1].item() == -6.0


def test_shape_and_type_errors():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize(torch.zeros(4, 33))
    with pytest.raises(TypeError, match="floating-point"):
        quantize(torch.zeros(4, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize(torch.full((32,), float("inf")))
    with pytest.raises(ValueError, match="expected scales"):
        dequantize(torch.zeros(2, 3, 16, dtype=torch.uint8), torch.zeros(2, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="16"):
        dequantize(torch.zeros(2, 3, 8, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        dequantize(torch.zeros(2, 3, 16), torch.zeros(2, 3, dtype=torch.uint8))


def dequant64(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Independent float64 decode written with the bit formulas above (slow, small inputs only)."""
    lut = torch.tensor([e2m1_from_bits(c) for c in range(16)], dtype=torch.float64)
    scale = torch.tensor([e8m0(s) for s in range(256)], dtype=torch.float64)
    low = lut[(blocks & 15).long()]
    high = lut[(blocks >> 4).long()]
    vals = torch.stack([low, high], dim=-1).flatten(-2)  # (..., G, 32)
    return (vals * scale[scales.long()].unsqueeze(-1)).flatten(-2)


def test_mxfp4tensor_linear_matches_dense():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(70, 96, generator=g) * 0.05
    W = MXFP4Tensor.from_float(w)
    assert W.shape == (70, 96)
    assert W.blocks.shape == (70, 3, 16) and W.scales.shape == (70, 3)
    assert W.nbytes == 70 * 3 * 17 and W.bits_per_weight == 4.25
    x = torch.randn(5, 96, generator=g)
    b = torch.randn(70, generator=g)
    dense = dequant64(W.blocks, W.scales)  # (70, 96)
    want = x.double() @ dense.T + b.double()
    for tile_rows in (256, 16, 7):  # several row tilings, including ragged ones
        got = W.linear(x, b, tile_rows=tile_rows)
        assert got.shape == (5, 70) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    got = W.linear(x[0])  # 1-D x, no bias
    torch.testing.assert_close(got.double(), x[0].double() @ dense.T, rtol=1e-5, atol=1e-5)
    got = W.linear(x.bfloat16(), b)  # bf16 in -> bf16 out
    assert got.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="last dimension"):
        W.linear(torch.zeros(2, 64))


def test_mxfp4tensor_experts_indexing():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 6, 64, generator=g)
    W = MXFP4Tensor.from_float(w)
    assert W.shape == (4, 6, 64)
    W2 = W[2]
    assert isinstance(W2, MXFP4Tensor) and W2.shape == (6, 64)
    assert torch.equal(W2.dequantize(torch.float32), W.dequantize(torch.float32)[2])
    assert W[1:3].shape == (2, 6, 64)
    with pytest.raises(IndexError):
        W2[0]
    with pytest.raises(ValueError, match="2-D"):
        W.linear(torch.zeros(1, 64))
    assert W.to("cpu").blocks.device.type == "cpu"
    assert "4.25 bits" in repr(W)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32),
        min_size=32,
        max_size=32,
    ),
    st.integers(min_value=-30, max_value=30),
)
def test_roundtrip_error_bound(values, shift):
    w = torch.tensor(values, dtype=torch.float64) * 2.0**shift
    w = w.float().double()  # stay representable in float32
    b, s = quantize(w.float())
    back = dequant64(b, s)  # (32,)
    if (w == 0).all():
        assert (back == 0).all()
        return
    scale = e8m0(int(s))
    amax = w.abs().max().item()
    assert 4 * scale <= amax < 8 * scale or int(s) in (0, 254)
    # grid spacing at |v| (in units of the scale): 0.5 below 2, 1 in [2, 4), 2 in [4, 6]
    for v, q in zip(w.tolist(), back.tolist()):
        a = abs(v) / scale
        if a > 6:  # saturation: clamps to +-6
            assert q == math.copysign(6 * scale, v)
            continue
        spacing = 0.5 if a < 2 else (1.0 if a < 4 else 2.0)
        assert abs(v - q) <= spacing / 2 * scale, (v, q, scale)


# ----------------------------------------------------------------------------- one source per fact
# The E2M1 table, the E8M0 rule and the block size are defined once, in gptoss_edu/mxfp4.py.
# Every Python back end imports them; the CUDA C++ sources cannot, so their copies are parsed
# here and compared with the Python definition.

_PACKAGE = Path(mxfp4.__file__).resolve().parent
_CU = _PACKAGE / "kernels" / "cuda" / "mxfp4_matmul.cu"


def test_python_defines_each_fact_once():
    table = re.compile(r"0\.5\s*,\s*\+?1(\.0)?\s*,\s*\+?1\.5\s*,\s*\+?2")  # the E2M1 list
    block = re.compile(r"^\s*\w*BLOCK\w*\s*=\s*32\b", re.M)  # a block-size constant
    e8m0 = re.compile(r"(ldexp|exp2|2\.0\s*\*\*)\s*\(?.*-\s*127")  # a hand-written 2^(s - 127)
    found = {"table": [], "block": [], "e8m0": []}
    for path in sorted(_PACKAGE.rglob("*.py")):
        if "exercises" in path.parts:  # checkers rebuild the facts on purpose, to name mistakes
            continue
        text = path.read_text()
        rel = path.relative_to(_PACKAGE).as_posix()
        for name, pattern in (("table", table), ("block", block), ("e8m0", e8m0)):
            code = "\n".join(ln.split("#")[0] for ln in text.splitlines())  # comments do not count
            if pattern.search(code):
                found[name].append(rel)
    assert found["table"] == ["mxfp4.py"], found
    assert found["block"] == ["mxfp4.py"], found
    # mxfp4.scale_table builds 2^(s - 127) from SCALE_BIAS / SCALE_NAN; no other module may
    assert set(found["e8m0"]) <= {"mxfp4.py"}, found


def test_cuda_source_copies_equal_the_python_definition():
    src = _CU.read_text()
    body = re.search(r"kFp4Values\[16\]\s*=\s*\{([^}]*)\}", src)
    assert body, f"{_CU.name}: kFp4Values[16] = {{...}} not found"
    values = [float(v.strip().rstrip("f")) for v in body.group(1).split(",")]
    assert values == list(FP4_VALUES)
    assert [math.copysign(1.0, v) for v in values] == [math.copysign(1.0, v) for v in FP4_VALUES]
    block = re.search(r"constexpr int kMxBlock = (\d+);", src)
    assert block and int(block.group(1)) == mxfp4.BLOCK_SIZE
    # E8M0 in e8m0_to_float: s == 0 -> the subnormal 2^-127, s == 255 -> NaN, otherwise the byte
    # is the float32 exponent field (s << 23). Evaluated here in Python, it must equal the table.
    zero = re.search(r"if \(s == 0\) return __uint_as_float\((0x[0-9a-f]+)u\);", src)
    nan = re.search(
        r"if \(s == (\d+)\) return __uint_as_float\((0x[0-9a-f]+)u\);", src[zero.end() :]
    )
    assert zero and nan and "return __uint_as_float(static_cast<uint32_t>(s) << 23);" in src

    def bits(b: int) -> float:
        return torch.tensor([b], dtype=torch.int32).view(torch.float32).item()

    table = mxfp4.scale_table(torch.float32)
    for s in range(256):
        if s == 0:
            got = bits(int(zero.group(1), 16))
        elif s == int(nan.group(1)):
            got = bits(int(nan.group(2), 16))
        else:
            got = bits(s << 23)
        want = table[s].item()
        assert got == want or (math.isnan(got) and math.isnan(want)), s
    assert mxfp4.SCALE_BIAS == 127  # the float32 exponent bias the bit trick relies on
