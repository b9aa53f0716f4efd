"""Benchmark the CPU kernels on gpt-oss-20b shapes (chapters 9-10).

    .venv/bin/python benchmarks/kernels.py            # full run, a few minutes
    .venv/bin/python benchmarks/kernels.py --quick    # fewer token counts, a shorter run

Side by side in one process (ratios are only meaningful that way):
  - this machine's ceilings: copy bandwidth (a 512 MiB copy, bytes read + written) and float32
    compute (a 2048^3 torch matmul), the two lines of chapter 10's roofline;
  - MXFP4 GEMV (T = 1) on mlp1 (N=5760, K=2880) and mlp2 (N=2880, K=2880), weights coming from
    memory: each call takes the next of a pool of distinct matrices totalling >= 4x the L3
    cache (one 8.8 MB matrix called again and again would sit in the 32 MiB L3 and flatter
    the figure). Versions: torch dequantize-then-matmul (reference.py), the first numba fused
    kernel (a table look-up per weight, kept here as `old_fused_linear`), the current numba
    kernel (v2, portable), the vpermps kernel of numba_simd (v3, AVX-512 and AVX2 where the
    CPU has them), a C reference (gcc -O3 -mavx2 -mfma, OpenMP; the practical ceiling), and BLAS float32
    GEMV (torch.mv on a float32 matrix: 7.5x the bytes, the best a float32 model can do);
  - MXFP4 linear for T > 1: the few-tokens kernel vs decode + BLAS GEMM, to place the crossover
    (numba_cpu.BLAS_MIN_TOKENS);
  - routing, T in 64, 512, 4096 x E in 32, 128 (k = 4): numba vs the strongest torch formulation
    (topk + argsort(stable=True) + bincount) vs reference.py's one-hot cumsum;
  - the MoE layer (E=32, k=4, H=I=2880): numba moe_forward now vs with the old kernel vs the
    grouped torch reference, at T = 1 and 16 (a short prompt's prefill: ~2 tokens per expert).
Times are medians of repeated runs after a warm-up call (JIT compilation excluded).
Writes benchmarks/results/kernels.md and kernels.json (the roofline points chapter 10 plots).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gptoss_edu.kernels import MoEWeights, numba_cpu, numba_simd, reference  # noqa: E402
from gptoss_edu.mxfp4 import FP4_VALUES, dequantize, scale_table  # noqa: E402

E, K_TOP, H, I = 32, 4, 2880, 2880  # gpt-oss-20b: experts, experts per token, hidden, intermediate
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "kernels.md"
C_SOURCE = HERE / "c" / "mxfp4_gemv_ref.c"


# ----------------------------------------------------------------------------- timing helpers


def timeit(fn, args: tuple, min_reps: int = 3, min_seconds: float = 1.0, max_reps: int = 50):
    """Median seconds of `fn(*args)` over at least min_reps runs (and about min_seconds), after
    one warm-up call."""
    fn(*args)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (
        time.perf_counter() - start < min_seconds and len(times) < max_reps
    ):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_pool(fn, pool: list[tuple], rounds: int = 5) -> float:
    """Median over `rounds` of the mean seconds per call when calling fn once on each argument
    tuple of the pool in turn (distinct weights: each call reads its matrix from memory)."""
    fn(*pool[0])
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for args in pool:
            fn(*args)
        per_call.append((time.perf_counter() - t0) / len(pool))
    return statistics.median(per_call)


def l3_bytes() -> int:
    """The last-level cache size from sysfs (32 MiB if it cannot be read)."""
    best = 0
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        mult = {"K": 2**10, "M": 2**20}.get(text[-1], 1)
        best = max(best, int(text.rstrip("KM")) * mult)
    return best or 32 * 2**20


def copy_bandwidth() -> float:
    """GB/s of a 512 MiB tensor copy, counting bytes read + bytes written."""
    src = torch.ones(128 * 2**20, dtype=torch.float32)  # 512 MiB
    dst = torch.empty_like(src)
    sec = timeit(dst.copy_, (src,), min_reps=5, min_seconds=0.5)
    return 2 * src.nbytes / sec / 1e9


def matmul_flops() -> float:
    """float32 FLOP/s of a 2048 x 2048 x 2048 torch matmul (BLAS, all torch threads)."""
    a = torch.randn(2048, 2048)
    return 2 * 2048**3 / timeit(torch.mm, (a, a), min_reps=3, min_seconds=0.5)


def random_weight(g, *shape_nk):
    """Random MXFP4 weight: uniform random codes, scales 120..123 (|w| up to ~6 * 2^-4)."""
    *lead, n, k = shape_nk
    blocks = torch.randint(0, 256, (*lead, n, k // 32, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(120, 124, (*lead, n, k // 32), dtype=torch.uint8, generator=g)
    return blocks, scales


def fmt_ms(sec: float) -> str:
    return f"{sec * 1e3:.2f}" if sec < 1 else f"{sec * 1e3:.0f}"


# ----------------------------------------------------------------------------- the old kernel
# The first fused kernel of numba_cpu.py (before the SIMD decode), kept here to be timed side by
# side: it decodes a tile of 16 rows with a 16-entry table look-up per weight (the table already
# multiplied by the block's scale), then multiplies the tile with every token.

_LUT = np.array(FP4_VALUES, dtype=np.float32)
_SCALE_VALUES = scale_table(torch.float32).numpy()
_OLD_TILE_ROWS = 16


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _old_linear_kernel(x, blocks, scales, bias, lut, scale_values, tile_rows, out):
    T, K = x.shape
    N, G, _ = blocks.shape
    n_tiles = (N + tile_rows - 1) // tile_rows
    for tile in prange(n_tiles):
        n0 = tile * tile_rows
        R = min(tile_rows, N - n0)
        w = np.zeros((tile_rows, K), dtype=np.float32)
        lut_s = np.empty(16, dtype=np.float32)
        for r in range(R):
            for g in range(G):
                s = scale_values[scales[n0 + r, g]]
                for c in range(16):
                    lut_s[c] = lut[c] * s
                for j in range(16):
                    byte = blocks[n0 + r, g, j]
                    w[r, 32 * g + 2 * j] = lut_s[byte & 15]
                    w[r, 32 * g + 2 * j + 1] = lut_s[byte >> 4]
        for t in range(0, T, 2):
            t2 = min(t + 1, T - 1)
            for r in range(0, tile_rows, 4):
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
                for i in range(K):
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


def old_linear_np(x, blocks, scales, bias, out=None, path=None) -> np.ndarray:
    """Same signature as numba_cpu._linear_np, running the old kernel."""
    if out is None:
        out = np.empty((x.shape[0], blocks.shape[0]), np.float32)
    _old_linear_kernel(x, blocks, scales, bias, _LUT, _SCALE_VALUES, _OLD_TILE_ROWS, out)
    return out


# ----------------------------------------------------------------------------- C reference


def load_c_reference():
    """Compile benchmarks/c/mxfp4_gemv_ref.c with gcc -O3 -mavx2 -mfma -fopenmp; None if no gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "gcc not found"
    lib = Path(tempfile.mkdtemp()) / "mxfp4_gemv_ref.so"
    cmd = [gcc, "-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", "-o", str(lib)]
    done = subprocess.run([*cmd, str(C_SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"gcc failed: {done.stderr.strip()[:200]}"
    so = ctypes.CDLL(str(lib))
    fp = ctypes.c_void_p
    so.mxfp4_gemv.argtypes = [fp, fp, fp, fp, fp, fp, ctypes.c_long, ctypes.c_long]
    half_scales = (scale_table(torch.float64) / 2).float().numpy()

    def gemv(x, blocks, scales, bias, out):
        # x (K,) f32, blocks (N, G, 16) u8, scales (N, G) u8, bias (N,) f32 -> out (N,) f32
        so.mxfp4_gemv(
            x.ctypes.data, blocks.ctypes.data, scales.ctypes.data, half_scales.ctypes.data,
            bias.ctypes.data, out.ctypes.data, blocks.shape[0], x.shape[0],
        )  # fmt: skip

    return gemv, " ".join(cmd[1:])


# ----------------------------------------------------------------------------- sections


def bench_gemv(g, bw: float, flops: float, results: dict) -> list[str]:
    """T = 1, weights from memory (a pool of distinct matrices >= 4x L3)."""
    c_gemv, c_how = load_c_reference()
    l3 = l3_bytes()
    rows = [
        f"Pool of distinct matrices per shape: >= 4 x L3 = {4 * l3 / 2**20:.0f} MiB of packed "
        f"weights, called in turn. C reference: {c_how}.",
        "",
        "| layer | version | ms | weights GB/s | of copy BW | GFLOP/s | speed-up vs torch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    points = []
    for name, n, k in (("mlp1", 2 * I, H), ("mlp2", H, I)):
        w_bytes = n * (k // 32) * 17
        n_pool = math.ceil(4 * l3 / w_bytes)
        pool = [random_weight(g, n, k) for _ in range(n_pool)]
        pool_np = [(b.numpy(), s.numpy()) for b, s in pool]
        x = torch.randn(1, k, generator=g)
        xn = x.numpy()
        bias = torch.zeros(n)
        bn = bias.numpy()
        out = np.empty((1, n), np.float32)
        # agreement with float64 on the first matrix, for the record
        W64 = dequantize(*pool[0], torch.float64)
        y64 = (x.double() @ W64.T)[0]
        rel = {}
        for path in ("gemv", "simd") if numba_cpu.SIMD else ("gemv",):
            y = torch.from_numpy(numba_cpu._linear_np(xn, *pool_np[0], bn, path=path))[0]
            rel[path] = ((y.double() - y64).abs().max() / y64.abs().max()).item()
        del W64
        versions = {
            "torch dequantize + matmul": (
                lambda b, s, x=x, bias=bias: reference.mxfp4_linear(x, b, s, bias),
                [(b, s) for b, s in pool[:4]],  # slow: 4 matrices are enough
            ),
            "numba v1: table look-up per weight (old)": (
                lambda b, s, xn=xn, bn=bn, out=out: old_linear_np(xn, b, s, bn, out),
                pool_np,
            ),
            "numba v2: SIMD integer decode (portable)": (
                lambda b, s, xn=xn, bn=bn, out=out: numba_cpu._linear_np(
                    xn, b, s, bn, out, path="gemv"
                ),
                pool_np,
            ),
        }
        for isa in simd_isas():  # numba_simd: the decode as one vpermps per 16 (8) codes
            now = " (now)" if isa == numba_simd.ISA else ""
            versions[f"numba v3: vpermps table decode, {isa}{now}"] = (
                lambda b, s, xn=xn, bn=bn, out=out, isa=isa: numba_simd.linear(
                    numba_simd.split_aligned(xn), b, s, numba_cpu._HALF_SCALES, bn, out, isa
                ),
                pool_np,
            )
        if c_gemv is not None:
            versions["C reference, AVX2 pshufb decode"] = (
                lambda b, s, xn=xn, bn=bn, out=out: c_gemv(xn[0], b, s, bn, out[0]),
                pool_np,
            )
        n_dense = math.ceil(4 * l3 / (n * k * 4))
        dense = [torch.randn(n, k, generator=g) for _ in range(n_dense)]
        versions["BLAS float32 GEMV (torch.mv)"] = (
            lambda w, x=x: torch.mv(w, x[0]),
            [(w,) for w in dense],
        )
        base = None
        for label, (fn, args) in versions.items():
            sec = time_pool(fn, args)
            moved = (n * k * 4 if "float32 GEMV" in label else w_bytes) + 4 * (k + n)
            gbs = moved / sec / 1e9
            gflops = 2 * n * k / sec / 1e9
            base = base or sec
            rows.append(
                f"| {name} | {label} | {fmt_ms(sec)} | {gbs:.2f} | {gbs / bw:.0%} | "
                f"{gflops:.1f} | {base / sec:.1f}x |"
            )
            print(rows[-1], flush=True)
            points.append(
                dict(layer=name, version=label, seconds=sec, bytes=moved, flops=2 * n * k,
                     intensity=2 * n * k / moved, gbs=gbs, of_copy_bw=gbs / bw)
            )  # fmt: skip
        rows.append(
            f"| {name} | (vs float64, max rel err: "
            + ", ".join(f"{'v2' if p == 'gemv' else 'v3'} {e:.1e}" for p, e in rel.items())
            + f"; pool {n_pool} "
            f"matrices) | | | | | |"
        )
        del dense
    results["gemv"] = points
    results["roofline"] = dict(copy_gbs=bw, matmul_gflops=flops / 1e9)
    return rows


def simd_isas() -> list[str]:
    """The numba_simd instruction sets this CPU runs (an AVX-512 CPU runs the AVX2 one too)."""
    return {"avx512": ["avx2", "avx512"], "avx2": ["avx2"]}.get(numba_simd.ISA, [])


def bench_tokens(g, quick: bool, results: dict) -> list[str]:
    """T > 1: T GEMVs vs the few-tokens kernel vs decode + BLAS (and the old kernel), mlp1."""
    n, k = 2 * I, H
    pool = [tuple(a.numpy() for a in random_weight(g, n, k)) for _ in range(4)]
    bias = np.zeros(n, np.float32)
    rows = [
        "| T | old kernel ms | T x gemv ms | few_tokens ms | decode + BLAS ms | simd ms "
        "| chosen path | old / chosen |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    pts = []
    for T in (1, 2, 4, 8, 16, 32, 64) if quick else (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 512):
        x = torch.randn(T, k, generator=g).numpy()
        t_old = time_pool(lambda b, s, x=x: old_linear_np(x, b, s, bias), pool, rounds=3)
        t = {}
        for path in numba_cpu.LINEAR_PATHS:
            if (path == "gemv" and T > 8) or (path == "simd" and not numba_cpu.SIMD):
                continue
            t[path] = time_pool(
                lambda b, s, x=x, path=path: numba_cpu._linear_np(x, b, s, bias, path=path),
                pool,
                rounds=3,
            )
        path = numba_cpu.linear_path(T)
        rows.append(
            f"| {T} | {fmt_ms(t_old)} | {fmt_ms(t['gemv']) if 'gemv' in t else '-'} | "
            f"{fmt_ms(t['few_tokens'])} | {fmt_ms(t['blas'])} | "
            f"{fmt_ms(t['simd']) if 'simd' in t else '-'} | {path} | {t_old / t[path]:.1f}x |"
        )
        print(rows[-1], flush=True)
        pts.append(dict(T=T, old=t_old, path=path, **t))
    results["tokens"] = pts
    rows.append("")
    rows.append(
        f"numba_cpu.GEMV_MAX_TOKENS = {numba_cpu.GEMV_MAX_TOKENS}, BLAS_MIN_TOKENS = "
        f"{numba_cpu.BLAS_MIN_TOKENS}, numba_cpu.SIMD = {numba_cpu.SIMD!r} (the simd kernel, "
        "numba_simd, replaces gemv and few_tokens where it is set): the chosen path by T. Pool "
        "of 4 mlp1 matrices (35 MB) cycled."
    )
    return rows


def torch_route_argsort(logits: torch.Tensor, k: int):
    """The strongest plain-torch routing: topk, softmax, then argsort(stable) + bincount."""
    vals, ids = torch.sort(logits, dim=-1, descending=True, stable=True)
    weights = torch.softmax(vals[:, :k], dim=-1)
    flat = ids[:, :k].reshape(-1)
    order = torch.argsort(flat, stable=True)  # grouped by expert, token order kept
    counts = torch.bincount(flat, minlength=logits.shape[1])
    offsets = torch.zeros(logits.shape[1] + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return weights, ids[:, :k], order, offsets, inverse


def bench_routing(g) -> list[str]:
    rows = [
        "| T | E | numba ms | torch argsort + bincount ms | torch one-hot cumsum (reference) ms "
        "| numba vs argsort |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n_exp in (32, 128):
        for T in (64, 512, 4096):
            logits = torch.randn(T, n_exp, generator=g)
            r = numba_cpu.route(logits, K_TOP)
            got = torch_route_argsort(logits, K_TOP)
            assert torch.equal(got[2], r.order) and torch.equal(got[3], r.offsets)
            t_nb = timeit(numba_cpu.route, (logits, K_TOP), min_seconds=0.3)
            t_as = timeit(torch_route_argsort, (logits, K_TOP), min_seconds=0.3)
            t_oh = timeit(reference.route, (logits, K_TOP), min_seconds=0.3)
            rows.append(
                f"| {T} | {n_exp} | {t_nb * 1e3:.3f} | {t_as * 1e3:.3f} | {t_oh * 1e3:.3f} | "
                f"{t_as / t_nb:.1f}x |"
            )
            print(rows[-1], flush=True)
    return rows


def bench_moe(g, quick: bool, results: dict) -> list[str]:
    b1, s1 = random_weight(g, E, 2 * I, H)
    b2, s2 = random_weight(g, E, H, I)
    experts = MoEWeights(
        b1, s1, torch.randn(E, 2 * I, generator=g) * 0.1,
        b2, s2, torch.randn(E, H, generator=g) * 0.1,
    )  # fmt: skip
    rows = [
        "| T | numba now ms | numba, old kernel ms | torch reference (grouped) ms | "
        "now vs old kernel | now vs torch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    pts = []
    for T in (1, 16):  # one token (decode) and a short prompt (prefill); see the docstring
        x = torch.randn(T, H, generator=g)
        r = reference.route(torch.randn(T, E, generator=g), K_TOP)
        y_nb = numba_cpu.moe_forward(x, r, experts)
        y_ref = reference.moe_forward(x, r, experts)
        rel = ((y_nb - y_ref).abs().max() / y_ref.abs().max()).item()
        t_nb = timeit(numba_cpu.moe_forward, (x, r, experts), min_reps=2, min_seconds=0.5)
        new_linear = numba_cpu._linear_np
        numba_cpu._linear_np = old_linear_np  # the same MoE loop with the old kernel
        try:
            t_old = timeit(numba_cpu.moe_forward, (x, r, experts), min_reps=2, min_seconds=0.5)
        finally:
            numba_cpu._linear_np = new_linear
        t_ref = timeit(reference.moe_forward, (x, r, experts), min_reps=2, min_seconds=0.5)
        rows.append(
            f"| {T} | {fmt_ms(t_nb)} | {fmt_ms(t_old)} | {fmt_ms(t_ref)} | "
            f"{t_old / t_nb:.1f}x | {t_ref / t_nb:.1f}x |"
        )
        print(rows[-1], f"(max rel diff numba vs reference {rel:.1e})", flush=True)
        pts.append(dict(T=T, now=t_nb, old=t_old, torch=t_ref))
    results["moe"] = pts
    rows.append("")
    rows.append(
        "At T = 16 most of the 32 experts (423 MB packed in all) are used (about 28 on average), "
        "so every call reads them "
        "from memory. The torch reference decodes each used expert to float32 on every call."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer token counts (a short run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the Markdown")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="numba and torch threads (default: all cores). On a machine shared with other jobs "
        "use 1: a parallel region waits for its slowest thread, so with 2 threads on 2 busy "
        "cores every time jumps by whole scheduler slices",
    )
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    t_start = time.perf_counter()
    numba_cpu.warmup()  # JIT (or cache load) happens here, not in the timings
    load = os.getloadavg()
    bw = copy_bandwidth()
    flops = matmul_flops()
    command = ".venv/bin/python benchmarks/kernels.py" + (" --quick" if args.quick else "")
    command += f" --threads {args.threads}" if args.threads else ""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "# Kernel benchmarks (CPU): numba vs torch",
        "",
        f"Date: {date}. Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"os.cpu_count() = {os.cpu_count()}, torch threads = {torch.get_num_threads()}, "
        f"numba threads = {numba.get_num_threads()} ({numba.threading_layer()} layer); "
        f"Python {platform.python_version()}, torch {torch.__version__}, numba {numba.__version__}.",
        "",
        f"Ceilings measured in this run: copy bandwidth (512 MiB, read + write) **{bw:.1f} GB/s**; "
        f"float32 matmul (2048^3) **{flops / 1e9:.0f} GFLOP/s**; ridge point "
        f"{flops / (bw * 1e9):.1f} FLOP/byte.",
        "",
        "Copy bandwidth, matmul and kernels all run with the thread counts above. Load average "
        f"at the start: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min) on {os.cpu_count()} cores; "
        "when it exceeds the core count the machine is shared with other jobs and absolute times "
        "are noisy: compare rows of one table.",
        "",
    ]
    print("\n".join(head), flush=True)
    results: dict = dict(date=date, command=command, load=load[0])
    sections = [
        "## MXFP4 GEMV (T = 1), weights from memory",
        "",
        "Weights GB/s = packed weights + scales (+ x, y) / time; float32 GEMV moves 4 bytes a "
        "weight.",
        "",
        *bench_gemv(g, bw, flops, results),
        "",
        "## MXFP4 linear for T tokens (mlp1 5760 x 2880): which kernel, where",
        "",
        *bench_tokens(g, args.quick, results),
        "",
        "## Routing (top-4 + softmax + counting sort)",
        "",
        *bench_routing(g),
        "",
        "## MoE layer (experts only, routing given)",
        "",
        *bench_moe(g, args.quick, results),
        "",
        f"Total benchmark wall time: {time.perf_counter() - t_start:.0f} s.",
    ]
    text = "\n".join(head + sections) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out} and {args.out.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
