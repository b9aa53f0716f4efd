"""numba_simd (chapter 10, issue 15): the MXFP4 matmul whose decode is one `vpermps` per 16
(AVX2: 8) codes, written in LLVM IR. Checked against float64 from the format's definition
(test_kernels_cpu.decode64), for each instruction set this CPU can run: AVX2 runs on an
AVX-512 CPU too, so an AVX-512 machine tests both."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from test_kernels_cpu import (
    assert_linear_close,
    assert_nan_row_and_close,
    decode64,
    poisoned_row_case,
    random_mxfp4,
)

from gptoss_edu.kernels import numba_cpu, numba_simd

HOST = numba_simd.ISA
ISAS = {"avx512": ["avx2", "avx512"], "avx2": ["avx2"], None: []}[HOST]
pytestmark = pytest.mark.skipif(not ISAS, reason="no AVX2 or AVX-512 on the CPU numba targets")


def nan_out(T, N):
    return np.full((T, N), np.nan, np.float32)  # an element left unwritten stays NaN


def spy(monkeypatch, name):
    """Count the calls of numba_simd.<name> (their first argument's shape) and still run it."""
    calls = []
    real = getattr(numba_simd, name)

    def counted(*args, **kwargs):
        calls.append(getattr(args[0], "shape", None))
        return real(*args, **kwargs)

    monkeypatch.setattr(numba_simd, name, counted)
    return calls


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6, 7, 9, 64])
@pytest.mark.parametrize("N, G", [(37, 3), (16, 1), (5, 90), (3, 5)])
def test_linear_against_float64(isa, T, N, G):
    # odd N; block counts G = 1, 3, 5 (no multiple of the unroll of 2 or 4) and 90 (20b's
    # K = 2880); tokens in passes of 4 with every tail 1-3; extreme scales in fixed rows
    x, bias, blocks, scales = poisoned_row_case(1000 * T + 10 * N + G, T, N, G)
    out = nan_out(T, N)
    xs = numba_simd.split_aligned(x.numpy())
    numba_simd.linear(
        xs, blocks.numpy(), scales.numpy(), numba_cpu._HALF_SCALES, bias.numpy(), out, isa
    )
    assert_nan_row_and_close(torch.from_numpy(out), x, blocks, scales, bias)


@pytest.mark.parametrize("isa", ISAS)
def test_every_code_under_every_scale(isa):
    # one-hot x picks single weights out: y[t, n] = W[n, t] exactly (one product, no sum), so
    # every code (16 per byte position) under every scale byte (one per row) is checked
    blocks = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(256, axis=0)  # (256, 16, 16)
    scales = np.arange(256, dtype=np.uint8)[:, None].repeat(16, axis=1)  # row n has scale byte n
    K = 512
    x = np.eye(K, dtype=np.float32)[:64]  # tokens 0..63: elements 0..63 (both nibbles of bytes)
    out = nan_out(64, 256)
    numba_simd.linear(
        numba_simd.split_aligned(x),
        blocks,
        scales,
        numba_cpu._HALF_SCALES,
        np.zeros(256, np.float32),
        out,
        isa,
    )
    W = decode64(torch.from_numpy(blocks), torch.from_numpy(scales))[:, :64].T  # (64, 256)
    want = W.float().double()  # float32 like the kernel: 4 and 6 times 2^127 are inf
    got = torch.from_numpy(out).double()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan) and nan[:, 255].all()
    assert torch.equal(got[~nan], want[~nan])


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_decode_is_exact_for_every_code_and_scale(isa):
    blocks = np.ascontiguousarray(
        np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(256, axis=0)
    )
    scales = np.ascontiguousarray(np.arange(256, dtype=np.uint8)[:, None].repeat(16, axis=1))
    w16 = np.full((256, 512), 0xFFFF, np.uint16)
    numba_simd.decode_bf16(blocks, scales, numba_cpu._HALF_SCALES, 0, w16, isa)
    got = torch.from_numpy(w16).view(torch.bfloat16).double()  # split order
    W = decode64(torch.from_numpy(blocks), torch.from_numpy(scales))
    want = torch.cat([W[:, 0::2], W[:, 1::2]], dim=1).float().double()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan) and nan[255].all() and not nan[:255].any()
    assert torch.equal(got[~nan], want[~nan])


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_decode_of_a_row_range(isa):
    # rows n0 .. n0 + R of a larger matrix land in w16[0 .. R], nothing else is written
    g = torch.Generator().manual_seed(5)
    blocks, scales = random_mxfp4(g, 9, 96)
    w16 = np.full((5, 96), 0xFFFF, np.uint16)
    numba_simd.decode_bf16(blocks.numpy(), scales.numpy(), numba_cpu._HALF_SCALES, 3, w16[:4], isa)
    W = decode64(blocks, scales)[3:7]
    want = torch.cat([W[:, 0::2], W[:, 1::2]], dim=1).to(torch.bfloat16)
    assert torch.equal(torch.from_numpy(w16[:4]).view(torch.bfloat16), want)
    assert (w16[4] == 0xFFFF).all()


def test_split_aligned_rows_start_on_cache_lines():
    x = np.arange(3 * 96, dtype=np.float32).reshape(3, 96) * 0.5
    for _ in range(5):  # several allocations: the alignment is made, not lucky
        xs = numba_simd.split_aligned(x)
        assert xs.ctypes.data % 64 == 0 and xs.flags.c_contiguous and xs.dtype == np.float32
        assert np.array_equal(xs, np.concatenate([x[:, 0::2], x[:, 1::2]], axis=1))


def test_mxfp4_linear_runs_the_simd_kernel(monkeypatch):
    # the public entry point reaches numba_simd for few float32 tokens, and its results hold
    calls = spy(monkeypatch, "linear")
    g = torch.Generator().manual_seed(8)
    blocks, scales = random_mxfp4(g, 33, 160)
    x, bias = torch.randn(3, 160, generator=g), torch.randn(33, generator=g)
    y = numba_cpu.mxfp4_linear(x, blocks, scales, bias)
    assert calls == [(3, 160)]
    assert_linear_close(y, x, blocks, scales, bias)


def test_bf16_prefill_decodes_with_simd(monkeypatch):
    monkeypatch.setattr(numba_cpu, "SIMD_BF16", False)  # the bf16 BLAS path from few tokens on
    calls = spy(monkeypatch, "decode_bf16")
    g = torch.Generator().manual_seed(9)
    blocks, scales = random_mxfp4(g, 40, 96)
    x = torch.randn(numba_cpu.bf16_blas_min_tokens() + 1, 96, generator=g).bfloat16()
    y = numba_cpu.mxfp4_linear(x, blocks, scales)
    assert calls and y.dtype == torch.bfloat16
    assert_linear_close(y, x, blocks, scales, None)


def test_non_contiguous_and_wrong_layout_inputs():
    g = torch.Generator().manual_seed(10)
    blocks, scales = random_mxfp4(g, 8, 2, 64)  # (8, 2, 2, 16): 8 pairs of rows
    b, s = blocks.numpy()[:, 0], scales.numpy()[:, 0]  # the first row of each pair: strided
    assert not b.flags.c_contiguous
    x = torch.randn(2, 64, generator=g)
    out = nan_out(2, 8)
    numba_simd.linear(
        numba_simd.split_aligned(x.numpy()),
        b,
        s,
        numba_cpu._HALF_SCALES,
        np.zeros(8, np.float32),
        out,
    )
    assert_linear_close(torch.from_numpy(out), x, blocks[:, 0], scales[:, 0], None)
    with pytest.raises(ValueError, match="isa = 'neon'"):
        numba_simd.kernels("neon")


def test_the_isa_is_read_from_the_cpu_numba_targets(monkeypatch):
    # an instruction the target lacks would abort inside LLVM: never assume one
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert numba_simd.target_isa() == "avx2"
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx512f,+avx2,+fma")
    assert numba_simd.target_isa() == "avx512"
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+sse4.2,+avx2")  # AVX2 without FMA
    assert numba_simd.target_isa() is None
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "")
    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")  # portable machine code
    assert numba_simd.target_isa() is None
    monkeypatch.setattr(numba.config, "CPU_NAME", None)
    assert numba_simd.target_isa() == HOST
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)  # kernels run as Python: no intrinsics
    assert numba_simd.target_isa() is None and not numba_simd.target_has_bf16_dot()


# ----------------------------------------------------------------------------- vdpbf16ps

needs_bf16_dot = pytest.mark.skipif(
    not numba_simd.BF16_DOT, reason="no AVX512-BF16 on the CPU numba targets"
)


def bits(x: torch.Tensor) -> np.ndarray:
    return x.contiguous().view(torch.int16).numpy().view(np.uint16)


@needs_bf16_dot
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 9, 11, 17])
@pytest.mark.parametrize("N, G", [(37, 3), (16, 1), (5, 90), (3, 5)])
def test_bf16_dot_against_float64(T, N, G):
    # passes of 8, 4, then 1-3 tokens; odd N and block counts; a NaN row; scale byte 2, the
    # smallest numba_cpu sends here (weights >= 2^-126), and 160 (2^33)
    x, _, blocks, scales = poisoned_row_case(3000 + 1000 * T + 10 * N + G, T, N, G, (2, 160))
    x = x.bfloat16()
    out = nan_out(T, N)
    numba_simd.linear_bf16(bits(x), blocks.numpy(), scales.numpy(), numba_cpu._HALF_SCALES, out)
    assert_nan_row_and_close(torch.from_numpy(out), x, blocks, scales, None)


@needs_bf16_dot
def test_bf16_dot_every_code_under_every_scale():
    # one-hot bf16 x picks single weights out, exactly. Scale bytes 2..252 (below 2 the weights
    # are subnormal, which numba_cpu keeps away from this kernel; from 253 on 6 x 2^s overflows
    # the decoded bf16 to inf, and inf x 0 poisons the lane, as in the bf16 BLAS path) and 255
    rows = list(range(2, 253)) + [255]
    blocks = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(len(rows), axis=0)
    scales = np.array(rows, dtype=np.uint8)[:, None].repeat(16, axis=1)
    x = torch.eye(512, dtype=torch.bfloat16)[:64]
    out = nan_out(64, len(rows))
    numba_simd.linear_bf16(bits(x), blocks, scales, numba_cpu._HALF_SCALES, out)
    want = decode64(torch.from_numpy(blocks), torch.from_numpy(scales))[:, :64].T.double()
    got = torch.from_numpy(out).double()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan) and nan[:, -1].all() and not nan[:, :-1].any()
    assert torch.equal(got[~nan], want[~nan])


@needs_bf16_dot
def test_mxfp4_linear_takes_the_bf16_dot_for_few_bf16_tokens(monkeypatch):
    calls = spy(monkeypatch, "linear_bf16")
    g = torch.Generator().manual_seed(11)
    blocks, scales = random_mxfp4(g, 33, 160)
    T = numba_cpu.SIMD_BF16_MAX_TOKENS
    x = torch.randn(T, 160, generator=g).bfloat16()
    y = numba_cpu.mxfp4_linear(x, blocks, scales)
    assert calls == [(T, 160)] and y.dtype == torch.bfloat16
    assert_linear_close(y, x, blocks, scales, None)
    numba_cpu.mxfp4_linear(x, blocks, scales, torch.zeros(33))  # a bias: not this kernel
    numba_cpu.mxfp4_linear(torch.randn(T + 1, 160, generator=g).bfloat16(), blocks, scales)
    assert calls == [(T, 160)]


def test_bf16_dot_is_chosen_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(numba_cpu, "SIMD_BF16", True)
    assert numba_cpu.linear_path(1, bf16=True) == "simd_bf16"
    assert numba_cpu.linear_path(numba_cpu.SIMD_BF16_MAX_TOKENS, bf16=True) == "simd_bf16"
    assert numba_cpu.linear_path(numba_cpu.SIMD_BF16_MAX_TOKENS + 1, bf16=True) == "blas_bf16"
    assert numba_cpu.linear_path(2) != "simd_bf16"  # float32 activations
    monkeypatch.setattr(numba_cpu, "SIMD_BF16", False)
    assert numba_cpu.linear_path(1, bf16=True) != "simd_bf16"
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx512f,+avx2,+fma")  # no avx512bf16
    assert not numba_simd.target_has_bf16_dot()
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx512f,+avx512bf16")
    assert numba_simd.target_has_bf16_dot()


@pytest.mark.parametrize(
    "kernel, dtype, T",
    [
        ("linear", torch.float32, 2),
        ("linear_bf16", torch.bfloat16, 3),
        ("decode_bf16", torch.bfloat16, 40),
    ],
)
def test_a_kernel_that_fails_to_compile_falls_back_once(kernel, dtype, T, monkeypatch):
    # an older numba or LLVM may reject an intrinsic: the call still returns the right result,
    # on the portable kernels, says so once, and numba_simd stays off for the process
    monkeypatch.setattr(numba_cpu, "SIMD", numba_cpu.SIMD)  # restored after the test
    monkeypatch.setattr(numba_cpu, "SIMD_BF16", numba_cpu.SIMD_BF16)
    if kernel == "decode_bf16":
        monkeypatch.setattr(numba_cpu, "SIMD_BF16", False)  # the bf16 BLAS path, whose decode fails
    elif kernel == "linear_bf16" and not numba_cpu.SIMD_BF16:
        pytest.skip("no AVX512-BF16 here")

    def broken(*args, **kwargs):
        raise RuntimeError("LLVM IR: Intrinsic has incorrect argument type!")

    broken.__name__ = kernel
    monkeypatch.setattr(numba_simd, kernel, broken)
    g = torch.Generator().manual_seed(12)
    blocks, scales = random_mxfp4(g, 40, 96)
    x = torch.randn(T, 96, generator=g).to(dtype)
    with pytest.warns(UserWarning, match=f"{kernel} failed to compile or run here"):
        y = numba_cpu.mxfp4_linear(x, blocks, scales)
    assert_linear_close(y, x, blocks, scales, None)
    assert numba_cpu.SIMD is None and numba_cpu.SIMD_BF16 is False
    assert numba_cpu.linear_path(T, bf16=dtype == torch.bfloat16) not in ("simd", "simd_bf16")


def test_a_host_whose_features_llvmlite_cannot_read_gets_the_portable_kernels(monkeypatch):
    from llvmlite import binding

    def unreadable():
        raise RuntimeError("failed to get host cpu features")

    monkeypatch.setattr(numba.config, "CPU_NAME", None)
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "")
    monkeypatch.setattr(binding, "get_host_cpu_features", unreadable)
    assert numba_simd.target_isa() is None and not numba_simd.target_has_bf16_dot()


def test_other_errors_of_a_kernel_are_not_taken_for_a_compile_failure(monkeypatch):
    monkeypatch.setattr(numba_cpu, "SIMD", numba_cpu.SIMD)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(numba_simd, "linear", out_of_memory)
    g = torch.Generator().manual_seed(14)
    blocks, scales = random_mxfp4(g, 8, 64)
    with pytest.raises(MemoryError):
        numba_cpu.mxfp4_linear(torch.randn(2, 64, generator=g), blocks, scales)
    assert numba_cpu.SIMD == HOST  # still on
