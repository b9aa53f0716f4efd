"""numba.cuda back end: MoE routing, MXFP4 matmul and the expert loop on the GPU (chapter 10).

The same three functions as every back end (see ``gptoss_edu/kernels/reference.py``):

    route(router_logits, k) -> Routing
    mxfp4_linear(x, blocks, scales, bias=None) -> (T, N)
    moe_forward(x, routing, experts) -> (T, H)

written as numba.cuda kernels in Python syntax, so chapter 10 can show a GPU kernel before the
CUDA C++ version in ``gptoss_edu/kernels/cuda/``. The kernels are the same algorithms as the C++
ones: read them side by side.

Routing is four small kernels:

1. top-k, one thread per token: k passes of an arg-max over the E logits, each pass taking the
   best logit strictly after the previous pick in the order (logit descending, expert id
   ascending), then a softmax over the k picks.
2. histogram of the T*k expert ids: each block counts into shared memory with
   ``cuda.atomic.add`` (fast, on-chip) and flushes its counts to global memory once.
3. one-block Hillis-Steele scan of the E counts in shared memory -> ``offsets`` (E <= 1024).
4. stable scatter: one thread per expert walks the flat assignment ids in order and writes its
   own slice ``order[offsets[e]:offsets[e+1]]``. Walking in order is what makes the result
   stable and deterministic without relying on the order of atomics; all threads of a warp
   read the same id at the same time (one broadcast load). O(E * T*k) work, fine for E <= 128;
   the C++ version uses a warp ballot to take 32 ids per step.

MXFP4 matmul decodes a (32 rows x 32 inputs) tile of weights into shared memory once per
step and reuses it for the 8 tokens of the tile; float32 accumulation. T == 1 (decoding one
token) takes a GEMV kernel: one block per output row, coalesced byte reads, a shared-memory
tree reduction.

Without a GPU the kernels run in numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set
before numba is imported): every CUDA thread becomes a Python thread, so it is correct and
very slow; use tiny shapes. Under the simulator CPU tensors are accepted (viewed as numpy
arrays); on a real GPU the tensors must be CUDA tensors (viewed with ``cuda.as_cuda_array``,
no copy) and kernels run on torch's current stream.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import cuda, float32, int32, int64
from numba.core import config as _numba_config
from torch import Tensor

from gptoss_edu.kernels.reference import (
    MoEWeights,
    Routing,
    check_linear_args,
    check_moe_args,
    check_route_args,
)
from gptoss_edu.mxfp4 import BLOCK_SIZE, scale_table
from gptoss_edu.mxfp4 import FP4_VALUES as _FP4_VALUES

# The format's facts come from gptoss_edu.mxfp4, their one definition, as float32 tables.
FP4_VALUES = np.array(_FP4_VALUES, dtype=np.float32)  # (16,) E2M1 code (bit 3 = sign) -> value
# E8M0 scale byte s -> 2^(s - 127), exact in float32 (s = 0 is the subnormal 2^-127); 255 is NaN.
# A table instead of math.ldexp: one load from constant memory, and no libdevice call.
E8M0_VALUES = scale_table(torch.float32).numpy()  # (256,)

MX_BLOCK = BLOCK_SIZE  # weights per scale byte (16 bytes of two nibbles each)
MAX_EXPERTS = 1024  # shared-memory size of the histogram and the scan (one block)
TILE_N = 32  # output rows per block of the tiled matmul (threadIdx.x)
TILE_T = 8  # tokens per block of the tiled matmul (threadIdx.y)
W_TILE_COLS = MX_BLOCK + 1  # shared weight tile row: 32 values + 1 pad (see the matmul kernel)
GEMV_THREADS = 64  # threads per output row in the T == 1 kernel (a power of 2)


def is_available() -> tuple[bool, str]:
    """(True, "") when numba.cuda can run here: a real GPU, or the simulator is switched on."""
    if _simulated():
        return True, "running in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): correct but slow"
    if cuda.is_available():
        return True, ""
    return False, "numba.cuda finds no CUDA GPU/driver (set NUMBA_ENABLE_CUDASIM=1 to simulate)"


def _simulated() -> bool:
    return bool(_numba_config.ENABLE_CUDASIM)


# ----------------------------------------------------------------------------------------------
# Routing kernels


@cuda.jit
def _topk_softmax_kernel(logits, k, experts, weights):
    # logits (T, E) float32 -> experts (T, k) int32, weights (T, k) float32. One thread/token.
    t = cuda.grid(1)
    if t >= logits.shape[0]:
        return
    n_experts = logits.shape[1]
    prev_v = float32(0.0)
    prev_e = -1
    for j in range(k):
        best_e = -1
        best_v = float32(0.0)
        for e in range(n_experts):
            v = logits[t, e]
            # Only logits strictly after the previous pick in the order
            # (value descending, id ascending) are candidates: no "taken" mask needed.
            if j > 0 and not (v < prev_v or (v == prev_v and e > prev_e)):
                continue
            # Strict '>' while scanning ids upwards keeps the lower id on ties.
            if best_e < 0 or v > best_v:
                best_e = e
                best_v = v
        experts[t, j] = best_e
        weights[t, j] = best_v  # the logit for now; softmax below
        prev_v = best_v
        prev_e = best_e
    # Softmax over the k picks; weights[t, 0] is their max.
    m = weights[t, 0]
    total = float32(0.0)
    for j in range(k):
        w = math.exp(weights[t, j] - m)
        weights[t, j] = w
        total += w
    for j in range(k):
        weights[t, j] = weights[t, j] / total


@cuda.jit
def _histogram_kernel(experts_flat, counts):
    # experts_flat (T*k,) int32 -> counts (E,) int32 (zeroed by the caller).
    hist = cuda.shared.array(MAX_EXPERTS, dtype=int32)
    n_experts = counts.shape[0]
    tid = cuda.threadIdx.x
    for e in range(tid, n_experts, cuda.blockDim.x):
        hist[e] = 0
    cuda.syncthreads()
    # Grid-stride loop; shared-memory atomics are cheap, global ones happen once per block.
    for a in range(cuda.grid(1), experts_flat.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(hist, experts_flat[a], 1)
    cuda.syncthreads()
    for e in range(tid, n_experts, cuda.blockDim.x):
        if hist[e] != 0:
            cuda.atomic.add(counts, e, hist[e])


@cuda.jit
def _offsets_scan_kernel(counts, offsets):
    # counts (E,) int32 -> offsets (E+1,) int64. One block with blockDim.x >= E.
    # Hillis-Steele inclusive scan: after the step with distance d, buf[i] holds the sum of
    # the 2d values ending at i. log2(blockDim) steps, two barriers each (read, then write).
    buf = cuda.shared.array(MAX_EXPERTS, dtype=int64)
    n_experts = counts.shape[0]
    i = cuda.threadIdx.x
    buf[i] = counts[i] if i < n_experts else 0
    cuda.syncthreads()
    d = 1
    while d < cuda.blockDim.x:
        v = buf[i]
        if i >= d:
            v += buf[i - d]
        cuda.syncthreads()
        buf[i] = v
        cuda.syncthreads()
        d *= 2
    # Inclusive scan shifted by one is the exclusive scan: offsets[e] = sum(counts[:e]).
    if i < n_experts:
        offsets[i + 1] = buf[i]
    if i == 0:
        offsets[0] = 0


@cuda.jit
def _stable_scatter_kernel(experts_flat, offsets, order, inverse):
    # One thread per expert e: walk the assignments a = t*k + j in increasing order and
    # append those routed to e. Increasing a within an expert = stable, by construction.
    e = cuda.grid(1)
    if e >= offsets.shape[0] - 1:
        return
    pos = offsets[e]
    for a in range(experts_flat.shape[0]):
        if experts_flat[a] == e:  # same a in every thread of the warp: a broadcast load
            order[pos] = a
            inverse[a] = pos
            pos += 1


# ------------------------------------------------------------------------------------------
# MXFP4 matmul kernels: out (T, N) = x (T, K) @ W.T + bias, W (N, K) stored as MXFP4.


@cuda.jit
def _mxfp4_matmul_kernel(x, blocks, scales, bias, has_bias, out):
    # x (T, K) f32; blocks (N, K/32, 16) u8; scales (N, K/32) u8; bias (N,) f32; out (T, N) f32.
    # Block (TILE_N, TILE_T) threads computes out[t0:t0+TILE_T, n0:n0+TILE_N]; thread
    # (tx, ty) owns out[t0+ty, n0+tx]. K is walked one MX block (32 inputs) at a time.
    lut = cuda.const.array_like(FP4_VALUES)
    scale_of = cuda.const.array_like(E8M0_VALUES)
    # +1 column of padding: threads of a warp read w_tile[tx, c] for tx = 0..31, and a row
    # stride of 33 words puts those 32 reads in 32 different shared-memory banks.
    w_tile = cuda.shared.array((TILE_N, W_TILE_COLS), dtype=float32)
    x_tile = cuda.shared.array((TILE_T, MX_BLOCK), dtype=float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TILE_N + tx
    n0 = cuda.blockIdx.x * TILE_N
    t0 = cuda.blockIdx.y * TILE_T
    n_tokens = x.shape[0]
    n_rows, n_groups = scales.shape
    acc = float32(0.0)
    for g in range(n_groups):
        # Decode TILE_N rows x 16 bytes (two nibbles each) once, for all TILE_T tokens.
        for i in range(tid, TILE_N * 16, TILE_N * TILE_T):
            r = i // 16
            j = i % 16
            n = n0 + r
            if n < n_rows:
                byte = blocks[n, g, j]
                s = scale_of[scales[n, g]]
                w_tile[r, 2 * j] = lut[byte & 15] * s  # element 2j: low nibble
                w_tile[r, 2 * j + 1] = lut[byte >> 4] * s  # element 2j+1: high nibble
            else:
                w_tile[r, 2 * j] = float32(0.0)
                w_tile[r, 2 * j + 1] = float32(0.0)
        for i in range(tid, TILE_T * MX_BLOCK, TILE_N * TILE_T):
            r = i // MX_BLOCK
            c = i % MX_BLOCK
            t = t0 + r
            x_tile[r, c] = x[t, g * MX_BLOCK + c] if t < n_tokens else float32(0.0)
        cuda.syncthreads()  # tiles complete before anyone reads them
        for c in range(MX_BLOCK):
            acc += x_tile[ty, c] * w_tile[tx, c]
        cuda.syncthreads()  # everyone done reading before the next step overwrites them
    t = t0 + ty
    n = n0 + tx
    if t < n_tokens and n < n_rows:
        if has_bias:
            acc += bias[n]
        out[t, n] = acc


@cuda.jit
def _mxfp4_gemv_kernel(x, row_bytes, scales, bias, has_bias, out):
    # T == 1. x (1, K) f32; row_bytes (N, K/2) u8 (blocks with the last two dims merged);
    # scales (N, K/32) u8; out (1, N) f32. One block of GEMV_THREADS threads per row n:
    # consecutive threads read consecutive bytes of the row (coalesced), then reduce.
    lut = cuda.const.array_like(FP4_VALUES)
    scale_of = cuda.const.array_like(E8M0_VALUES)
    partial = cuda.shared.array(GEMV_THREADS, dtype=float32)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(tid, row_bytes.shape[1], GEMV_THREADS):
        byte = row_bytes[n, i]
        s = scale_of[scales[n, i // 16]]
        acc += (lut[byte & 15] * s) * x[0, 2 * i] + (lut[byte >> 4] * s) * x[0, 2 * i + 1]
    partial[tid] = acc
    cuda.syncthreads()
    stride = GEMV_THREADS // 2
    while stride > 0:  # tree reduction: log2(GEMV_THREADS) steps
        if tid < stride:
            partial[tid] += partial[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        total = partial[0]
        if has_bias:
            total += bias[n]
        out[0, n] = total


# ------------------------------------------------------------------------------------------
# Expert-loop kernels (gather, SwiGLU, weighted combine)


# One thread per output element, flat index i = row * cols + col: consecutive threads touch
# consecutive columns of a row, so global loads and stores are coalesced.


@cuda.jit
def _gather_rows_kernel(x, order, k, xs):
    # xs[p] = x[order[p] // k]: the token row of the p-th assignment in expert order.
    i = cuda.grid(1)
    hidden = xs.shape[1]
    if i < xs.shape[0] * hidden:
        p = i // hidden
        h = i % hidden
        xs[p, h] = x[order[p] // k, h]


@cuda.jit
def _swiglu_kernel(h1, limit, alpha, act):
    # h1 (A, 2I) interleaved: gate = h1[:, 0::2], lin = h1[:, 1::2] -> act (A, I).
    i = cuda.grid(1)
    inter = act.shape[1]
    if i < act.shape[0] * inter:
        p = i // inter
        c = i % inter
        gate = h1[p, 2 * c]
        lin = h1[p, 2 * c + 1]
        if gate > limit:  # min(gate, limit); a NaN stays NaN as in torch.clamp
            gate = limit
        if lin > limit:
            lin = limit
        if lin < -limit:
            lin = -limit
        # gate * sigmoid(alpha * gate) * (lin + 1)
        act[p, c] = gate / (float32(1.0) + math.exp(-alpha * gate)) * (lin + float32(1.0))


@cuda.jit
def _combine_kernel(y, weights, inverse, out):
    # out[t] = sum_j weights[t, j] * y[inverse[t*k + j]]: a gather, so no atomics, and the
    # sum is taken in the same order (j = 0..k-1) on every run.
    i = cuda.grid(1)
    hidden = out.shape[1]
    k = weights.shape[1]
    if i < out.shape[0] * hidden:
        t = i // hidden
        h = i % hidden
        acc = float32(0.0)
        for j in range(k):
            acc += weights[t, j] * y[inverse[t * k + j], h]
        out[t, h] = acc


# ----------------------------------------------------------------------------------------------
# Host side: checks, tensor <-> array views, launches


def _work_device(t: Tensor) -> torch.device:
    """Where the kernels' arrays live: the CPU under the simulator, the tensor's GPU otherwise."""
    ok, reason = is_available()
    if not ok:
        raise RuntimeError(f"numba_cuda back end unavailable: {reason}")
    if _simulated():
        return torch.device("cpu")
    if not t.is_cuda:
        raise ValueError(
            f"numba_cuda back end: expected CUDA tensors, found a tensor on {t.device}; "
            "move the inputs with .cuda() or use backend='numba' for the CPU"
        )
    return t.device


def _view(t: Tensor):
    """A no-copy array view of a contiguous tensor: numpy in the simulator, a DeviceNDArray on GPU."""
    if _simulated():
        return t.numpy()
    return cuda.as_cuda_array(t, sync=False)  # we launch on torch's current stream anyway


def _stream(device: torch.device):
    if _simulated():
        return 0
    return cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)


def _on(t: Tensor, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    return t.detach().to(device=device, dtype=dtype).contiguous()


def _launch_linear(x, blocks, scales, bias, out, stream) -> None:
    """out (T, N) float32 = x (T, K) float32 @ W.T (+ bias), all arrays already on the device."""
    n_tokens = x.shape[0]
    n_rows, n_groups = scales.shape
    has_bias = bias is not None
    if bias is None:
        bias = out[0]  # any float32 array: never read when has_bias is False
    if n_tokens == 1:
        row_bytes = blocks.reshape(n_rows, n_groups * 16)
        _mxfp4_gemv_kernel[n_rows, GEMV_THREADS, stream](x, row_bytes, scales, bias, has_bias, out)
    else:
        grid = ((n_rows + TILE_N - 1) // TILE_N, (n_tokens + TILE_T - 1) // TILE_T)
        _mxfp4_matmul_kernel[grid, (TILE_N, TILE_T), stream](x, blocks, scales, bias, has_bias, out)


def mxfp4_linear(x: Tensor, blocks: Tensor, scales: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (T, K) @ W.T + bias with W (N, K) in MXFP4; returns (T, N) in x.dtype (float32 sums)."""
    check_linear_args(x, blocks, scales, bias)
    device = _work_device(x)
    n_tokens, n_rows = x.shape[0], blocks.shape[0]
    xf = _on(x, device, torch.float32)  # numba has no bfloat16: read x as float32
    out = torch.empty(n_tokens, n_rows, dtype=torch.float32, device=device)
    if n_tokens > 0 and n_rows > 0:
        bias_v = None if bias is None else _view(_on(bias, device, torch.float32))
        _launch_linear(
            _view(xf),
            _view(_on(blocks, device)),
            _view(_on(scales, device)),
            bias_v,
            _view(out),
            _stream(device),
        )
    return out.to(device=x.device, dtype=x.dtype)


def route(router_logits: Tensor, k: int) -> Routing:
    """Top-k experts per token, softmax weights, and the tokens grouped by expert (see module doc)."""
    check_route_args(router_logits, k)
    n_tokens, n_experts = router_logits.shape
    if n_experts > MAX_EXPERTS:
        raise ValueError(
            f"route: the numba_cuda scan handles E <= {MAX_EXPERTS} experts in one block; "
            f"found E={n_experts}; use backend='torch'"
        )
    device = _work_device(router_logits)
    stream = _stream(device)
    n_assign = n_tokens * k
    logits = _on(router_logits, device, torch.float32)  # (T, E), as the reference: logits.float()
    experts = torch.empty(n_tokens, k, dtype=torch.int32, device=device)
    weights = torch.empty(n_tokens, k, dtype=torch.float32, device=device)
    counts = torch.zeros(n_experts, dtype=torch.int32, device=device)
    offsets = torch.empty(n_experts + 1, dtype=torch.int64, device=device)
    order = torch.empty(n_assign, dtype=torch.int64, device=device)
    inverse = torch.empty(n_assign, dtype=torch.int64, device=device)

    threads = 128
    if n_tokens > 0:
        blocks_t = (n_tokens + threads - 1) // threads
        _topk_softmax_kernel[blocks_t, threads, stream](
            _view(logits), k, _view(experts), _view(weights)
        )
        experts_flat = _view(experts.view(-1))  # (T*k,) assignment a = t*k + j
        blocks_a = min((n_assign + threads - 1) // threads, 256)
        _histogram_kernel[blocks_a, threads, stream](experts_flat, _view(counts))
    scan_threads = 32
    while scan_threads < n_experts:
        scan_threads *= 2
    _offsets_scan_kernel[1, scan_threads, stream](_view(counts), _view(offsets))
    if n_assign > 0:
        _stable_scatter_kernel[(n_experts + 31) // 32, 32, stream](
            _view(experts.view(-1)), _view(offsets), _view(order), _view(inverse)
        )
    out = router_logits.device
    return Routing(
        weights=weights.to(out),
        experts=experts.to(out),
        order=order.to(out),
        offsets=offsets.to(out),
        inverse=inverse.to(out),
    )


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights) -> Tensor:
    """sum_j weights[t, j] * expert_{experts[t, j]}(x[t]) for each token; (T, H) in x.dtype.

    Pipeline (all on the device): gather the token rows in expert order (T*k, H); for each
    expert, one MXFP4 matmul over its contiguous slice (mlp1, then SwiGLU, then mlp2); finally
    a gather-combine through ``routing.inverse`` back to token order. The loop over experts runs
    on the host (one launch pair per non-empty expert).
    """
    check_moe_args(x, routing, experts)
    n_tokens, hidden = x.shape
    k = routing.experts.shape[1]
    n_experts, two_i = experts.mlp1_blocks.shape[0], experts.mlp1_blocks.shape[1]
    inter = two_i // 2
    device = _work_device(x)
    stream = _stream(device)
    n_assign = n_tokens * k
    f32 = torch.float32
    out = torch.zeros(n_tokens, hidden, dtype=f32, device=device)
    if n_assign == 0:
        return out.to(device=x.device, dtype=x.dtype)

    xf = _view(_on(x, device, f32))
    order = _view(_on(routing.order, device))
    inverse = _view(_on(routing.inverse, device))
    weights = _view(_on(routing.weights, device, f32))
    w1 = _view(_on(experts.mlp1_blocks, device))
    s1 = _view(_on(experts.mlp1_scales, device))
    b1 = _view(_on(experts.mlp1_bias, device, f32))
    w2 = _view(_on(experts.mlp2_blocks, device))
    s2 = _view(_on(experts.mlp2_scales, device))
    b2 = _view(_on(experts.mlp2_bias, device, f32))
    offsets = routing.offsets.detach().to("cpu").tolist()  # host loop bounds: one small copy

    xs = torch.empty(n_assign, hidden, dtype=f32, device=device)  # token rows in expert order
    h1 = torch.empty(n_assign, two_i, dtype=f32, device=device)
    act = torch.empty(n_assign, inter, dtype=f32, device=device)
    y = torch.empty(n_assign, hidden, dtype=f32, device=device)
    xs_v, h1_v, act_v, y_v = _view(xs), _view(h1), _view(act), _view(y)

    threads = 128

    def grid(rows: int, cols: int) -> int:  # one thread per element of a (rows, cols) array
        return (rows * cols + threads - 1) // threads

    _gather_rows_kernel[grid(n_assign, hidden), threads, stream](xf, order, k, xs_v)
    for e in range(n_experts):
        lo, hi = offsets[e], offsets[e + 1]
        if hi > lo:
            _launch_linear(xs_v[lo:hi], w1[e], s1[e], b1[e], h1_v[lo:hi], stream)
    _swiglu_kernel[grid(n_assign, inter), threads, stream](
        h1_v, float32(experts.swiglu_limit), float32(experts.swiglu_alpha), act_v
    )
    for e in range(n_experts):
        lo, hi = offsets[e], offsets[e + 1]
        if hi > lo:
            _launch_linear(act_v[lo:hi], w2[e], s2[e], b2[e], y_v[lo:hi], stream)
    _combine_kernel[grid(n_tokens, hidden), threads, stream](y_v, weights, inverse, _view(out))
    return out.to(device=x.device, dtype=x.dtype)
