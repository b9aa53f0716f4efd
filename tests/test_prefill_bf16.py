"""The numba back end's bf16 prefill path (chapter 10, issue 15): bf16 activations and no bias,
from bf16_blas_min_tokens() tokens on, decode each tile to bf16 and run a bf16 BLAS GEMM. Checked
against float64 from the format's definition, with tails, NaN scales and the subnormal rule."""

from __future__ import annotations

import warnings

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

from gptoss_edu.kernels import numba_cpu

MIN = numba_cpu.bf16_blas_min_tokens()


@pytest.fixture(autouse=True)
def no_bf16_dot(monkeypatch):
    """These tests are about the BLAS path: numba_simd's vdpbf16ps kernel, which takes few bf16
    tokens where the CPU has AVX512-BF16, is tested in test_kernels_simd.py."""
    monkeypatch.setattr(numba_cpu, "SIMD_BF16", False)


@pytest.fixture
def poisoned(monkeypatch):
    """numba_cpu's scratch and torch.empty start poisoned (NaN; 0xFFFF, a bf16 NaN, for the
    uint16 tile of bf16 bits), so that an element left unwritten shows in the result."""

    def empty(shape, dtype):
        a = np.empty(shape, dtype=dtype)
        a.fill(np.nan if np.issubdtype(np.dtype(dtype), np.floating) else np.iinfo(dtype).max)
        return a

    monkeypatch.setattr(numba_cpu, "_empty", empty)
    real_empty = torch.empty

    def nan_empty_torch(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan") if t.is_floating_point() else -1)

    monkeypatch.setattr(torch, "empty", nan_empty_torch)


def test_the_bf16_path_is_chosen_only_for_bf16_without_bias():
    assert MIN >= 2
    assert numba_cpu.linear_path(MIN, bf16=True) == "blas_bf16"
    assert numba_cpu.linear_path(MIN - 1, bf16=True) == numba_cpu.linear_path(MIN - 1)
    assert numba_cpu.linear_path(64) == "blas"  # float32 activations: unchanged


@pytest.mark.parametrize("T", [MIN, 7, 64])
@pytest.mark.parametrize("N, G", [(37, 3), (5, 90), (16, 1), (700, 2)])
def test_bf16_path_against_float64(T, N, G, poisoned, monkeypatch):
    # odd N, odd block counts (K/2 not a multiple of the SIMD width), a tile smaller than N
    # (N = 700 with 3 tiles) so that tile edges are crossed
    monkeypatch.setattr(numba_cpu, "DECODE_TILE_FLOATS", 32 * G * 256)
    # scale byte 2, the smallest the bf16 path takes (2^-125), and 160 (2^33); a NaN row
    x, _, blocks, scales = poisoned_row_case(100 * T + 10 * N + G, T, N, G, (2, 160))
    x = x.bfloat16()
    called = []
    real = numba_cpu._linear_blas_bf16
    monkeypatch.setattr(
        numba_cpu, "_linear_blas_bf16", lambda *a: called.append(1) or real(*a)
    )  # fmt: skip
    y = numba_cpu.mxfp4_linear(x, blocks, scales)
    assert called, "the bf16 path did not run"
    assert y.dtype == torch.bfloat16 and y.shape == (T, N)
    # within float32 accumulation of exact products, then one rounding to bf16
    assert_nan_row_and_close(y, x, blocks, scales, None)


def test_bf16_path_equals_the_float32_path_rounded():
    # same products, float32 sums in another order: the results agree to bf16's rounding
    g = torch.Generator().manual_seed(3)
    blocks, scales = random_mxfp4(g, 96, 256)
    x = torch.randn(16, 256, generator=g).bfloat16()
    y16 = numba_cpu.mxfp4_linear(x, blocks, scales)
    y32 = numba_cpu.mxfp4_linear(x.float(), blocks, scales)  # the float32 BLAS path
    torch.testing.assert_close(y16.float(), y32, rtol=2**-8, atol=1e-6)


def test_out_is_written_on_the_bf16_path():
    g = torch.Generator().manual_seed(4)
    blocks, scales = random_mxfp4(g, 37, 64)
    x = torch.randn(MIN + 1, 64, generator=g).bfloat16()
    out = torch.full((MIN + 1, 37), float("nan"))
    y = numba_cpu.mxfp4_linear(x, blocks, scales, None, out=out)
    assert y.dtype == torch.bfloat16 and torch.equal(out, y.float())  # every element written
    assert_linear_close(y, x, blocks, scales, None)


def test_subnormal_weights_take_the_float32_path_and_say_so(monkeypatch):
    # the bf16 GEMM flushes subnormal inputs to zero; scale bytes 0 and 1 make weights below
    # 2^-126, so those calls go to the float32 path (which keeps them) with one warning
    g = torch.Generator().manual_seed(5)
    blocks, scales = random_mxfp4(g, 4, 64)
    scales[0] = 0  # row 0: weights 2^-128 .. 6 * 2^-127
    x = torch.ones(8, 64).bfloat16()
    monkeypatch.setattr(numba_cpu, "_said_subnormal", False)
    with pytest.warns(UserWarning, match="scale bytes under 2"):
        y = numba_cpu.mxfp4_linear(x, blocks, scales)
    want = x.double() @ decode64(blocks, scales).T
    assert (y[:, 0].double() != 0).any() and (want[:, 0] != 0).any()
    assert_linear_close(y, x, blocks, scales, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process
        numba_cpu.mxfp4_linear(x, blocks, scales)


def test_bf16_decode_is_exact_for_every_code_and_scale():
    # every byte (two codes) under every scale byte: the bf16 bits hold the exact value
    blocks = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)  # one row: every byte once
    blocks = np.ascontiguousarray(blocks.repeat(256, axis=0))  # (256, 16, 16): row = scale
    scales = np.ascontiguousarray(np.arange(256, dtype=np.uint8)[:, None].repeat(16, axis=1))
    w16 = np.empty((256, 512), np.uint16)
    numba_cpu._decode_bf16_kernel(blocks, scales, numba_cpu._HALF_SCALES, 0, w16)
    got = torch.from_numpy(w16).view(torch.bfloat16).double()  # (256, 512) in split order
    W = decode64(torch.from_numpy(blocks), torch.from_numpy(scales))  # (256, 512)
    # as float32 (the type every CPU path computes in): 4 and 6 times 2^127 overflow to inf
    want = torch.cat([W[:, 0::2], W[:, 1::2]], dim=1).float().double()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan) and nan[255].all() and not nan[:255].any()
    assert torch.equal(got[~nan], want[~nan])
