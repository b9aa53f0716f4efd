"""Benchmark the CPU kernels on gpt-oss-20b shapes (chapters 9-10).

    .venv/bin/python benchmarks/kernels.py            # full run, a few minutes
    .venv/bin/python benchmarks/kernels.py --quick    # smaller T for the slow baselines

Side by side in one process (ratios are only meaningful that way):
  - memory bandwidth of this machine: a 512 MB copy
  - MXFP4 linear, mlp1 (N=5760, K=2880) and mlp2 (N=2880, K=2880), T in 1, 8, 64, 512:
    numba fused decode-and-multiply vs torch dequantize-then-matmul (reference.py)
  - routing, T in 64, 512, 4096 x E in 32, 128 (k = 4): numba vs torch
  - the MoE layer (E=32, k=4, H=I=2880): numba moe_forward vs reference moe_forward (grouped)
    vs reference moe_forward_per_token (OpenAI's per-token gather)
Times are medians of repeated runs after a warm-up call (JIT compilation excluded).
Effective bandwidth = bytes that must move (packed weights + scales + x + y) / time.
Writes the Markdown tables to benchmarks/results/kernels.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from gptoss_edu.kernels import MoEWeights, numba_cpu, reference  # noqa: E402
from gptoss_edu.mxfp4 import dequantize  # noqa: E402

E, K_TOP, H, I = 32, 4, 2880, 2880  # gpt-oss-20b: experts, experts per token, hidden, intermediate
PER_TOKEN_T = 64  # tokens actually run through the per-token baseline (see bench_moe)
RESULTS = Path(__file__).resolve().parent / "results" / "kernels.md"


def timeit(
    fn, args: tuple, min_reps: int = 3, min_seconds: float = 1.0, max_reps: int = 50, warm=True
) -> float:
    """Median seconds of `fn(*args)` over at least min_reps runs (and about min_seconds), after one
    warm-up call (warm=False skips it, for slow code with nothing to compile or cache)."""
    if warm:
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


def one_thread(fn, args: tuple, **kw) -> float:
    """timeit with numba limited to one thread: immune to a second core being busy elsewhere
    (a parallel region waits for its slowest thread, so on an oversubscribed machine the
    threaded time can jump by whole scheduler slices)."""
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return timeit(fn, args, **kw)
    finally:
        numba.set_num_threads(n)


def copy_bandwidth() -> float:
    """GB/s of a 512 MB tensor copy, counting bytes read + bytes written."""
    src = torch.ones(128 * 2**20, dtype=torch.float32)  # 512 MiB
    dst = torch.empty_like(src)
    sec = timeit(dst.copy_, (src,), min_reps=5, min_seconds=0.5)
    return 2 * src.nbytes / sec / 1e9


def random_weight(g, *shape_nk):
    """Random MXFP4 weight: uniform random codes, scales 120..123 (|w| up to ~6 * 2^-4)."""
    *lead, n, k = shape_nk
    blocks = torch.randint(0, 256, (*lead, n, k // 32, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(120, 124, (*lead, n, k // 32), dtype=torch.uint8, generator=g)
    return blocks, scales


def fmt_ms(sec: float) -> str:
    return f"{sec * 1e3:.2f}" if sec < 1 else f"{sec * 1e3:.0f}"


def bench_linear(g, bw: float, quick: bool) -> list[str]:
    rows = [
        "| layer | N x K | T | numba ms | torch ms | speed-up | numba GB/s | of copy BW "
        "| numba 1 thread ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, k in (("mlp1", 2 * I, H), ("mlp2", H, I)):
        blocks, scales = random_weight(g, n, k)
        bias = torch.randn(n, generator=g)
        for T in (1, 8, 64) if quick else (1, 8, 64, 512):
            x = torch.randn(T, k, generator=g)
            t_nb = timeit(numba_cpu.mxfp4_linear, (x, blocks, scales, bias))
            t_th = timeit(reference.mxfp4_linear, (x, blocks, scales, bias), min_seconds=0.5)
            t_1 = one_thread(numba_cpu.mxfp4_linear, (x, blocks, scales, bias))
            nbytes = blocks.nbytes + scales.nbytes + x.nbytes + T * n * 4 + bias.nbytes
            gbs = nbytes / t_nb / 1e9
            rows.append(
                f"| {name} | {n} x {k} | {T} | {fmt_ms(t_nb)} | {fmt_ms(t_th)} | "
                f"{t_th / t_nb:.1f}x | {gbs:.2f} | {gbs / bw:.0%} | {fmt_ms(t_1)} |"
            )
            print(rows[-1], flush=True)
    return rows


def bench_routing(g) -> list[str]:
    rows = [
        "| T | E | numba ms | torch ms | speed-up | numba 1 thread ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n_exp in (32, 128):
        for T in (64, 512, 4096):
            logits = torch.randn(T, n_exp, generator=g)
            t_nb = timeit(numba_cpu.route, (logits, K_TOP), min_seconds=0.3)
            t_th = timeit(reference.route, (logits, K_TOP), min_seconds=0.3)
            t_1 = one_thread(numba_cpu.route, (logits, K_TOP), min_seconds=0.3)
            rows.append(
                f"| {T} | {n_exp} | {t_nb * 1e3:.3f} | {t_th * 1e3:.3f} | {t_th / t_nb:.1f}x "
                f"| {t_1 * 1e3:.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def bench_moe(g, quick: bool) -> list[str]:
    b1, s1 = random_weight(g, E, 2 * I, H)
    b2, s2 = random_weight(g, E, H, I)
    experts = MoEWeights(
        b1,
        s1,
        torch.randn(E, 2 * I, generator=g) * 0.1,
        b2,
        s2,
        torch.randn(E, H, generator=g) * 0.1,
    )
    t0 = time.perf_counter()  # OpenAI's reference decodes the experts to bf16 once, at load time
    dense = (dequantize(b1, s1, torch.bfloat16), dequantize(b2, s2, torch.bfloat16))
    t_dense = time.perf_counter() - t0
    rows = [
        "| T | numba moe_forward ms | reference moe_forward ms | reference per-token ms | "
        "numba vs grouped | numba vs per-token |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for T in (1, 64) if quick else (1, 512):
        x = torch.randn(T, H, generator=g)
        r_logits = torch.randn(T, E, generator=g)
        r = reference.route(r_logits, K_TOP)
        y_nb = numba_cpu.moe_forward(x, r, experts)
        y_ref = reference.moe_forward(x, r, experts)
        rel = ((y_nb - y_ref).abs().max() / y_ref.abs().max()).item()
        t_nb = timeit(numba_cpu.moe_forward, (x, r, experts), min_reps=2, min_seconds=0.5)
        t_grp = timeit(reference.moe_forward, (x, r, experts), min_reps=2, min_seconds=0.5)
        # The per-token baseline is slow (~0.3 s a token on a 2-core machine) and exactly linear in T: every
        # token gathers and multiplies its own 4 experts. Time it on the first PER_TOKEN_T tokens
        # and scale up, so the whole benchmark stays within a few minutes.
        n_tok = min(T, PER_TOKEN_T)
        r_tok = reference.route(r_logits[:n_tok], K_TOP)
        args = (x[:n_tok], r_tok, experts, dense)
        t_tok = timeit(reference.moe_forward_per_token, args, 1, 0, warm=False) * (T / n_tok)
        rows.append(
            f"| {T} | {fmt_ms(t_nb)} | {fmt_ms(t_grp)} | {fmt_ms(t_tok)} | "
            f"{t_grp / t_nb:.1f}x | {t_tok / t_nb:.1f}x |"
        )
        print(rows[-1], f"(max rel diff numba vs reference {rel:.1e})", flush=True)
    rows.append("")
    rows.append(
        f"Per-token baseline: bf16 weights decoded once beforehand, as OpenAI's loader does (that "
        f"decode took {t_dense:.1f} s and is not in the times); for T > {PER_TOKEN_T} it ran on the "
        f"first {PER_TOKEN_T} tokens and the time is scaled by T / {PER_TOKEN_T} (its cost is "
        "linear in T: each token gathers its own experts). The grouped reference decodes each "
        "used expert to float32 on every call."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the largest T (a short run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the Markdown")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    t_start = time.perf_counter()
    numba_cpu.warmup()  # JIT (or cache load) happens here, not in the timings
    bw = copy_bandwidth()
    head = [
        "# Kernel benchmarks (CPU): numba vs torch",
        "",
        "Date: 2026-11-23. Command: `.venv/bin/python benchmarks/kernels.py"
        + (" --quick`" if args.quick else "`"),
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"os.cpu_count() = {os.cpu_count()}, torch threads = {torch.get_num_threads()}, "
        f"numba threads = {numba.get_num_threads()} ({numba.threading_layer()} layer); "
        f"Python {platform.python_version()}, torch {torch.__version__}, numba {numba.__version__}.",
        "",
        f"Memory bandwidth (512 MB tensor copy, read + write): **{bw:.1f} GB/s**.",
        "",
        "Note: the machine was shared with other jobs during the run (load average "
        f"{os.getloadavg()[0]:.1f} at the start), so absolute times are noisy; ratios come from "
        "side-by-side runs in this one process.",
        "",
        "Times are medians after a warm-up call (JIT excluded). gpt-oss-20b shapes: E = 32 experts,",
        "k = 4, H = I = 2880; weights are random MXFP4 codes with scales 120..123.",
        "",
    ]
    print("\n".join(head), flush=True)
    sections = [
        "## MXFP4 linear: numba fused decode-and-multiply vs torch dequantize-then-matmul",
        "",
        "GB/s counts packed weights + scales + x + y + bias once each.",
        "",
        *bench_linear(g, bw, args.quick),
        "",
        "## Routing (top-4 + softmax + counting sort)",
        "",
        *bench_routing(g),
        "",
        "## MoE layer (experts only, routing given)",
        "",
        *bench_moe(g, args.quick),
        "",
        f"Total benchmark wall time: {time.perf_counter() - t_start:.0f} s.",
    ]
    text = "\n".join(head + sections) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
