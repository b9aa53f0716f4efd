"""The MXFP4 matmul with the decode written as one permute instruction (chapter 10, last step).

`numba_cpu`'s GEMV decodes each 4-bit code with about ten integer instructions (shift a packed
word, mask, negate, convert), because numba writes what LLVM can vectorise from Python, and a
16-entry table look-up is not one of them: LLVM turns `table[code]` into a gather. But x86 has
an instruction that IS a 16-entry table look-up of floats: `vpermps` (AVX-512: 16 lanes, each
picks one of 16 floats of a register by the low 4 bits of its index; AVX2: 8 lanes and 8
floats). The decode of one block of 32 weights is then four instructions:

    codes = zero-extend 16 bytes to 16 int32      (the low nibble sits in bits 0-3)
    even  = vpermps(table, codes)                  (2 x elements 0, 2, 4, ... of the block)
    odd   = vpermps(table, codes >> 4)              (2 x elements 1, 3, 5, ...)
    acc  += (even * x[0::2] + odd * x[1::2]) * half_scale     (FMAs; x split once per call)

where `table` holds 2 x the 16 E2M1 values and `half_scale` = 2^(s - 127) / 2, as in
numba_cpu's GEMV. numba has no such operation, so this module writes it in LLVM IR with
`numba.extending.intrinsic`: a function whose body we generate with llvmlite's IR builder,
inlined into the njit kernel that calls it. Scale byte 255 (NaN) makes the row NaN, as in every
other kernel. The bf16 decode multiplies the table by the block's half scale first, which is
exact (a power of two times a value of at most 2 significant bits) unless it leaves float32's
range, as the decoded weight itself would.

For bf16 activations, on CPUs with AVX512-BF16 (`BF16_DOT`), a third kernel decodes each block
to 16 pairs of bf16 weights and multiplies them by x's own bf16 pairs with `vdpbf16ps`, one
instruction per token per 32 weights (`linear_bf16`).

Numerics: float32 products and sums in a different order from `numba_cpu`'s kernels, so the
results agree with them and with a float64 reference to float32 round-off (vdpbf16ps, like
the bf16 BLAS, treats subnormal inputs as zero; numba_cpu sends it none).

Where it runs: x86-64 CPUs with AVX-512 (`ISA == "avx512"`) or AVX2 + FMA (`"avx2"`; the
table holds the 8 magnitudes, and the sign bit of each code is XOR-ed into the float's sign).
Elsewhere (ARM, an old x86, or numba told to compile for a generic CPU with NUMBA_CPU_NAME)
`ISA` is None and `numba_cpu` runs its portable kernels. The ISA is read from the CPU numba
compiles for, never guessed: an instruction the target lacks would abort the process inside
LLVM instead of raising.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # numba_cpu says why; nothing here runs without numba
    numba = None

__all__ = [
    "BF16_DOT",
    "ISA",
    "decode_bf16",
    "kernels",
    "linear",
    "linear_bf16",
    "split_aligned",
    "target_has_bf16_dot",
    "target_isa",
]

FASTMATH = {"reassoc", "contract"}
# The weights are read this many bytes ahead with a prefetch instruction. The hardware's own
# prefetcher kept up with one token, whose loop runs at memory speed, but not with 3 or 4,
# whose slower loop it let wait on memory at every new line: on gpt-oss-20b's mlp1 (weights
# from memory, one thread, a scratch measurement while writing it) 3 tokens took 1.18 ms without, 0.68 ms with, as when the weights sit
# in cache (0.69 ms); 2048 and 8192 bytes ahead did as well.
PREFETCH_BYTES = 4096


def _target_features() -> set[str]:
    """The features of the CPU numba compiles for: its NUMBA_CPU_FEATURES setting, else none for
    a NUMBA_CPU_NAME other than "host" (do not assume any), else the host's."""
    if numba is None:
        return set()
    from llvmlite import binding

    if numba.config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: kernels run as Python, no intrinsics
        return set()
    name, features = numba.config.CPU_NAME, numba.config.CPU_FEATURES
    if features:  # the user's explicit feature string, e.g. "+avx2,+fma,-avx512f"
        return {f[1:] for f in features.split(",") if f.startswith("+")}
    if name and name != "host":
        return set()
    try:
        return {k for k, v in binding.get_host_cpu_features().items() if v}
    except RuntimeError:  # llvmlite cannot read this host's features: assume none
        return set()


def target_isa() -> str | None:
    """Return "avx512", "avx2" or None: the widest permute this module can use on the CPU that
    numba compiles for."""
    have = _target_features()
    if {"avx512f"} <= have:
        return "avx512"
    if {"avx2", "fma"} <= have:
        return "avx2"
    return None


def target_has_bf16_dot() -> bool:
    """True if that CPU has AVX512-BF16's `vdpbf16ps` (a dot product of bf16 pairs into float32
    lanes): then bf16 activations can be multiplied by the decoded weights without converting."""
    return {"avx512f", "avx512bf16"} <= _target_features()


ISA = target_isa()
BF16_DOT = target_has_bf16_dot()


# ----------------------------------------------------------------------------- IR building

if numba is not None:
    _F32, _I8, _I16, _I32, _I64 = (
        ir.FloatType(),
        ir.IntType(8),
        ir.IntType(16),
        ir.IntType(32),
        ir.IntType(64),
    )


class _Block:
    """IR for decoding MXFP4 blocks of one row with `vpermps`, for an ISA of L float lanes."""

    def __init__(self, builder, isa: str, lut_ptr):
        self.b = builder
        self.isa = isa
        self.L = L = 16 if isa == "avx512" else 8
        self.VF, self.VI = ir.VectorType(_F32, L), ir.VectorType(_I32, L)
        name = "llvm.x86.avx512.permvar.sf.512" if isa == "avx512" else "llvm.x86.avx2.permps"
        fnty = ir.FunctionType(self.VF, [self.VF, self.VI])  # (table, indices) -> table[indices]
        self.perm = cgutils.get_or_insert_function(builder.module, fnty, name)
        fma_ty = ir.FunctionType(self.VF, [self.VF] * 3)
        self.fma_fn = cgutils.get_or_insert_function(builder.module, fma_ty, f"llvm.fma.v{L}f32")
        self.lut = builder.load(builder.bitcast(lut_ptr, self.VF.as_pointer()), align=4)

    def i64(self, v: int):
        return ir.Constant(_I64, v)

    def ivec(self, v: int):
        return ir.Constant(self.VI, [v] * self.L)

    def splat(self, value):
        b, L = self.b, self.L
        v = b.insert_element(ir.Constant(self.VF, ir.Undefined), value, ir.Constant(_I32, 0))
        zeros = ir.Constant(ir.VectorType(_I32, L), [0] * L)
        return b.shuffle_vector(v, ir.Constant(self.VF, ir.Undefined), zeros)

    def load_vec(self, ptr, offset, vt, align):
        """Load a vector of type vt from ptr[offset] (offset in elements of ptr's type)."""
        return self.b.load(self.b.bitcast(self.b.gep(ptr, [offset]), vt.as_pointer()), align=align)

    def prefetch(self, ptr):
        """Ask for the cache line at ptr (a hint: no fault, even past the end of an array)."""
        i8p = _I8.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(self.b.module, fnty, "llvm.prefetch.p0")
        read, keep, data = (ir.Constant(_I32, v) for v in (0, 3, 1))
        self.b.call(fn, [self.b.bitcast(ptr, i8p), read, keep, data])

    def fma(self, a, x, acc):
        return self.b.call(self.fma_fn, [a, x, acc])

    def table(self, half_scale):
        """The block's 16 (AVX2: 8) decoded values: the E2M1 x 2 table times its half scale."""
        return self.b.fmul(self.lut, self.splat(half_scale))

    def decode(self, row_blocks, g, half_scale=None):
        """Block g of a row (16 bytes at row_blocks + 16 g) -> [(even, odd), ...]: 16 / L pairs
        of L-lane float vectors, 2 x elements 2j and 2j+1 of the block for the L bytes j of
        each, times half_scale if given (then exactly the block's weights)."""
        table = self.lut if half_scale is None else self.table(half_scale)
        b, L = self.b, self.L
        pairs = []
        for h in range(16 // L):
            off = b.add(b.mul(g, self.i64(16)), self.i64(h * L))
            codes = b.zext(self.load_vec(row_blocks, off, ir.VectorType(_I8, L), 1), self.VI)
            high = b.lshr(codes, self.ivec(4))
            even, odd = b.call(self.perm, [table, codes]), b.call(self.perm, [table, high])
            if self.isa == "avx2":  # vpermps read bits 0-2 (magnitude); bit 3 is the sign
                sign = self.ivec(-(2**31))
                even = self._xor_sign(even, b.and_(b.shl(codes, self.ivec(28)), sign))
                odd = self._xor_sign(odd, b.and_(b.shl(codes, self.ivec(24)), sign))
            pairs.append((even, odd))
        return pairs

    def _xor_sign(self, v, sign_bits):
        b = self.b
        return b.bitcast(b.xor(b.bitcast(v, self.VI), sign_bits), self.VF)

    def hsum(self, v):
        """The sum of a vector's lanes, as a tree of halvings."""
        b, w = self.b, self.L
        while w > 1:
            w //= 2
            mask = ir.Constant(self.VI, [i + w if i < w else i for i in range(self.L)])
            v = b.fadd(v, b.shuffle_vector(v, v, mask))
        return b.extract_element(v, ir.Constant(_I32, 0))


def _arrays(context, builder, sig, args, n):
    pairs = zip(sig.args[:n], args[:n])
    return [context.make_array(t)(context, builder, value=v) for t, v in pairs]


def _require_c(name, *arrays):
    for a in arrays:
        if not isinstance(a, types.Array) or a.layout != "C":
            raise numba.core.errors.TypingError(f"{name}: needs C-contiguous arrays, got {a}")


def _rows_dot_intrinsic(name: str, TT: int, isa: str, U: int, make_block):
    """An intrinsic: (blocks (N, G, 16) u8, scales (N, G) u8, half_scales (256,) f32, lut f32,
    xs (T, K), t0, n) -> the dots of row n of W with tokens t0 .. t0 + TT - 1 (indices past
    T - 1 read token T - 1), as a tuple of TT float32. The skeleton both dot kernels share: the
    loop over the row's blocks, unrolled onto U accumulators per token so that no chain of
    multiply-adds waits on the one before (an FMA takes 4 cycles; a single chain would cap the
    loop at one block per 4 cycles), and the sum of each token's accumulators at the end.
    make_block(row) returns block(g, u), which emits the IR of block g onto accumulator set u;
    `row` holds what it may use (builder, _Block, the row's pointers, the tokens' rows of x)."""

    @intrinsic
    def rows_dot(typingctx, blocks, scales, half_scales, lut, xs, t0, n):
        _require_c(name, blocks, scales, half_scales, lut, xs)
        sig = types.UniTuple(types.float32, TT)(blocks, scales, half_scales, lut, xs, t0, n)

        def codegen(context, builder, signature, args):
            bl, sc, hs, lt, xa = _arrays(context, builder, signature, args, 5)
            t0, n = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (5, 6))
            k = _Block(builder, isa, lt.data)
            b, c = builder, k.i64
            G = cgutils.unpack_tuple(b, bl.shape)[1]
            T, K = cgutils.unpack_tuple(b, xa.shape)
            last = b.sub(T, c(1))
            xrows = []
            for t in range(TT):
                tt = b.add(t0, c(t))
                tt = b.select(b.icmp_signed(">", tt, last), last, tt)
                xrows.append(b.gep(xa.data, [b.mul(tt, K)]))
            zero = ir.Constant(k.VF, [0.0] * k.L)
            row = SimpleNamespace(
                b=b,
                k=k,
                c=c,
                K=K,
                half_scales=hs.data,
                blocks=b.gep(bl.data, [b.mul(n, b.mul(G, c(16)))]),
                scales=b.gep(sc.data, [b.mul(n, G)]),
                xrows=xrows,
                acc=[[cgutils.alloca_once_value(b, zero) for _ in range(U)] for _ in range(TT)],
            )
            block = make_block(row)
            n_main = b.udiv(G, c(U))
            with cgutils.for_range(b, n_main) as loop:
                for u in range(U):
                    block(b.add(b.mul(loop.index, c(U)), c(u)), u)
            with cgutils.for_range(b, b.sub(G, b.mul(n_main, c(U)))) as loop:  # G % U tail
                block(b.add(b.mul(n_main, c(U)), loop.index), 0)
            dots = []
            for t in range(TT):
                total = b.load(row.acc[t][0])
                for p in row.acc[t][1:]:
                    total = b.fadd(total, b.load(p))
                dots.append(k.hsum(total))
            return context.make_tuple(b, signature.return_type, dots)

        return sig, codegen

    return rows_dot


def _half_scale(row, g, u):
    """IR: block g's half scale, half_scales[scales[g]]; on accumulator set 0 (once per U
    blocks, a cache line per 4 blocks) also a prefetch of the weights PREFETCH_BYTES ahead."""
    b, c = row.b, row.c
    if u == 0:
        row.k.prefetch(b.gep(row.blocks, [b.add(b.mul(g, c(16)), c(PREFETCH_BYTES))]))
    return b.load(b.gep(row.half_scales, [b.zext(b.load(b.gep(row.scales, [g])), _I64)]))


def _make_rows_dot(TT: int, isa: str):
    """_rows_dot_intrinsic for float32 x in split order (x[0::2] | x[1::2]): even weights meet
    the first half of a row of xs, odd ones the second, and the block's half scale multiplies
    each token's 16-lane partial sum once."""
    U = max(1, 4 // TT) if isa == "avx2" else max(2, 4 // TT)  # AVX2 has 16 registers, not 32

    def make_block(row):
        b, k, c = row.b, row.k, row.c
        half_k = b.udiv(row.K, c(2))

        def block(g, u):
            scale = k.splat(_half_scale(row, g, u))
            parts = [None] * TT
            for h, (even, odd) in enumerate(k.decode(row.blocks, g)):
                off = b.add(b.mul(g, c(16)), c(h * k.L))
                for t in range(TT):
                    xe = k.load_vec(row.xrows[t], off, k.VF, 4)
                    xo = k.load_vec(row.xrows[t], b.add(half_k, off), k.VF, 4)
                    p = k.fma(odd, xo, b.fmul(even, xe))
                    parts[t] = p if parts[t] is None else b.fadd(parts[t], p)
            for t in range(TT):  # the block's scale once per partial sum
                a = row.acc[t][u]
                b.store(k.fma(parts[t], scale, b.load(a)), a)

        return block

    return _rows_dot_intrinsic("rows_dot", TT, isa, U, make_block)


def _make_rows_dot_bf16(TT: int):
    """_rows_dot_intrinsic (AVX-512 with AVX512-BF16) for xs (T, K) u16 holding bf16 in x's own
    order. A block's 16 bytes decode to 16 (even, odd) pairs of weights, exactly as bf16 (the
    table times the block's half scale: a power of two times a value of at most 2 significant
    bits); packed as 16 pairs they meet x's 16 pairs (x[2j], x[2j + 1]) in one `vdpbf16ps`,
    which adds both products of each pair to its float32 lane: one instruction per token per
    block of 32 weights. Like the bf16 BLAS, it treats subnormal inputs as zero (numba_cpu sends
    it no weight below 2^-126).

    The instruction's bf16 operands are declared as <16 x i32> (pairs of bf16 bits), the type
    LLVM 14 (numba 0.59) requires; newer LLVMs, whose own type is <32 x bfloat>, upgrade the
    declaration when they read it (both checked: numba 0.59.1 and 0.68.1)."""
    U = max(1, 8 // TT)  # vdpbf16ps has a longer latency than an FMA

    def make_block(row):
        b, k, c = row.b, row.k, row.c
        VB = ir.VectorType(_I32, 16)  # 16 pairs of bf16 bits
        fnty = ir.FunctionType(k.VF, [k.VF, VB, VB])
        dot = cgutils.get_or_insert_function(b.module, fnty, "llvm.x86.avx512bf16.dpbf16ps.512")

        def block(g, u):
            ((even, odd),) = k.decode(row.blocks, g, _half_scale(row, g, u))
            # each float32's high 16 bits are its bf16: even to the low half of the lane (the
            # first element of the pair, little-endian), odd to the high half
            low = b.lshr(b.bitcast(even, k.VI), k.ivec(16))
            high = b.and_(b.bitcast(odd, k.VI), k.ivec(-65536))
            w = b.bitcast(b.or_(low, high), VB)
            for t in range(TT):
                x = k.load_vec(row.xrows[t], b.mul(g, c(32)), VB, 2)
                b.store(b.call(dot, [b.load(row.acc[t][u]), w, x]), row.acc[t][u])

        return block

    return _rows_dot_intrinsic("rows_dot_bf16", TT, "avx512", U, make_block)


def _make_decode_bf16_row(isa: str):
    """An intrinsic: (blocks, scales, half_scales, lut, n, w16 (K,) u16) -> None: row n of W
    decoded in split order to bfloat16 bits. Exact, as numba_cpu's decode: every decoded
    weight has at most 2 significant bits, so its float32's high 16 bits are its bf16."""

    @intrinsic
    def decode_row(typingctx, blocks, scales, half_scales, lut, n, w16):
        _require_c("decode_row", blocks, scales, half_scales, lut, w16)
        sig = types.none(blocks, scales, half_scales, lut, n, w16)

        def codegen(context, builder, signature, args):
            bl, sc, hs, lt = _arrays(context, builder, signature, args, 4)
            wa = context.make_array(signature.args[5])(context, builder, value=args[5])
            n = context.cast(builder, args[4], signature.args[4], types.int64)
            k = _Block(builder, isa, lt.data)
            b, c = builder, k.i64
            G = cgutils.unpack_tuple(b, bl.shape)[1]
            row_blocks = b.gep(bl.data, [b.mul(n, b.mul(G, c(16)))])
            row_scales = b.gep(sc.data, [b.mul(n, G)])
            half_k = b.mul(G, c(16))
            VH = ir.VectorType(_I16, k.L)
            with cgutils.for_range(b, G) as loop:
                g = loop.index
                k.prefetch(b.gep(row_blocks, [b.add(b.mul(g, c(16)), c(PREFETCH_BYTES))]))
                s = b.load(b.gep(hs.data, [b.zext(b.load(b.gep(row_scales, [g])), _I64)]))
                for h, pair in enumerate(k.decode(row_blocks, g, s)):
                    off = b.add(b.mul(g, c(16)), c(h * k.L))
                    for v, base in zip(pair, (off, b.add(half_k, off))):
                        bits = b.trunc(b.lshr(b.bitcast(v, k.VI), k.ivec(16)), VH)
                        ptr = b.bitcast(b.gep(wa.data, [base]), VH.as_pointer())
                        b.store(bits, ptr, align=2)
            return context.get_dummy_value()

        return sig, codegen

    return decode_row


def _lut(isa: str) -> np.ndarray:
    """2 x the E2M1 values by code: all 16 for AVX-512, the 8 magnitudes for AVX2."""
    from gptoss_edu.mxfp4 import FP4_VALUES

    table = (2 * np.asarray(FP4_VALUES, dtype=np.float32)).astype(np.float32)
    return np.ascontiguousarray(table if isa == "avx512" else table[:8])


def _make_kernels(isa: str):
    dot4, dot3, dot2, dot1 = (_make_rows_dot(tt, isa) for tt in (4, 3, 2, 1))
    decode_row = _make_decode_bf16_row(isa)

    def linear_kernel(xs, blocks, scales, half_scales, lut, bias, out):
        # xs (T, K) f32 split order; blocks (N, G, 16) u8; scales (N, G) u8; bias (N,) f32
        # -> out (T, N) f32. Tokens in passes of 4, then the last 1-3; each pass decodes the row.
        T = xs.shape[0]
        for n in prange(blocks.shape[0]):
            t0 = 0
            while T - t0 >= 4:
                d0, d1, d2, d3 = dot4(blocks, scales, half_scales, lut, xs, t0, n)
                out[t0, n] = d0 + bias[n]
                out[t0 + 1, n] = d1 + bias[n]
                out[t0 + 2, n] = d2 + bias[n]
                out[t0 + 3, n] = d3 + bias[n]
                t0 += 4
            if T - t0 == 3:
                d0, d1, d2 = dot3(blocks, scales, half_scales, lut, xs, t0, n)
                out[t0, n] = d0 + bias[n]
                out[t0 + 1, n] = d1 + bias[n]
                out[t0 + 2, n] = d2 + bias[n]
            if T - t0 == 2:
                d0, d1 = dot2(blocks, scales, half_scales, lut, xs, t0, n)
                out[t0, n] = d0 + bias[n]
                out[t0 + 1, n] = d1 + bias[n]
            if T - t0 == 1:
                (d0,) = dot1(blocks, scales, half_scales, lut, xs, t0, n)
                out[t0, n] = d0 + bias[n]

    def decode_bf16_kernel(blocks, scales, half_scales, lut, n0, w16):
        for r in prange(w16.shape[0]):
            decode_row(blocks, scales, half_scales, lut, n0 + r, w16[r])

    # Not cached on disk (about a second to compile per process): numba's cache keys a closure
    # by its captured values, and these (the intrinsics) differ in every process, so each run
    # would miss and write one more cache file.
    jit = njit(parallel=True, cache=False, fastmath=FASTMATH)
    return jit(linear_kernel), jit(decode_bf16_kernel)


def _make_bf16_dot_kernel():
    dot8, dot4, dot3, dot2, dot1 = (_make_rows_dot_bf16(tt) for tt in (8, 4, 3, 2, 1))

    def linear_bf16_kernel(xs, blocks, scales, half_scales, lut, out):
        # xs (T, K) u16: bf16 x in its own order; -> out (T, N) f32, no bias. Tokens in passes
        # of 8, then 4, then the last 1-3; each pass decodes the row.
        T = xs.shape[0]
        for n in prange(blocks.shape[0]):
            t0 = 0
            while T - t0 >= 8:
                d = dot8(blocks, scales, half_scales, lut, xs, t0, n)
                for i in range(8):
                    out[t0 + i, n] = d[i]
                t0 += 8
            if T - t0 >= 4:
                d4 = dot4(blocks, scales, half_scales, lut, xs, t0, n)
                for i in range(4):
                    out[t0 + i, n] = d4[i]
                t0 += 4
            if T - t0 == 3:
                d3 = dot3(blocks, scales, half_scales, lut, xs, t0, n)
                for i in range(3):
                    out[t0 + i, n] = d3[i]
            if T - t0 == 2:
                d2 = dot2(blocks, scales, half_scales, lut, xs, t0, n)
                out[t0, n] = d2[0]
                out[t0 + 1, n] = d2[1]
            if T - t0 == 1:
                (d0,) = dot1(blocks, scales, half_scales, lut, xs, t0, n)
                out[t0, n] = d0

    return njit(parallel=True, cache=False, fastmath=FASTMATH)(linear_bf16_kernel)


_KERNELS: dict = {}


def kernels(isa: str):
    """(linear_kernel, decode_bf16_kernel, lut) for an ISA, built on first use."""
    if isa not in ("avx512", "avx2"):
        raise ValueError(f"numba_simd: isa = {isa!r}; expected 'avx512' or 'avx2'")
    if numba is None:
        raise RuntimeError("numba_simd: numba is not installed")
    if isa not in _KERNELS:
        _KERNELS[isa] = (*_make_kernels(isa), _lut(isa))
    return _KERNELS[isa]


def linear_bf16(x_bits: np.ndarray, blocks, scales, half_scales, out) -> None:
    """out (T, N) float32 = x @ W.T for bf16 x given as its uint16 bits (T, K), in x's own
    order, with `vdpbf16ps` (needs BF16_DOT). No bias: the model's experts add theirs."""
    if not BF16_DOT:
        raise RuntimeError("numba_simd.linear_bf16: the CPU numba targets has no AVX512-BF16")
    xs = _aligned_rows(x_bits)
    blocks, scales = np.ascontiguousarray(blocks), np.ascontiguousarray(scales)
    # 8 tokens a call: their x (46 KB for gpt-oss-20b) stays in L1 while the weights stream by,
    # and the next 8 find the weights in L3. Within one call, more tokens would push x out to
    # L2 at every block: 9 tokens took 1.94 ms on 20b's mlp1 in one call, 1.46 ms in two
    if "bf16" not in _KERNELS:
        _KERNELS["bf16"] = _make_bf16_dot_kernel()
    lut = _lut("avx512")
    for t0 in range(0, xs.shape[0], 8):
        _KERNELS["bf16"](xs[t0 : t0 + 8], blocks, scales, half_scales, lut, out[t0 : t0 + 8])


def _aligned_rows(x: np.ndarray) -> np.ndarray:
    """A copy of x (T, K) whose rows start on 64-byte boundaries (K * itemsize a multiple of 64)."""
    T, K = x.shape
    per = 64 // x.itemsize
    buf = np.empty(T * K + per, dtype=x.dtype)
    start = (-buf.ctypes.data % 64) // x.itemsize
    xs = buf[start : start + T * K].reshape(T, K)
    xs[...] = x
    return xs


def split_aligned(x: np.ndarray) -> np.ndarray:
    """x (T, K) -> float32 (T, K) in split order [x[:, 0::2] | x[:, 1::2]], its rows starting
    on 64-byte boundaries (K is a multiple of 32), so that no 64-byte vector load of x straddles
    two cache lines: misaligned, the single-token dot took 0.48 ms instead of 0.34 ms on
    gpt-oss-20b's mlp1 (AVX-512, one thread; a scratch measurement while writing it)."""
    return _aligned_rows(np.concatenate([x[:, 0::2], x[:, 1::2]], axis=1).astype(np.float32))


def linear(xs, blocks, scales, half_scales, bias, out, isa: str | None = None) -> None:
    """out (T, N) = xs @ W.T + bias, xs (T, K) float32 in split order [x[:, 0::2] | x[:, 1::2]]."""
    kernel, _, lut = kernels(isa or ISA)
    blocks, scales = np.ascontiguousarray(blocks), np.ascontiguousarray(scales)
    kernel(xs, blocks, scales, half_scales, lut, bias, out)


def decode_bf16(blocks, scales, half_scales, n0: int, w16, isa: str | None = None) -> None:
    """Rows n0 .. n0 + R of W, decoded in split order to bf16 bits: w16 (R, K) uint16."""
    _, kernel, lut = kernels(isa or ISA)
    kernel(blocks, scales, half_scales, lut, n0, w16)
