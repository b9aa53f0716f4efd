"""CPU kernels in numba: routing, fused MXFP4 decode-and-multiply, and the MoE layer (chapters 9-10).

Same contract as `reference.py` (same functions, same arguments, same results up to float32
round-off; routing ids/order/offsets/inverse bit-for-bit). What changes is how the work is done:

- route: a selection of the top k per token (no full sort), then a counting sort in which each
  thread histograms its own chunk of tokens, so no two threads ever increment the same counter.
- mxfp4_linear: the (N, K) weight is never decoded as a whole. Each thread takes a tile of
  output rows, decodes just those rows into a small float32 buffer (a 16-entry table already
  multiplied by the block's scale: 16 multiplies per 32 weights), and reuses that buffer for
  every token. Memory traffic is the packed 4.25 bits/weight, not 32.
- moe_forward: the routing's counting sort gives each expert its tokens in one contiguous run,
  so each expert's weights are decoded once per call, whatever the number of tokens.

Numerics: `fastmath={"reassoc", "contract"}` lets LLVM reorder float32 sums into SIMD lanes and
use FMA; results differ from a left-to-right sum by float32 round-off only. We leave out
"nnan"/"ninf", so NaN (scale byte 255) still propagates. Results are deterministic: no atomics,
no sum whose order depends on thread timing.

The first call compiles each kernel (seconds); `cache=True` stores the machine code next to
this file (in __pycache__) so later processes skip that. Arrays are passed as C-contiguous
float32/uint8/int32/int64 only, to keep the number of compiled signatures small.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from gptoss_edu.kernels.reference import (
    MoEWeights,
    Routing,
    check_linear_args,
    check_moe_args,
    check_route_args,
)
from gptoss_edu.mxfp4 import FP4_VALUES, scale_table

try:
    import numba
    from numba import njit, prange

    _UNAVAILABLE = ""
except ImportError as err:  # the module still imports; is_available() says why it cannot run
    numba = None
    prange = range
    _UNAVAILABLE = f"numba is not installed ({err}); `pip install numba` to use the numba back end"

    def njit(*args, **kwargs):
        return lambda f: f


__all__ = ["is_available", "route", "mxfp4_linear", "moe_forward", "Routing", "MoEWeights"]

FASTMATH = {"reassoc", "contract"}  # SIMD sums and FMA; NaN and inf keep their meaning
TILE_ROWS = 16  # output rows decoded together: 16 * K floats (180 KiB at K = 2880) fit in L2

_LUT = np.array(FP4_VALUES, dtype=np.float32)  # (16,) E2M1 value of each 4-bit code
_SCALE_VALUES = scale_table(torch.float32).numpy()  # (256,) 2^(s-127), exact; 255 -> NaN


def is_available() -> tuple[bool, str]:
    """(True, "") if numba imports, else (False, one-line reason)."""
    return (numba is not None, _UNAVAILABLE)


def _empty(shape, dtype) -> np.ndarray:
    """Every scratch and output array of this module comes from here (tests NaN-fill it)."""
    return np.empty(shape, dtype=dtype)


def _as_numpy(t: Tensor, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous numpy view of a CPU tensor (no copy when it already has that dtype/layout)."""
    if t.device.type != "cpu":
        raise ValueError(
            f"numba_cpu: got a tensor on {t.device}; this back end runs on CPU tensors"
        )
    return t.detach().to(dtype).contiguous().numpy()


# ----------------------------------------------------------------------------- routing


@njit(inline="always")
def _before(a, b):
    """True if logit a sorts before logit b in a descending sort (torch puts NaN first)."""
    return a > b or (a != a and b == b)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _route_kernel(logits, k, n_chunks, weights, experts, order, offsets, inverse):
    # logits (T, E) f32 -> weights (T, k) f32, experts (T, k) i32, order (T*k,), offsets (E+1,),
    # inverse (T*k,) i64
    T, E = logits.shape

    # 1. top-k per token by insertion into a sorted list of k; scanning e upwards and moving only
    #    past strictly smaller logits keeps ties in expert-id order (a stable descending sort).
    for t in prange(T):
        count = 0
        for e in range(E):
            v = logits[t, e]
            if count < k:
                p = count
                count += 1
            elif _before(v, weights[t, k - 1]):
                p = k - 1
            else:
                continue
            while p > 0 and _before(v, weights[t, p - 1]):
                weights[t, p] = weights[t, p - 1]
                experts[t, p] = experts[t, p - 1]
                p -= 1
            weights[t, p] = v
            experts[t, p] = e
        # softmax over the k chosen logits; weights[t, 0] is the largest
        m = weights[t, 0]
        total = np.float32(0.0)
        for j in range(k):
            ex = np.exp(weights[t, j] - m)
            weights[t, j] = ex
            total += ex
        for j in range(k):
            weights[t, j] = weights[t, j] / total

    # 2. per-chunk histograms: chunk c covers tokens [c*chunk, (c+1)*chunk); counts[c] is its own row
    chunk = (T + n_chunks - 1) // n_chunks
    counts = np.zeros((n_chunks, E), dtype=np.int64)
    for c in prange(n_chunks):
        for t in range(c * chunk, min((c + 1) * chunk, T)):
            for j in range(k):
                counts[c, experts[t, j]] += 1

    # 3. exclusive prefix sum in (expert, chunk) order: chunk c's first slot for expert e. Chunks
    #    of lower tokens come first within an expert, which is what makes the sort stable.
    running = 0
    for e in range(E):
        offsets[e] = running
        for c in range(n_chunks):
            n = counts[c, e]
            counts[c, e] = running  # from here on: chunk c's next free slot for expert e
            running += n
    offsets[E] = running

    # 4. stable scatter, each chunk into its own slots, in ascending assignment order
    for c in prange(n_chunks):
        for t in range(c * chunk, min((c + 1) * chunk, T)):
            for j in range(k):
                a = t * k + j
                e = experts[t, j]
                p = counts[c, e]
                counts[c, e] = p + 1
                order[p] = a
                inverse[a] = p


def route(router_logits: Tensor, k: int) -> Routing:
    check_route_args(router_logits, k)
    T, E = router_logits.shape
    logits = _as_numpy(router_logits, torch.float32)
    weights = _empty((T, k), np.float32)
    experts = _empty((T, k), np.int32)
    order = _empty(T * k, np.int64)
    offsets = _empty(E + 1, np.int64)
    inverse = _empty(T * k, np.int64)
    n_chunks = max(1, min(numba.get_num_threads(), T))
    _route_kernel(logits, k, n_chunks, weights, experts, order, offsets, inverse)
    return Routing(*(torch.from_numpy(a) for a in (weights, experts, order, offsets, inverse)))


# ----------------------------------------------------------------------------- MXFP4 linear


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _linear_kernel(x, blocks, scales, bias, lut, scale_values, tile_rows, out):
    # x (T, K) f32, blocks (N, G, 16) u8, scales (N, G) u8, bias (N,) f32 -> out (T, N) f32
    # tile_rows must be a multiple of 4 (the register block below takes rows 4 at a time)
    T, K = x.shape
    N, G, _ = blocks.shape
    n_tiles = (N + tile_rows - 1) // tile_rows
    for tile in prange(n_tiles):
        n0 = tile * tile_rows
        R = min(tile_rows, N - n0)
        w = np.zeros((tile_rows, K), dtype=np.float32)  # this tile's rows, decoded (rows >= R: 0)
        lut_s = np.empty(16, dtype=np.float32)  # the 16 values times this block's scale
        for r in range(R):
            for g in range(G):
                s = scale_values[scales[n0 + r, g]]
                for c in range(16):
                    lut_s[c] = lut[c] * s  # exact: <= 2 significant bits times a power of two
                for j in range(16):
                    byte = blocks[n0 + r, g, j]
                    w[r, 32 * g + 2 * j] = lut_s[byte & 15]  # element 2j: low nibble
                    w[r, 32 * g + 2 * j + 1] = lut_s[byte >> 4]  # element 2j+1: high nibble

        # Every token reuses the decoded tile, so weights are read from memory once per call.
        # Register block: 2 tokens x 4 rows = 8 running sums; each loaded x or w value feeds
        # 4 or 2 multiply-adds instead of 1 (a plain dot product is limited by its loads).
        for t in range(0, T, 2):
            t2 = min(t + 1, T - 1)  # odd T: the last pair computes token T-1 twice
            for r in range(0, tile_rows, 4):
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
                for i in range(K):  # contiguous float32 loops: SIMD under "reassoc"
                    xa = x[t, i]
                    xb = x[t2, i]
                    w0 = w[r, i]
                    w1 = w[r + 1, i]
                    w2 = w[r + 2, i]
                    w3 = w[r + 3, i]
                    a0 += xa * w0
                    a1 += xa * w1
                    a2 += xa * w2
                    a3 += xa * w3
                    b0 += xb * w0
                    b1 += xb * w1
                    b2 += xb * w2
                    b3 += xb * w3
                for q, (va, vb) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3))):
                    if r + q < R:
                        out[t, n0 + r + q] = va + bias[n0 + r + q]
                        out[t2, n0 + r + q] = vb + bias[n0 + r + q]


def _linear_np(x, blocks, scales, bias, out=None) -> np.ndarray:
    """numpy in, numpy out: x (T, K) f32, blocks (N, G, 16) u8, scales (N, G) u8, bias (N,) f32."""
    if out is None:
        out = _empty((x.shape[0], blocks.shape[0]), np.float32)
    _linear_kernel(x, blocks, scales, bias, _LUT, _SCALE_VALUES, TILE_ROWS, out)
    return out


def mxfp4_linear(
    x: Tensor,
    blocks: Tensor,
    scales: Tensor,
    bias: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """y = x @ W.T + bias, W decoded tile by tile from MXFP4; (T, N) in x.dtype, f32 accumulation.

    `out` (T, N) float32, optional: written in place (every element), e.g. to reuse a buffer.
    """
    check_linear_args(x, blocks, scales, bias)
    N = blocks.shape[0]
    if out is not None and (out.shape != (x.shape[0], N) or out.dtype != torch.float32):
        raise ValueError(
            f"mxfp4_linear: out has shape {tuple(out.shape)} dtype {out.dtype}; "
            f"expected ({x.shape[0]}, {N}) float32"
        )
    xn = _as_numpy(x, torch.float32)  # bf16 -> f32 copy (numba has no bf16)
    bn = np.zeros(N, np.float32) if bias is None else _as_numpy(bias, torch.float32)  # (N,)
    y = _linear_np(
        xn,
        _as_numpy(blocks, torch.uint8),
        _as_numpy(scales, torch.uint8),
        bn,
        None if out is None else out.numpy(),
    )
    if out is not None:
        return out if x.dtype == torch.float32 else out.to(x.dtype)
    return torch.from_numpy(y).to(x.dtype)


# ----------------------------------------------------------------------------- MoE


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _gather_kernel(x, rows, out):
    # out[i] = x[rows[i]]: x (T, H), rows (n,) -> out (n, H)
    for i in prange(rows.shape[0]):
        out[i, :] = x[rows[i], :]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _swiglu_kernel(h, limit, alpha, out):
    # h (n, 2I) interleaved (gate, linear) -> out (n, I); gpt-oss's clamped SwiGLU
    n, two_i = h.shape
    for i in prange(n):
        for c in range(two_i // 2):
            gate = h[i, 2 * c]
            lin = h[i, 2 * c + 1]
            if gate > limit:  # written so that NaN passes through, like torch.clamp
                gate = limit
            if lin > limit:
                lin = limit
            if lin < -limit:
                lin = -limit
            out[i, c] = gate / (np.float32(1.0) + np.exp(-alpha * gate)) * (lin + np.float32(1.0))


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _scatter_weighted_kernel(y, assignments, weights_flat, y_assign):
    # y_assign[a] = weight[a] * y[i] for a = assignments[i]: each assignment row is written once
    for i in prange(assignments.shape[0]):
        a = assignments[i]
        w = weights_flat[a]
        for c in range(y.shape[1]):
            y_assign[a, c] = w * y[i, c]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _sum_assignments_kernel(y_assign, k, out):
    # out[t] = sum over j = 0..k-1 of y_assign[t*k + j], always in j order (deterministic)
    T, H = out.shape
    for t in prange(T):
        for c in range(H):
            acc = np.float32(0.0)
            for j in range(k):
                acc += y_assign[t * k + j, c]
            out[t, c] = acc


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights) -> Tensor:
    """Grouped MoE: per expert, gather its tokens, fused mlp1, SwiGLU, fused mlp2, weighted scatter."""
    check_moe_args(x, routing, experts)
    T, H = x.shape
    k = routing.experts.shape[1]
    E = experts.mlp1_blocks.shape[0]
    xf = _as_numpy(x, torch.float32)  # (T, H)
    order = _as_numpy(routing.order, torch.int64)  # (T*k,)
    offsets = routing.offsets.tolist()
    w_flat = _as_numpy(routing.weights.reshape(-1), torch.float32)  # (T*k,)
    b1, s1 = (
        _as_numpy(experts.mlp1_blocks, torch.uint8),
        _as_numpy(experts.mlp1_scales, torch.uint8),
    )
    b2, s2 = (
        _as_numpy(experts.mlp2_blocks, torch.uint8),
        _as_numpy(experts.mlp2_scales, torch.uint8),
    )
    bias1 = _as_numpy(experts.mlp1_bias, torch.float32)  # (E, 2I)
    bias2 = _as_numpy(experts.mlp2_bias, torch.float32)  # (E, H)
    limit = np.float32(experts.swiglu_limit)
    alpha = np.float32(experts.swiglu_alpha)
    two_i = b1.shape[1]

    y_assign = _empty((T * k, H), np.float32)  # one row per (token, choice): no write conflicts
    for e in range(E):
        lo, hi = offsets[e], offsets[e + 1]
        if lo == hi:
            continue  # an expert no token chose costs nothing, not even reading its weights
        assignments = order[lo:hi]  # (n,) contiguous slice of the counting sort
        n = hi - lo
        xe = _empty((n, H), np.float32)
        _gather_kernel(xf, assignments // k, xe)  # (n, H) the tokens of expert e
        h = _linear_np(xe, b1[e], s1[e], bias1[e])  # (n, 2I)
        act = _empty((n, two_i // 2), np.float32)
        _swiglu_kernel(h, limit, alpha, act)  # (n, I)
        y = _linear_np(act, b2[e], s2[e], bias2[e])  # (n, H)
        _scatter_weighted_kernel(y, assignments, w_flat, y_assign)
    out = _empty((T, H), np.float32)
    _sum_assignments_kernel(y_assign, k, out)  # (T, H)
    return torch.from_numpy(out).to(x.dtype)


def warmup() -> None:
    """Compile (or load from the cache) every kernel once, on tiny inputs."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=g)
    r = route(logits, 2)
    E, H, I = 4, 32, 32
    experts = MoEWeights(
        torch.randint(0, 256, (E, 2 * I, H // 32, 16), dtype=torch.uint8, generator=g),
        torch.full((E, 2 * I, H // 32), 120, dtype=torch.uint8),
        torch.zeros(E, 2 * I),
        torch.randint(0, 256, (E, H, I // 32, 16), dtype=torch.uint8, generator=g),
        torch.full((E, H, I // 32), 120, dtype=torch.uint8),
        torch.zeros(E, H),
    )
    moe_forward(torch.randn(3, H, generator=g), r, experts)
    assert math.isfinite(
        float(mxfp4_linear(torch.ones(1, H), experts.mlp1_blocks[0], experts.mlp1_scales[0]).sum())
    )
