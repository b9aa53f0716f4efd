"""gpt-oss-20b in under 16 GiB: load a 20b-shaped checkpoint with packed MXFP4 experts and run it
(chapter 12).

    .venv/bin/python benchmarks/memory_20b.py            # ~15 minutes, ~14 GB of disk in /tmp

1. writes a synthetic checkpoint with exactly gpt-oss-20b's keys, shapes and dtypes
   (`gptoss_edu.checkpoint.write_synthetic`, 13.8 GB, streamed),
2. in a fresh subprocess (so that the peak resident memory is the loader's own): loads it with
   experts="mxfp4" in bf16, runs a 16-token prompt and decodes 4 tokens with the KV cache,
   and reports peak RSS (the kernel's VmHWM), load time, prefill time, tok/s,
3. in another subprocess, the naive path that dequantizes every expert to bf16 (what tools that
   upcast on load do), under RLIMIT_AS = 16 GiB (the budget) so that it fails cleanly,
4. both paths side by side on a 2-layer slice of the 20b shapes, small enough to run both,
   for a measured ratio,
then deletes the files and writes benchmarks/results/memory_20b.md.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.checkpoint import original_spec, write_synthetic  # noqa: E402

GiB = 2**30
PROMPT, NEW_TOKENS = 16, 4
NAIVE_CAP = 16 * GiB  # the naive child gets the same 16 GiB budget, as an address-space cap


def peak_rss() -> int:
    """This process's peak resident memory in bytes: the kernel's VmHWM (Linux).

    Not getrusage's ru_maxrss: on Linux it is kept across exec, so a child reports the larger
    of its own peak and its parent's."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(path: str, experts: str, cap: int) -> None:
    """Run in a subprocess: load, prefill, decode; print one JSON line."""
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import warnings

    warnings.simplefilter("ignore")
    result = {"experts": experts}
    t0 = time.perf_counter()
    try:
        model = ge.load_checkpoint(path, dtype=torch.bfloat16, experts=experts, progress=False)
    except (RuntimeError, MemoryError) as e:  # torch's allocator says RuntimeError
        result.update(
            ok=False,
            error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}",
            seconds_before_failure=time.perf_counter() - t0,
            peak_rss=peak_rss(),
        )
        print("RESULT " + json.dumps(result), flush=True)
        return
    result["load_s"] = time.perf_counter() - t0
    result["model_bytes"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    cfg = model.config
    prompt = torch.randint(0, cfg.vocab_size, (PROMPT,), generator=torch.Generator().manual_seed(0))
    cache = model.new_cache()
    with torch.no_grad():
        t0 = time.perf_counter()
        logits = model(prompt, cache=cache)  # (T, V)
        result["prefill_s"] = time.perf_counter() - t0
        token = logits[-1].argmax()
        t0 = time.perf_counter()
        for _ in range(NEW_TOKENS):
            logits = model(token[None], cache=cache)
            token = logits[-1].argmax()
        result["decode_tok_s"] = NEW_TOKENS / (time.perf_counter() - t0)
    result["finite"] = bool(torch.isfinite(logits).all())
    result["backend"] = ge.kernels.get_backend("auto", "cpu").__name__.rsplit(".", 1)[-1]
    result["ok"] = True
    result["peak_rss"] = peak_rss()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(path: Path, experts: str, cap: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), experts, str(cap)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if lines:
        out = json.loads(lines[-1][len("RESULT ") :])
    else:  # killed (e.g. by the OOM killer) before it could report
        out = {
            "experts": experts,
            "ok": False,
            "error": f"exit {proc.returncode}: {proc.stderr[-300:]}",
        }
    out["wall_s"] = wall
    print(f"  {experts}: {json.dumps(out)}", flush=True)
    return out


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def main() -> None:
    cfg20 = ge.ModelConfig.gpt_oss_20b()
    counts = ge.count_parameters(cfg20)
    tmp_root = Path(os.environ.get("GPTOSS_BENCH_DIR", tempfile.gettempdir()))
    free = shutil.disk_usage(tmp_root).free
    need = counts.checkpoint_bytes + 4 * 10**9
    if free < need:
        sys.exit(
            f"memory_20b: needs {need / 1e9:.0f} GB free in {tmp_root}; has {free / 1e9:.0f} GB"
        )
    work = Path(tempfile.mkdtemp(prefix="gptoss20b-", dir=tmp_root))
    rows = []
    try:
        print(f"writing a 20b-shaped synthetic checkpoint to {work}", flush=True)
        t0 = time.perf_counter()
        write_synthetic(work / "20b", cfg20, layout="original", seed=0, progress=False)
        write_s = time.perf_counter() - t0
        write_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"  written in {write_s:.0f} s, writer peak RSS {gib(write_rss)}", flush=True)

        packed = run_child(work / "20b", "mxfp4")
        naive = run_child(work / "20b", "dequantized", NAIVE_CAP)
        shutil.rmtree(work / "20b")

        cfg2 = cfg20.replace(num_hidden_layers=2)
        write_synthetic(work / "20b-2layers", cfg2, layout="original", seed=0, progress=False)
        slice_packed = run_child(work / "20b-2layers", "mxfp4")
        slice_naive = run_child(work / "20b-2layers", "dequantized")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(name, r, ckpt_bytes):
        if not r.get("ok"):
            why = "allocation refused" if "allocate" in r.get("error", "") else r.get("error", "?")
            return (
                f"| {name} | {r['experts']} | over the cap: {why} after "
                f"{r.get('seconds_before_failure', 0):.0f} s at {gib(r.get('peak_rss', 0))} | "
                f"needs {gib(ckpt_bytes)} | - | - | - |"
            )
        return (
            f"| {name} | {r['experts']} | {gib(r['peak_rss'])} | {gib(r['model_bytes'])} | "
            f"{r['load_s']:.1f} s | {r['prefill_s']:.1f} s | {r['decode_tok_s']:.2f} |"
        )

    slice_counts = ge.count_parameters(cfg2)
    rows = [
        row("gpt-oss-20b (24 layers)", packed, counts.checkpoint_bytes),
        row("gpt-oss-20b (24 layers)", naive, counts.bf16_bytes),
        row("20b shapes, 2 layers", slice_packed, slice_counts.checkpoint_bytes),
        row("20b shapes, 2 layers", slice_naive, slice_counts.bf16_bytes),
    ]
    ratio = ""
    if slice_packed.get("ok") and slice_naive.get("ok"):
        ratio = (
            f"On the 2-layer slice, both measured in this run: the naive path needs "
            f"{slice_naive['peak_rss'] / slice_packed['peak_rss']:.2f}x the peak memory of the "
            f"packed one ({gib(slice_naive['peak_rss'])} vs {gib(slice_packed['peak_rss'])}); "
            f"prefill {slice_packed['prefill_s']:.1f} s packed vs {slice_naive['prefill_s']:.1f} s "
            f"naive, decode {slice_packed['decode_tok_s']:.2f} vs {slice_naive['decode_tok_s']:.2f} tok/s.\n"
        )
    verdict = (
        f"**Peak resident memory of the packed 20b: {gib(packed['peak_rss'])} "
        f"({'under' if packed['peak_rss'] < 16 * GiB else 'OVER'} 16 GiB).**"
        if packed.get("ok")
        else f"**The packed 20b run failed: {packed.get('error')}**"
    )
    md = f"""# gpt-oss-20b in under 16 GiB: packed MXFP4 experts vs dequantize-on-load

Date: 2026-11-23. Command: `.venv/bin/python benchmarks/memory_20b.py`.
Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores,
torch {torch.__version__} with {torch.get_num_threads()} threads, {gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))} RAM.

A synthetic checkpoint with exactly gpt-oss-20b's {len(original_spec(cfg20))} keys, shapes and dtypes
({counts.checkpoint_bytes:,} bytes of tensors, written by `write_synthetic` in {write_s:.0f} s with a
peak RSS of {gib(write_rss)}) is loaded in a fresh subprocess with `ge.load_checkpoint(path,
dtype=torch.bfloat16, experts=...)`; it then runs a {PROMPT}-token prompt (prefill) and decodes
{NEW_TOKENS} tokens greedily with the KV cache. Peak RSS is the kernel's high-water mark of that
subprocess (`VmHWM` in /proc/self/status), the most it ever had resident at once: Python, torch,
numba, the model and the activations.
"model bytes" is the sum of the model's tensors. Expert kernels: back end
`{packed.get("backend", "?")}` ("auto" on this CPU). The naive child runs under RLIMIT_AS =
{gib(NAIVE_CAP)} so that it fails cleanly instead of pushing the machine into swap.

| model | experts | peak RSS | model bytes | load | prefill ({PROMPT} tok) | decode tok/s |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{verdict}

The naive path needs the dequantized model itself: {counts.total:,} parameters x 2 bytes =
{counts.bf16_bytes / 1e9:.1f} GB ({gib(counts.bf16_bytes)}) before any activation, against
{counts.checkpoint_bytes / 1e9:.1f} GB ({gib(counts.checkpoint_bytes)}) packed: a ratio of
{counts.bf16_bytes / counts.checkpoint_bytes:.2f}. It cannot run on this {gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))} machine.
{ratio}
Timings are on a shared 2-core machine and indicate scale only; the synthetic weights are random,
so the tokens decoded are meaningless (the logits were checked finite: {packed.get("finite")}).
"""
    out = ROOT / "benchmarks" / "results" / "memory_20b.md"
    out.write_text(md)
    print(md)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
