"""CPU kernels in numba: routing, fused MXFP4 decode-and-multiply, and the MoE layer (chapters 9-10).

Same contract as `reference.py` (same functions, same arguments, same results up to float32
round-off; routing ids/order/offsets/inverse bit-for-bit). What changes is how the work is done:

- route: a selection of the top k per token (no full sort), then a counting sort in which each
  thread histograms its own chunk of tokens, so no two threads ever increment the same counter.
- mxfp4_linear: the (N, K) weight is never decoded as a whole for few tokens. One token (decode)
  takes a fused decode-and-multiply kernel that SIMD-decodes 16 bytes of a block at a time with
  integer ops and applies the block's scale once per partial sum (up to GEMV_MAX_TOKENS tokens
  run it once each); a few more tokens share each row decoded once into L1; many tokens
  (prefill) decode a tile of rows to float32 once and hand it to BLAS. bf16 activations (a
  bf16 model) from bf16_blas_min_tokens() tokens on: the tile is decoded to bf16 (exactly) and
  multiplied by a bf16 BLAS GEMM, which accumulates in float32 on the CPU's bf16 dot-product
  instructions, about 3x the float32 GEMM's speed on AVX512-BF16. On an x86 CPU with AVX-512
  or AVX2, numba_simd's kernels replace the GEMV and the few-tokens kernel (the decode as one
  `vpermps` table look-up per 16 codes) and, with AVX512-BF16, serve bf16 activations of up to
  SIMD_BF16_MAX_TOKENS tokens with `vdpbf16ps`, no tile in memory.
  `linear_path(T)` says which; the reasons are written above the kernels.
- moe_forward: the routing's counting sort gives each expert its tokens in one contiguous run,
  so each expert's weights are decoded once per call, whatever the number of tokens.

Numerics: `fastmath={"reassoc", "contract"}` lets LLVM reorder float32 sums into SIMD lanes and
use FMA; results differ from a left-to-right sum by float32 round-off only. We leave out
"nnan"/"ninf", so NaN (scale byte 255) still propagates. Results are deterministic: no atomics,
no sum whose order depends on thread timing.

Threads: one per CPU this process may use (`kernels/cpus.py`: the affinity mask, capped by a
container's CPU quota, which numba alone would not see); `NUMBA_NUM_THREADS` set by the user, or
numba imported before this module, wins. A call with little work (under PARALLEL_MIN_WORK
weights x tokens, every call of the tiny model) runs on one thread: a second thread gains it
little, and every parallel region waits at a barrier for all its threads, so when another
process keeps the cores busy (a second notebook, a training run) each region can wait for a
thread that is not running: two processes calling the tiny model's expert matmul in a loop
on 2 cores took microseconds a call on one thread each, milliseconds on two
(benchmarks/results/contention.md). And torch keeps the thread count it had: numba's OpenMP pool
resets the count torch shares.

The first call compiles each kernel (seconds); `cache=True` stores the machine code next to
this file (in __pycache__) so later processes skip that. Arrays are passed as C-contiguous
float32/uint8/int32/int64 only, to keep the number of compiled signatures small.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from gptoss_edu.kernels.cpus import affinity_cpus, usable_cpus
from gptoss_edu.kernels.reference import (
    MoEWeights,
    Routing,
    check_linear_args,
    check_route_args,
    mix_packed,
)
from gptoss_edu.mxfp4 import FP4_VALUES, scale_table

if "NUMBA_NUM_THREADS" not in os.environ and "numba" not in sys.modules:
    # numba sizes its pool by the affinity mask, which ignores a container's CPU quota (cpus.py);
    # the user's own NUMBA_NUM_THREADS, or a numba they imported first, are left alone
    _cpus = usable_cpus()
    if _cpus < affinity_cpus():
        os.environ["NUMBA_NUM_THREADS"] = str(_cpus)

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


from gptoss_edu.kernels import numba_simd  # noqa: E402 (imports numba: after the thread count)

__all__ = ["is_available", "route", "mxfp4_linear", "moe_forward", "Routing", "MoEWeights"]

FASTMATH = {"reassoc", "contract"}  # SIMD sums and FMA; NaN and inf keep their meaning


# Below this many weights x tokens in one kernel call (about a millisecond on one thread), the
# call runs on one thread. On 2 idle cores a second thread makes a call up to twice as fast
# (gpt-oss-20b's mlp1, 16.6M weights, runs parallel); but a region that waits for a
# descheduled thread costs milliseconds, so below about a millisecond of work the risk
# outweighs the gain (both measured in benchmarks/results/contention.md).
PARALLEL_MIN_WORK = 2**23


@contextmanager
def _threads_for(work: int):
    """Run the kernels inside on one thread when `work` < PARALLEL_MIN_WORK (module docstring),
    and leave torch's thread count as it was: numba's OpenMP pool, started by the first
    parallel call, resets the OpenMP thread count that torch shares (a `torch.set_num_threads(1)`
    became 2, and torch's own small ops then fought numba's threads for the cores)."""
    torch_threads = torch.get_num_threads()
    n = numba.get_num_threads() if numba is not None else 1
    serial = work < PARALLEL_MIN_WORK and n > 1
    if serial:
        numba.set_num_threads(1)  # this thread's setting only; other threads' calls are unaffected
    try:
        yield
    finally:
        if serial:
            numba.set_num_threads(n)
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


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
    with _threads_for(T * E):
        n_chunks = max(1, min(numba.get_num_threads(), T))
        _route_kernel(logits, k, n_chunks, weights, experts, order, offsets, inverse)
    return Routing(*(torch.from_numpy(a) for a in (weights, experts, order, offsets, inverse)))


# ----------------------------------------------------------------------------- MXFP4 linear
#
# Three kernels, chosen by the number of tokens T (see `_linear_np`):
#
#   T <= GEMV_MAX_TOKENS
#                    _gemv_kernel, once per token: decode-and-multiply in one pass, SIMD over the
#                    16 bytes of a block (the second token finds the matrix in the cache)
#   GEMV_MAX_TOKENS < T < BLAS_MIN_TOKENS
#                    _few_tokens_kernel: each row decoded once (into L1), then used by every token
#   T >= BLAS_MIN_TOKENS
#                    _decode_kernel + a BLAS GEMM (torch.mm): decode a tile of rows to float32
#                    once, then let the BLAS library do the T x N x K multiply-adds
#   x in bf16, no bias, T >= bf16_blas_min_tokens()
#                    _decode_bf16_kernel + a bf16 BLAS GEMM: the same in bf16 (the model's
#                    experts in a bf16 model: prefill)
#
# On an x86 CPU with AVX-512 or AVX2 (`SIMD`, from numba_simd.ISA), numba_simd's kernel, whose
# decode is one `vpermps` table look-up per 16 (AVX2: 8) codes, replaces the GEMV and the
# few-tokens kernel below BLAS_MIN_TOKENS ("simd", each row decoded once per 4 tokens), and
# its bf16 decode replaces _decode_bf16_kernel; elsewhere the portable kernels run.
#
# What made the T = 1 kernel 7x faster than a table look-up per weight (chapter 10):
# 1. x is split once per call into its even and odd elements, xe = x[0::2], xo = x[1::2], so the
#    low nibbles of a block's 16 bytes meet 16 contiguous xe values and the high nibbles 16
#    contiguous xo values: no interleaving in the inner loop.
# 2. The 4-bit code is decoded with integer ops only (shift, and, xor, subtract, convert), which
#    LLVM turns into SIMD instructions; a table look-up per weight is a scalar load per weight.
#    The trick: 2 * E2M1 value is an integer 0, 1, 2, 3, 4, 6, 8, 12, and those eight 4-bit
#    integers fit in one 32-bit word (`_E2M1_X2_WORD`): magnitude = (word >> 4 * (code & 7)) & 15.
# 3. Each block's scale multiplies its 16-lane partial sum once (scale / 2 makes up for the 2x),
#    not each of its 32 weights.
# 4. Integer intermediates are cast back to int32 after every step: numba widens int32
#    arithmetic to int64, which would halve the SIMD width; the casts let LLVM keep 32-bit lanes.

# Nibble i (i = 0..7) of this word is 2 * |E2M1 value of code i|, built from mxfp4.FP4_VALUES.
_E2M1_X2 = [int(2 * abs(v)) for v in FP4_VALUES[:8]]  # [0, 1, 2, 3, 4, 6, 8, 12]
assert all(FP4_VALUES[i + 8] == -FP4_VALUES[i] for i in range(8)), "E2M1: bit 3 is the sign"
assert all(2 * abs(v) == m < 16 for v, m in zip(FP4_VALUES[:8], _E2M1_X2))
_word = sum(m << (4 * i) for i, m in enumerate(_E2M1_X2))  # 0xC8643210
_E2M1_X2_WORD = np.int32(_word - (1 << 32) if _word >= 1 << 31 else _word)  # as a signed int32
# Scale byte s -> 2^(s - 127) / 2: the 1/2 undoes the factor 2 of the decoded integers. Exact
# (a power of two; 2^-128 is a float32 subnormal), and s = 255 stays NaN.
_HALF_SCALES = (scale_table(torch.float64) / 2).to(torch.float32).numpy()  # (256,)

# The two crossovers, measured by benchmarks/kernels.py ("MXFP4 linear for T tokens" table):
GEMV_MAX_TOKENS = 3  # up to this many tokens, T calls of the GEMV beat the few-tokens kernel
BLAS_MIN_TOKENS = 12  # from this many tokens on, decode + BLAS beats the few-tokens kernel
# bf16 activations (a bf16 model), no bias: from this many tokens on, decode to bf16 + a bf16
# BLAS GEMM beats the GEMV and the few-tokens kernel (benchmarks/prefill_20b.py, its kernel
# table, one thread, quiet machine: 20b's mlp1 at T = 4 2.94 ms vs 3.32 few-tokens and 3.75
# GEMV; mlp2 at T = 4 1.46 vs 1.81 few-tokens; at T = 3 a tie, 2.87 vs 2.81 GEMV; at T = 64
# 7.0 vs 26.0 ms float32 BLAS)
BF16_BLAS_MIN_TOKENS = 4
# With SIMD: the simd kernel beats decode + float32 BLAS below BLAS_MIN_TOKENS, and decode +
# bf16 BLAS up to 4 tokens (benchmarks/prefill_20b.py's kernel table, 20b's mlp1, one thread:
# 3.52 against 5.78 ms float32 BLAS at 8 tokens; 0.91 against 1.84 ms bf16 BLAS at 4, 2.83
# against 2.01 at 6; a pass of 4 tokens then one of 1-3 loses from 5 on)
SIMD_BF16_BLAS_MIN_TOKENS = 5
SIMD = numba_simd.ISA  # "avx512", "avx2" or None (portable kernels); tests may set it
# With AVX512-BF16 (numba_simd.BF16_DOT), bf16 activations without a bias up to this many tokens
# take numba_simd's vdpbf16ps kernel ("simd_bf16"): one instruction per token per 32 weights,
# no conversion of x. 20b's mlp1, one thread, weights from memory (benchmarks/prefill_20b.py's
# kernel table): 1.18 ms at 8 tokens against 2.15 for decode + bf16 BLAS, 2.33 against 2.63 at
# 16 (two calls of 8); beyond 16 the BLAS wins (2.77 against 2.68 at 20, measured once by hand)
SIMD_BF16_MAX_TOKENS = 16
SIMD_BF16 = numba_simd.BF16_DOT  # True or False; tests may set it
DECODE_TILE_FLOATS = 2**21  # rows decoded per BLAS call: 2M floats (8 MiB), whatever K is


@njit(inline="always")
def _e2m1_times2(code):
    """A 4-bit code (int32 0..15) -> 2 * its E2M1 value as float32, exactly, in integer ops."""
    mag = np.int32(np.int32(_E2M1_X2_WORD) >> np.int32((code & 7) << 2)) & 15  # 0..12
    neg = np.int32(-(code >> 3))  # 0, or -1 (all bits set) when the sign bit is set
    return np.float32(np.int32((mag ^ neg) - neg))  # (m ^ -1) + 1 = -m: two's complement


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _gemv_kernel(xe, xo, blocks, scales, half_scales, bias, out):
    # One token. xe, xo (K/2,) f32 = x[0::2], x[1::2]; blocks (N, G, 16) u8; scales (N, G) u8;
    # bias (N,) f32 -> out (N,) f32
    N, G, _ = blocks.shape
    for n in prange(N):
        acc = np.zeros(16, dtype=np.float32)  # 16 lanes: one SIMD register on AVX-512
        for g in range(G):
            s = half_scales[scales[n, g]]
            o = 16 * g
            for j in range(16):  # the 16 bytes of block g: SIMD over j
                byte = np.int32(blocks[n, g, j])
                w_even = _e2m1_times2(np.int32(byte & 15))  # element 2j: low nibble
                w_odd = _e2m1_times2(np.int32(byte >> 4))  # element 2j+1: high nibble
                acc[j] += (w_even * xe[o + j] + w_odd * xo[o + j]) * s  # scale once per lane
        out[n] = acc.sum() + bias[n]


@njit(inline="always")
def _decode_row(brow, srow, half_scales, w):
    # One row of W decoded to float32 in "split" order: brow (G, 16) u8, srow (G,) u8 ->
    # w (K,) f32 with w[:K/2] = W[n, 0::2] (low nibbles) and w[K/2:] = W[n, 1::2] (high nibbles).
    # Writing through per-block views (lo, hi) lets LLVM see 16 contiguous stores: SIMD.
    G = brow.shape[0]
    half = 16 * G
    for g in range(G):
        s = half_scales[srow[g]]
        lo = w[16 * g : 16 * g + 16]
        hi = w[half + 16 * g : half + 16 * g + 16]
        block = brow[g]
        for j in range(16):
            byte = np.int32(block[j])
            lo[j] = _e2m1_times2(np.int32(byte & 15)) * s  # exact: 4 bits times a power of 2
            hi[j] = _e2m1_times2(np.int32(byte >> 4)) * s


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _few_tokens_kernel(xs, blocks, scales, half_scales, bias, out):
    # 2 <= T small. xs (T, K) f32 in split order [x[:, 0::2] | x[:, 1::2]]; blocks (N, G, 16) u8;
    # scales (N, G) u8; bias (N,) f32 -> out (T, N) f32. Each row is decoded once into a buffer
    # that stays in L1 (K floats), then dotted with the tokens 4 at a time: each loaded weight
    # feeds 4 multiply-adds.
    T, K = xs.shape
    N = blocks.shape[0]
    for n in prange(N):
        w = np.empty(K, dtype=np.float32)
        _decode_row(blocks[n], scales[n], half_scales, w)
        for t0 in range(0, T, 4):
            t1, t2, t3 = min(t0 + 1, T - 1), min(t0 + 2, T - 1), min(t0 + 3, T - 1)  # tail: repeat
            x0, x1, x2, x3 = xs[t0], xs[t1], xs[t2], xs[t3]
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for i in range(K):
                wi = w[i]
                a0 += wi * x0[i]
                a1 += wi * x1[i]
                a2 += wi * x2[i]
                a3 += wi * x3[i]
            out[t0, n] = a0 + bias[n]
            out[t1, n] = a1 + bias[n]
            out[t2, n] = a2 + bias[n]
            out[t3, n] = a3 + bias[n]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _decode_kernel(blocks, scales, half_scales, n0, w):
    # Rows n0 .. n0 + R of W, decoded to float32 in split order: w (R, K), see _decode_row.
    for r in prange(w.shape[0]):
        _decode_row(blocks[n0 + r], scales[n0 + r], half_scales, w[r])


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _decode_bf16_kernel(blocks, scales, half_scales, n0, w16):
    # Rows n0 .. n0 + R of W decoded in split order to bfloat16 bits: w16 (R, K) uint16.
    # Exact: an E2M1 value times a power of two has at most 2 significant bits, so the low 16
    # bits of its float32 are zero and the high 16 bits ARE its bfloat16 (NaN stays NaN; the
    # smallest value, 2^-128, is a subnormal whose bit sits in the high half too).
    R, K = w16.shape
    n_chunks = min(R, 64)
    per = (R + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        buf = np.empty(K, dtype=np.float32)  # one row, in L1
        bits = buf.view(np.uint32)
        for r in range(c * per, min((c + 1) * per, R)):
            _decode_row(blocks[n0 + r], scales[n0 + r], half_scales, buf)
            row = w16[r]
            for i in range(K):
                row[i] = np.uint16(bits[i] >> 16)


def _linear_blas_bf16(x: Tensor, blocks, scales) -> Tensor:
    """x (T, K) bf16 @ W.T -> (T, N) bf16, W decoded tile by tile to bf16 (exactly) and
    multiplied by torch.mm in bf16: the products of two bf16 numbers are exact in float32, and
    the BLAS accumulates in float32 and rounds once to bf16, as the float32 path's result is
    rounded once to x.dtype. The bf16 GEMM runs on the CPU's bf16 dot-product instructions
    (AVX512-BF16 / AMX) where it has them; those treat subnormal inputs and results as zero:
    mxfp4_linear sends no weight below 2^-126 here (`_bf16_weights_normal`), and a product or
    a result below 2^-126 (1.2e-38) counts as 0."""
    N, G, _ = blocks.shape
    K = 32 * G
    xs = torch.cat([x[:, 0::2], x[:, 1::2]], dim=1)  # (T, K) bf16 in split order
    rows = max(1, min(N, DECODE_TILE_FLOATS // K))
    w = _empty((rows, K), np.uint16)
    out = torch.empty(x.shape[0], N, dtype=torch.bfloat16)
    for n0 in range(0, N, rows):
        R = min(rows, N - n0)
        args = (blocks, scales, _HALF_SCALES, n0, w[:R])
        if not (SIMD and _simd(numba_simd.decode_bf16, *args, SIMD)):
            _decode_bf16_kernel(*args)
        wr = torch.from_numpy(w[:R]).view(torch.bfloat16)  # (R, K)
        out[:, n0 : n0 + R] = torch.mm(xs, wr.T)  # (T, R): bf16 BLAS, float32 accumulation
    return out


def _linear_simd_bf16(x: Tensor, blocks, scales) -> Tensor:
    """x (T, K) bf16 @ W.T -> (T, N) bf16 with numba_simd's vdpbf16ps kernel: float32 sums,
    rounded once to bf16, as the bf16 BLAS path's (and, like it, subnormals count as zero)."""
    bits = x.contiguous().view(torch.int16).numpy().view(np.uint16)  # (T, K), no copy
    out = _empty((x.shape[0], blocks.shape[0]), np.float32)
    if not _simd(numba_simd.linear_bf16, bits, blocks, scales, _HALF_SCALES, out):
        return _linear_blas_bf16(x, blocks, scales)  # SIMD is off now: the portable decode
    return torch.from_numpy(out).to(torch.bfloat16)


def _simd(kernel, *args) -> bool:
    """Run a numba_simd kernel; False if it cannot compile or run on this setup (an older numba
    or LLVM whose intrinsics differ, say): numba_simd is then off for the rest of the process
    (SIMD = None, SIMD_BF16 = False), which is said once, and the caller runs a portable
    kernel. An instruction the CPU lacks is not among these: target_isa() never offers one."""
    global SIMD, SIMD_BF16
    try:
        kernel(*args)
        return True
    except (RuntimeError, numba.core.errors.NumbaError) as err:  # compile or LLVM errors
        import warnings

        SIMD, SIMD_BF16 = None, False
        warnings.warn(
            f"numba_cpu: numba_simd's {kernel.__name__} failed to compile or run here "
            f"({type(err).__name__}: {str(err).strip()[:300]}); the portable kernels run "
            "from now on",
            stacklevel=3,
        )
        return False


_said_subnormal = False


def _bf16_weights_normal(scales: Tensor) -> bool:
    """True if no weight can be subnormal (every scale byte >= 2: |w| >= 0.5 * 2^(2-127) =
    2^-126), so the bf16 GEMM, which flushes subnormal inputs to zero, computes the same sums.
    Otherwise the float32 path runs, and says so once."""
    global _said_subnormal
    if int(scales.min()) >= 2:
        return True
    if not _said_subnormal:
        _said_subnormal = True
        import warnings

        warnings.warn(
            "numba_cpu.mxfp4_linear: scale bytes under 2 (subnormal weights, below 2^-126) "
            "found; the bf16 GEMM would flush them to zero, so these experts run on the slower "
            "float32 path",
            stacklevel=3,
        )
    return False


def _linear_blas(x_split, blocks, scales, bias, out) -> None:
    """out (T, N) = x @ W.T + bias with W decoded tile by tile and multiplied by torch.mm."""
    N, G, _ = blocks.shape
    K = 32 * G
    xs = torch.from_numpy(x_split)  # (T, K) in split order: [x[0::2] | x[1::2]]
    rows = max(1, min(N, DECODE_TILE_FLOATS // K))
    w = _empty((rows, K), np.float32)
    out_t = torch.from_numpy(out)
    for n0 in range(0, N, rows):
        R = min(rows, N - n0)
        wr = w[:R]
        _decode_kernel(blocks, scales, _HALF_SCALES, n0, wr)
        out_t[:, n0 : n0 + R] = torch.mm(xs, torch.from_numpy(wr).T)  # (T, R): BLAS
    out_t += torch.from_numpy(bias)


LINEAR_PATHS = ("gemv", "few_tokens", "blas", "simd")


def bf16_blas_min_tokens() -> int:
    """From this many tokens on, bf16 activations without a bias take decode-to-bf16 + BLAS."""
    return SIMD_BF16_BLAS_MIN_TOKENS if SIMD else BF16_BLAS_MIN_TOKENS


def linear_path(T: int, bf16: bool = False) -> str:
    """Which kernel mxfp4_linear runs for T tokens: "gemv", "few_tokens", "blas", or with
    bf16=True (bf16 x and no bias, as the model's experts call it) "blas_bf16" from
    bf16_blas_min_tokens() tokens on; on a CPU with SIMD, "simd" instead of the first two, and
    with SIMD_BF16, "simd_bf16" for bf16 up to SIMD_BF16_MAX_TOKENS tokens."""
    if bf16 and SIMD_BF16 and T <= SIMD_BF16_MAX_TOKENS:
        return "simd_bf16"
    if bf16 and T >= bf16_blas_min_tokens():
        return "blas_bf16"
    if SIMD and T < BLAS_MIN_TOKENS:
        return "simd"
    return "gemv" if T <= GEMV_MAX_TOKENS else "few_tokens" if T < BLAS_MIN_TOKENS else "blas"


def _linear_np(x, blocks, scales, bias, out=None, path: str | None = None) -> np.ndarray:
    """numpy in, numpy out: x (T, K) f32, blocks (N, G, 16) u8, scales (N, G) u8, bias (N,) f32.

    `path` forces one kernel (the benchmark uses it to measure the crossover); None chooses by T.
    """
    T, K = x.shape
    N = blocks.shape[0]
    if out is None:
        out = _empty((T, N), np.float32)
    path = path or linear_path(T)
    if path == "gemv":
        for t in range(T):
            xe, xo = np.ascontiguousarray(x[t, 0::2]), np.ascontiguousarray(x[t, 1::2])  # (K/2,)
            _gemv_kernel(xe, xo, blocks, scales, _HALF_SCALES, bias, out[t])
    elif path == "few_tokens":
        x_split = np.concatenate([x[:, 0::2], x[:, 1::2]], axis=1)  # (T, K) split order
        _few_tokens_kernel(x_split, blocks, scales, _HALF_SCALES, bias, out)
    elif path == "blas":
        x_split = np.concatenate([x[:, 0::2], x[:, 1::2]], axis=1)  # (T, K) split order
        _linear_blas(x_split, blocks, scales, bias, out)
    elif path == "simd":
        if not SIMD:
            raise ValueError("numba_cpu: path 'simd' needs an AVX-512 or AVX2 CPU (SIMD is None)")
        xs = numba_simd.split_aligned(x)
        if not _simd(numba_simd.linear, xs, blocks, scales, _HALF_SCALES, bias, out, SIMD):
            return _linear_np(x, blocks, scales, bias, out)  # SIMD is off now: portable
    else:
        raise ValueError(f"numba_cpu: path = {path!r}; expected one of {LINEAR_PATHS} or None")
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
    with _threads_for(_work(x.shape[0], N, x.shape[1])):
        return _mxfp4_linear(x, blocks, scales, bias, out)


def _work(T: int, N: int, K: int) -> int:
    """Weights x tokens of one kernel call: the GEMV runs once per token, the others once."""
    return N * K * (1 if linear_path(T) == "gemv" else T)


def _mxfp4_linear(x, blocks, scales, bias, out):
    N = blocks.shape[0]
    bf16_path = linear_path(x.shape[0], bf16=True) if x.dtype == torch.bfloat16 else ""
    if bias is None and bf16_path in ("blas_bf16", "simd_bf16"):
        if _bf16_weights_normal(scales):
            linear = _linear_blas_bf16 if bf16_path == "blas_bf16" else _linear_simd_bf16
            y = linear(x, _as_numpy(blocks, torch.uint8), _as_numpy(scales, torch.uint8))
            if out is not None:
                out.copy_(y)  # exact: every bf16 is a float32
            return y
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


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights) -> Tensor:
    """The MoE experts: the package's one per-expert loop (`MLPBlock.mix`, via
    `reference.mix_packed`) with this back end's MXFP4 matmul, `mxfp4_linear`."""
    return mix_packed(x, routing, experts, mxfp4_linear)


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
