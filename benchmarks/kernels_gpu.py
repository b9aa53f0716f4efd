"""GPU kernels benchmark (chapter 10): MXFP4 matmul and routing at gpt-oss-20b shapes.

    .venv/bin/python benchmarks/kernels_gpu.py

Needs a CUDA GPU (exits with a message otherwise). For each back end that can run here
("cuda": the C++ extension, "numba_cuda": the numba kernels) it times, with CUDA events, the
median of 20 runs after 5 warm-up runs:
  * mxfp4_linear for mlp1 (N=5760) and mlp2 (N=2880), K=2880, T in 1, 8, 64, 512, against
    torch's bf16 matmul on weights dequantized beforehand (what a bf16 checkpoint would run);
  * route for T=4096 tokens, E=128 experts, k=4.
Effective bandwidth = bytes that must move (MXFP4 blocks + scales, x, out) / time, compared
with the device's measured copy bandwidth (a 1 GiB device-to-device copy). Writes the Markdown
table to benchmarks/results/kernels_gpu.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATE = datetime.date.today().isoformat()  # the day it ran
K = 2880
SHAPES = {"mlp1": 5760, "mlp2": 2880}
TOKENS = [1, 8, 64, 512]
WARMUP, ITERS = 5, 20


def cuda_time_ms(fn, *args) -> float:
    """Median milliseconds of fn(*args) on the current stream, timed with CUDA events."""
    for _ in range(WARMUP):
        fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(ITERS):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy: reads nbytes and writes nbytes."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = cuda_time_ms(dst.copy_, src)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def gpu_backends() -> dict:
    backends = {}
    from gptoss_edu.kernels import cuda as cuda_backend

    ok, reason = cuda_backend.is_available()
    if ok:
        cuda_backend.build()
        backends["cuda"] = cuda_backend
    else:
        print(f"skipping the cuda back end: {reason}")
    from gptoss_edu.kernels import numba_cuda

    ok, reason = numba_cuda.is_available()
    if ok:
        backends["numba_cuda"] = numba_cuda
    else:
        print(f"skipping the numba_cuda back end: {reason}")
    return backends


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("benchmarks/kernels_gpu.py needs a CUDA GPU; torch.cuda.is_available() is False")
    from gptoss_edu.mxfp4 import dequantize

    backends = gpu_backends()
    gen = torch.Generator().manual_seed(0)
    bw = copy_bandwidth_gbs()
    rows = []
    for layer, N in SHAPES.items():
        blocks = torch.randint(0, 256, (N, K // 32, 16), dtype=torch.uint8, generator=gen).cuda()
        scales = torch.randint(118, 125, (N, K // 32), dtype=torch.uint8, generator=gen).cuda()
        bias = torch.randn(N, generator=gen).cuda()
        w_bf16 = dequantize(blocks, scales, torch.bfloat16)  # (N, K), decoded once, beforehand
        for T in TOKENS:
            x = torch.randn(T, K, generator=gen).cuda()
            x_bf16 = x.bfloat16()
            torch_ms = cuda_time_ms(torch.nn.functional.linear, x_bf16, w_bf16, bias.bfloat16())
            for name, backend in backends.items():
                for dtype, xin in (("f32", x), ("bf16", x_bf16)):
                    ms = cuda_time_ms(backend.mxfp4_linear, xin, blocks, scales, bias)
                    moved = (
                        blocks.numel() + scales.numel() + xin.nbytes + T * N * xin.element_size()
                    )
                    gbs = moved / (ms * 1e-3) / 1e9
                    rows.append(
                        f"| mxfp4_linear {layer} | {T} | {name} ({dtype} x) | {ms:.4f} | "
                        f"{torch_ms:.4f} | {torch_ms / ms:.2f} | {gbs:.0f} | {100 * gbs / bw:.0f}% |"
                    )
    logits = torch.randn(4096, 128, generator=gen).cuda()
    for name, backend in backends.items():
        ms = cuda_time_ms(backend.route, logits, 4)
        torch_ms = cuda_time_ms(torch.topk, logits, 4)
        rows.append(
            f"| route T=4096 E=128 k=4 | 4096 | {name} | {ms:.4f} | {torch_ms:.4f} (torch.topk only) "
            f"| {torch_ms / ms:.2f} | - | - |"
        )

    props = torch.cuda.get_device_properties(0)
    lines = [
        "# GPU kernels: MXFP4 matmul and routing (gpt-oss-20b shapes)",
        "",
        f"- date: {DATE}",
        "- command: `.venv/bin/python benchmarks/kernels_gpu.py`",
        f"- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
        f"torch {torch.__version__}",
        f"- host: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        f"- measured device copy bandwidth: {bw:.0f} GB/s (1 GiB device-to-device copy)",
        f"- median of {ITERS} runs after {WARMUP} warm-up runs, CUDA events; K = {K}",
        "- torch column: bf16 F.linear on weights dequantized beforehand (route: torch.topk);",
        "  speedup = torch ms / kernel ms; GB/s = (blocks + scales + x + out bytes) / time",
        "",
        "| op | T | back end | ms | torch ms | speedup | GB/s | % of copy bw |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "kernels_gpu.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
