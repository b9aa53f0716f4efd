"""The kernel contract on CPU (chapters 9-10): the torch reference and the numba back end.

Expected values are computed here, independently: routing with Python's `sorted` and float64
softmax, matmuls and the MoE layer in float64 from an MXFP4 decode written in this file.
"""

import math
import warnings

import numpy as np
import pytest
import torch

from gptoss_edu import kernels
from gptoss_edu.kernels import MoEWeights, Routing, numba_cpu, reference

BACKENDS = {"torch": reference, "numba": numba_cpu}

# ----------------------------------------------------------------------------- helpers

E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6]


def decode64(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """MXFP4 -> float64, from the format's definition: sign bit 3, magnitude E2M1[code & 7]."""
    lut = torch.tensor(
        [(-1.0 if c & 8 else 1.0) * E2M1[c & 7] for c in range(16)], dtype=torch.float64
    )
    scale = torch.tensor(
        [math.nan if s == 255 else math.ldexp(1.0, s - 127) for s in range(256)],
        dtype=torch.float64,
    )
    codes = torch.stack([blocks & 15, blocks >> 4], dim=-1).flatten(-2).long()  # low nibble first
    return (lut[codes] * scale[scales.long()].unsqueeze(-1)).flatten(-2)  # (..., K)


def random_mxfp4(g, *shape_nk, scale_lo=118, scale_hi=126):
    """Random codes and realistic scales (2^-9 .. 2^-1): blocks (..., N, K//32, 16), scales (..., N, K//32)."""
    *lead, N, K = shape_nk
    blocks = torch.randint(0, 256, (*lead, N, K // 32, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(scale_lo, scale_hi, (*lead, N, K // 32), dtype=torch.uint8, generator=g)
    return blocks, scales


def expected_topk(logits: torch.Tensor, k: int):
    """Top-k by (descending logit, ascending id), softmax in float64: written out with `sorted`."""
    ids, weights = [], []
    for row in logits.double().tolist():
        top = sorted(range(len(row)), key=lambda e: (-row[e], e))[:k]
        m = max(row[e] for e in top)
        ex = [math.exp(row[e] - m) for e in top]
        ids.append(top)
        weights.append([v / sum(ex) for v in ex])
    return torch.tensor(ids), torch.tensor(weights, dtype=torch.float64)


def check_counting_sort(r: Routing, E: int) -> None:
    """The counting-sort properties, checked directly (not against another implementation)."""
    T, k = r.experts.shape
    n = T * k
    flat = r.experts.reshape(-1).long()
    order, offsets, inverse = r.order, r.offsets, r.inverse
    assert order.dtype == offsets.dtype == inverse.dtype == torch.int64
    assert r.experts.dtype == torch.int32 and r.weights.dtype == torch.float32
    assert sorted(order.tolist()) == list(range(n))  # a permutation of the assignment ids
    sorted_experts = flat[order]
    assert (sorted_experts[1:] >= sorted_experts[:-1]).all()  # grouped by expert, ascending
    assert offsets.shape == (E + 1,) and offsets[0] == 0 and offsets[E] == n
    for e in range(E):
        seg = order[offsets[e] : offsets[e + 1]]
        assert (flat[seg] == e).all()
        assert len(seg) == int((flat == e).sum())  # histogram
        assert (seg[1:] > seg[:-1]).all()  # stable: ascending t*k+j within an expert
    assert torch.equal(inverse[order], torch.arange(n))


def nan_empty_np(shape, dtype):
    """Poisoned allocation: NaN for floats, -1 for integers, so an unwritten element shows."""
    a = np.empty(shape, dtype=dtype)
    a.fill(np.nan if np.issubdtype(np.dtype(dtype), np.floating) else -1)
    return a


@pytest.fixture
def poisoned(monkeypatch):
    """Every buffer numba_cpu allocates (outputs and scratch, all through `_empty`) starts poisoned.

    The torch reference allocates with torch.empty only for `order`; its other outputs come from
    zeros or from matmul results. We poison torch.empty as well, so an unwritten slot of `order`
    would show as -1 (and NaN in any float buffer), failing the checks below.
    """
    monkeypatch.setattr(numba_cpu, "_empty", nan_empty_np)
    real_empty = torch.empty

    def nan_empty_torch(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(math.nan if t.is_floating_point() else -1)

    monkeypatch.setattr(torch, "empty", nan_empty_torch)


# ----------------------------------------------------------------------------- routing


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [1, 3, 255, 1023])
@pytest.mark.parametrize("E", [4, 32, 128])
def test_route_random(backend, T, E, poisoned):
    k = min(4, E)
    g = torch.Generator().manual_seed(T * 1000 + E)
    logits = torch.randn(T, E, generator=g)
    r = BACKENDS[backend].route(logits, k)
    check_counting_sort(r, E)
    if T <= 255:  # the pure-Python expectation is slow; the big case is checked against torch
        ids, weights = expected_topk(logits, k)
        assert torch.equal(r.experts.long(), ids)
        torch.testing.assert_close(r.weights.double(), weights, rtol=1e-6, atol=1e-7)
    if backend != "torch":
        ref = reference.route(logits, k)
        for name in ("experts", "order", "offsets", "inverse"):
            assert torch.equal(getattr(r, name), getattr(ref, name)), name
        torch.testing.assert_close(r.weights, ref.weights, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_route_hand_example(backend):
    # the worked example in reference.py: experts [[2, 0], [2, 3], [0, 2]]
    logits = torch.tensor([[5.0, 0, 9, 1], [0, 1, 9, 5], [9, 0, 5, 1]])
    r = BACKENDS[backend].route(logits, 2)
    assert r.experts.tolist() == [[2, 0], [2, 3], [0, 2]]
    assert r.offsets.tolist() == [0, 2, 2, 5, 6]
    assert r.order.tolist() == [1, 4, 0, 2, 5, 3]
    assert r.inverse.tolist() == [2, 0, 3, 5, 1, 4]
    w = 1 / (1 + math.exp(-4))  # softmax([9, 5])[0]
    torch.testing.assert_close(r.weights, torch.tensor([[w, 1 - w]] * 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_route_one_expert_takes_all_and_empty_experts(backend):
    T, E, k = 50, 8, 2
    logits = torch.randn(T, E, generator=torch.Generator().manual_seed(3))
    logits[:, 5] += 100  # every token's first choice is expert 5
    logits[:, 1] -= 100  # expert 1 is never chosen
    r = BACKENDS[backend].route(logits, k)
    check_counting_sort(r, E)
    assert (r.experts[:, 0] == 5).all()
    counts = r.offsets.diff()
    assert counts[5] == T and counts[1] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_route_ties_lower_id_first(backend):
    T, E, k = 40, 16, 4
    g = torch.Generator().manual_seed(4)
    logits = torch.randint(0, 3, (T, E), generator=g).float()  # many exact ties
    logits[0] = 1.0  # a row of all-equal logits: experts 0, 1, 2, 3
    r = BACKENDS[backend].route(logits.bfloat16(), k)  # any float dtype is accepted
    ids, weights = expected_topk(logits, k)
    assert torch.equal(r.experts.long(), ids)
    assert r.experts[0].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(r.weights.double(), weights, rtol=1e-6, atol=1e-7)
    check_counting_sort(r, E)


@pytest.mark.parametrize("backend", BACKENDS)
def test_route_deterministic(backend):
    logits = torch.randn(1023, 32, generator=torch.Generator().manual_seed(5))
    first = BACKENDS[backend].route(logits, 4)
    for _ in range(3):
        again = BACKENDS[backend].route(logits, 4)
        for a, b in zip(first, again):
            assert torch.equal(a, b)


def test_route_bad_k():
    for backend in BACKENDS.values():
        with pytest.raises(ValueError, match="k = 5"):
            backend.route(torch.zeros(2, 4), 5)


# ----------------------------------------------------------------------------- MXFP4 linear


def poisoned_row_case(seed, T, N, G, low_scales=(0, 1)):
    """x (T, 32G), bias (N,) and a random (N, 32G) MXFP4 weight whose scale bytes are
    low_scales in blocks (0, 0) and (1, G-1) (by default 2^-127, a float32 subnormal, and 2^-126)
    and 255 (NaN) in block (N-1, G/2), which poisons row N-1 and nothing else."""
    g = torch.Generator().manual_seed(seed)
    blocks, scales = random_mxfp4(g, N, 32 * G, scale_lo=100, scale_hi=140)
    scales[0, 0], scales[1, -1] = low_scales
    scales[N - 1, G // 2] = 255
    x = torch.randn(T, 32 * G, generator=g)
    bias = torch.randn(N, generator=g)
    return x, bias, blocks, scales


def assert_nan_row_and_close(y, x, blocks, scales, bias):
    """y of a poisoned_row_case: its last row all NaN, the others within assert_linear_close."""
    N = blocks.shape[0]
    assert torch.isnan(y[:, N - 1]).all()
    b = None if bias is None else bias[: N - 1]
    assert_linear_close(y[:, : N - 1], x, blocks[: N - 1], scales[: N - 1], b)


def assert_linear_close(y, x, blocks, scales, bias):
    """|y - y64| within the worst-case float32 dot-product bound: K * 2^-23 * sum_i |x_i w_i|."""
    W = decode64(blocks, scales)  # (N, K)
    x64 = x.double()
    want = x64 @ W.T + (0 if bias is None else bias.double())
    bound = x.shape[1] * 2.0**-23 * (x64.abs() @ W.abs().T) + 1e-30
    if bias is not None:
        bound = bound + 2.0**-23 * bias.double().abs()
    if y.dtype == torch.bfloat16:
        bound = bound + 2.0**-8 * want.abs()  # the final rounding to bf16
    err = (y.double() - want).abs()
    assert y.shape == want.shape
    assert not torch.isnan(y).any()
    assert (err <= bound).all(), (
        f"max err {err.max().item():.3g}, bound there {bound.flatten()[err.argmax()]:.3g}"
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "T, N, K", [(1, 64, 128), (1, 5, 32), (3, 33, 64), (17, 70, 256), (64, 8, 96)]
)
def test_mxfp4_linear(backend, T, N, K, poisoned):
    g = torch.Generator().manual_seed(T * 7 + N * 3 + K)
    blocks, scales = random_mxfp4(g, N, K)
    x = torch.randn(T, K, generator=g)
    bias = torch.randn(N, generator=g)
    fn = BACKENDS[backend].mxfp4_linear
    assert_linear_close(fn(x, blocks, scales, bias), x, blocks, scales, bias)
    assert_linear_close(fn(x, blocks, scales), x, blocks, scales, None)
    y = fn(x.bfloat16(), blocks, scales, bias.bfloat16())
    assert y.dtype == torch.bfloat16
    assert_linear_close(y, x.bfloat16(), blocks, scales, bias.bfloat16())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(4))
def test_mxfp4_linear_random_shapes(backend, seed, poisoned):
    g = torch.Generator().manual_seed(100 + seed)
    T, N, G = (
        int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 40), (1, 100), (1, 9))
    )
    blocks, scales = random_mxfp4(g, N, 32 * G, scale_lo=100, scale_hi=140)
    x = torch.randn(T, 32 * G, generator=g)
    bias = torch.randn(N, generator=g) if seed % 2 else None
    y = BACKENDS[backend].mxfp4_linear(x, blocks, scales, bias)
    assert_linear_close(y, x, blocks, scales, bias)


def test_numba_linear_writes_every_output():
    # the numba back end takes out=: NaN-fill it first, every element must be overwritten
    g = torch.Generator().manual_seed(11)
    blocks, scales = random_mxfp4(g, 37, 64)  # N not a multiple of the tile or register block
    for T in (1, 2, 5):
        x = torch.randn(T, 64, generator=g)
        out = torch.full((T, 37), math.nan)
        y = numba_cpu.mxfp4_linear(x, blocks, scales, None, out=out)
        assert y.data_ptr() == out.data_ptr()
        assert_linear_close(out, x, blocks, scales, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mxfp4_linear_extreme_scales(backend):
    # scales 0 (2^-127, subnormal products) .. 254, and 255 (NaN) poisons exactly its row
    g = torch.Generator().manual_seed(12)
    blocks, _ = random_mxfp4(g, 4, 64)
    scales = torch.tensor([[0, 1], [126, 128], [140, 100], [255, 127]], dtype=torch.uint8)
    x = torch.randn(2, 64, generator=g)
    y = BACKENDS[backend].mxfp4_linear(x, blocks, scales)
    assert torch.isnan(y[:, 3]).all() and not torch.isnan(y[:, :3]).any()
    assert_linear_close(y[:, :3], x, blocks[:3], scales[:3], None)


@pytest.mark.parametrize(
    "path, T",
    [("gemv", T) for T in (1, 2, 7)]
    + [("few_tokens", T) for T in (1, 2, 7, 64)]
    + [("blas", T) for T in (1, 2, 7, 64)]
    + [
        pytest.param(
            "simd",
            T,
            marks=pytest.mark.skipif(not numba_cpu.SIMD, reason="no AVX2/AVX-512 on this CPU"),
        )
        for T in (1, 2, 3, 4, 5, 7, 64)
    ],
)
@pytest.mark.parametrize("N, G", [(37, 3), (16, 1), (5, 90)])
def test_numba_each_linear_path(path, T, N, G, poisoned):
    # every kernel of numba_cpu.mxfp4_linear, forced, on odd N and odd block counts G (so K/2 is
    # not a multiple of the SIMD width), with extreme and NaN scales in fixed rows
    x, bias, blocks, scales = poisoned_row_case(1000 * T + 10 * N + G, T, N, G)
    y = torch.from_numpy(
        numba_cpu._linear_np(x.numpy(), blocks.numpy(), scales.numpy(), bias.numpy(), path=path)
    )
    assert_nan_row_and_close(y, x, blocks, scales, bias)


def test_numba_linear_path_by_tokens(monkeypatch):
    gemv_max, blas_min = numba_cpu.GEMV_MAX_TOKENS, numba_cpu.BLAS_MIN_TOKENS
    assert 1 <= gemv_max < blas_min
    monkeypatch.setattr(numba_cpu, "SIMD", "avx2")  # an x86 CPU: one kernel below BLAS_MIN
    monkeypatch.setattr(numba_cpu, "SIMD_BF16", False)  # without AVX512-BF16
    assert numba_cpu.linear_path(1) == numba_cpu.linear_path(blas_min - 1) == "simd"
    assert numba_cpu.linear_path(blas_min) == "blas"
    bf16_min = numba_cpu.SIMD_BF16_BLAS_MIN_TOKENS  # the simd kernel's 4-token pass wins
    assert numba_cpu.linear_path(bf16_min - 1, bf16=True) == "simd"
    assert numba_cpu.linear_path(bf16_min, bf16=True) == "blas_bf16"
    monkeypatch.setattr(numba_cpu, "SIMD", None)  # elsewhere: the portable kernels
    bf16_min = numba_cpu.BF16_BLAS_MIN_TOKENS
    assert numba_cpu.linear_path(bf16_min - 1, bf16=True) != "blas_bf16"
    assert numba_cpu.linear_path(bf16_min, bf16=True) == "blas_bf16"
    assert numba_cpu.linear_path(1) == numba_cpu.linear_path(gemv_max) == "gemv"
    assert numba_cpu.linear_path(gemv_max + 1) == "few_tokens"
    assert numba_cpu.linear_path(blas_min - 1) == "few_tokens"
    assert numba_cpu.linear_path(blas_min) == numba_cpu.linear_path(4096) == "blas"
    x = np.zeros((2, 32), np.float32)
    b, s = np.zeros((3, 1, 16), np.uint8), np.full((3, 1), 127, np.uint8)
    with pytest.raises(ValueError, match="path = 'fast'"):
        numba_cpu._linear_np(x, b, s, np.zeros(3, np.float32), path="fast")


def test_numba_e2m1_decode_word_matches_the_table():
    # the packed-integer decode of numba_cpu, evaluated for all 16 codes, equals the E2M1 values
    for code in range(16):
        want = (-1.0 if code & 8 else 1.0) * E2M1[code & 7]
        assert numba_cpu._e2m1_times2(np.int32(code)) == 2 * want, code


@pytest.mark.parametrize("backend", BACKENDS)
def test_mxfp4_linear_shape_errors(backend):
    fn = BACKENDS[backend].mxfp4_linear
    blocks = torch.zeros(4, 2, 16, dtype=torch.uint8)
    scales = torch.zeros(4, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="K = 64"):
        fn(torch.zeros(1, 32), blocks, scales)
    with pytest.raises(ValueError, match="scales"):
        fn(torch.zeros(1, 64), blocks, scales[:, :1])
    with pytest.raises(ValueError, match="bias"):
        fn(torch.zeros(1, 64), blocks, scales, torch.zeros(3))


# ----------------------------------------------------------------------------- MoE


def make_experts(g, E, H, I, bias_dtype=torch.float32):
    b1, s1 = random_mxfp4(g, E, 2 * I, H, scale_lo=120, scale_hi=124)
    b2, s2 = random_mxfp4(g, E, H, I, scale_lo=120, scale_hi=124)
    bias1 = (torch.randn(E, 2 * I, generator=g) * 0.5).to(bias_dtype)
    bias2 = (torch.randn(E, H, generator=g) * 0.5).to(bias_dtype)
    return MoEWeights(b1, s1, bias1, b2, s2, bias2, swiglu_limit=7.0, swiglu_alpha=1.702)


def moe64(x, experts_ids, weights, w: MoEWeights):
    """Float64, one token and one expert at a time, straight from SPEC.md."""
    W1, W2 = decode64(w.mlp1_blocks, w.mlp1_scales), decode64(w.mlp2_blocks, w.mlp2_scales)
    b1, b2 = w.mlp1_bias.double(), w.mlp2_bias.double()
    out = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        for j in range(experts_ids.shape[1]):
            e = int(experts_ids[t, j])
            h = W1[e] @ x[t].double() + b1[e]
            gate, lin = (
                h[0::2].clamp(max=w.swiglu_limit),
                h[1::2].clamp(-w.swiglu_limit, w.swiglu_limit),
            )
            a = gate * torch.sigmoid(w.swiglu_alpha * gate) * (lin + 1)
            out[t] += float(weights[t, j]) * (W2[e] @ a + b2[e])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T, E, k", [(1, 4, 2), (9, 6, 2), (20, 8, 4)])
def test_moe_forward(backend, T, E, k, poisoned):
    H, I = 64, 96
    g = torch.Generator().manual_seed(T + E)
    w = make_experts(g, E, H, I)
    x = torch.randn(T, H, generator=g)
    logits = torch.randn(T, E, generator=g)
    logits[:, E - 1] -= 100  # one expert receives no token
    r = BACKENDS[backend].route(logits, k)
    assert r.offsets[E] - r.offsets[E - 1] == 0
    y = BACKENDS[backend].moe_forward(x, r, w)
    ids, weights = expected_topk(logits, k)  # independent routing for the float64 reference
    want = moe64(x, ids, weights, w)
    assert y.shape == (T, H) and y.dtype == torch.float32 and not torch.isnan(y).any()
    torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_moe_forward_all_tokens_one_expert_bf16(backend):
    T, E, k, H, I = 6, 4, 2, 32, 64
    g = torch.Generator().manual_seed(21)
    w = make_experts(g, E, H, I, bias_dtype=torch.bfloat16)
    x = torch.randn(T, H, generator=g).bfloat16()
    logits = torch.randn(T, E, generator=g)
    logits[:, 2] += 100
    r = BACKENDS[backend].route(logits, k)
    y = BACKENDS[backend].moe_forward(x, r, w)
    assert y.dtype == torch.bfloat16
    ids, weights = expected_topk(logits, k)
    want = moe64(x, ids, weights, w)
    torch.testing.assert_close(y.double(), want, rtol=2e-2, atol=2e-2 * want.abs().max().item())


def test_moe_per_token_matches_grouped():
    T, E, k, H, I = 5, 4, 2, 32, 32
    g = torch.Generator().manual_seed(22)
    w = make_experts(g, E, H, I)
    x = torch.randn(T, H, generator=g)
    r = reference.route(torch.randn(T, E, generator=g), k)
    want = moe64(x, r.experts, r.weights, w)
    y = reference.moe_forward_per_token(x, r, w)  # bf16 dense weights: exact for MXFP4 values
    torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


# ----------------------------------------------------------------------------- dispatcher


def test_dispatcher_unknown_backend():
    with pytest.raises(ValueError, match="numba_cuda"):
        kernels.route(torch.zeros(2, 4), 2, backend="triton")


def test_dispatcher_auto_picks_numba_on_cpu():
    assert kernels.available_backends()["numba"] == ""
    assert kernels.get_backend("auto", "cpu") is numba_cpu
    logits = torch.randn(7, 8, generator=torch.Generator().manual_seed(0))
    r = kernels.route(logits, 3)
    assert torch.equal(r.order, reference.route(logits, 3).order)


def test_dispatcher_unavailable_backend(monkeypatch):
    monkeypatch.setitem(kernels._loaded, "cuda", (None, "no CUDA GPU here"))
    with pytest.raises(RuntimeError, match="no CUDA GPU here"):
        kernels.mxfp4_linear(torch.zeros(1, 32), torch.zeros(1, 1, 16, dtype=torch.uint8),
                             torch.zeros(1, 1, dtype=torch.uint8), backend="cuda")  # fmt: skip
    assert kernels.available_backends()["cuda"] == "no CUDA GPU here"


def test_dispatcher_falls_back_loudly(monkeypatch):
    monkeypatch.setitem(kernels._loaded, "numba", (None, "numba is not installed"))
    monkeypatch.setattr(kernels, "_warned", set())
    with pytest.warns(UserWarning, match="numba is not installed"):
        r = kernels.route(torch.randn(3, 4), 2)
    assert isinstance(r, Routing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once only
        kernels.route(torch.randn(3, 4), 2)


def test_auto_on_a_gpu_falls_back_when_the_cuda_extension_fails_to_build(monkeypatch):
    """A GPU machine whose compiler cannot build the extension (no ninja, nvcc and torch's CUDA
    of different major versions): "auto" says why and runs the next back end; asking for
    backend="cuda" by name still raises."""
    import types

    calls = []

    def failing_build():
        calls.append(1)
        raise RuntimeError("Ninja is required to load C++ extensions\nmore detail")

    fake = types.SimpleNamespace(is_built=lambda: False, build=failing_build)
    monkeypatch.setitem(kernels._loaded, "cuda", (fake, ""))
    monkeypatch.setitem(kernels._loaded, "numba_cuda", (None, "numba.cuda finds no GPU"))
    monkeypatch.setattr(kernels, "_warned", set())
    with pytest.warns(UserWarning, match="failed to build: RuntimeError: Ninja is required"):
        assert kernels._auto("cuda") == "torch"
    assert calls == [1]
    assert "failed to build" in kernels.available_backends()["cuda"]
    with pytest.raises(RuntimeError, match="failed to build"):
        kernels.get_backend("cuda", "cuda")
    kernels._auto("cuda")
    assert calls == [1]  # tried once per process, not at every call


def test_auto_on_a_gpu_keeps_a_cuda_extension_that_builds(monkeypatch):
    import types

    fake = types.SimpleNamespace(is_built=lambda: False, build=lambda: None)
    monkeypatch.setitem(kernels._loaded, "cuda", (fake, ""))
    assert kernels._auto("cuda") == "cuda"
