"""gpt-oss-20b in less anonymous memory than its file: load a 20b-shaped checkpoint with packed
MXFP4 experts, memory-mapped, and run it (chapter 12; issue 15 goal 3).

    nice .venv/bin/python benchmarks/memory_20b.py            # ~15-25 minutes, ~14 GB of disk
    nice .venv/bin/python benchmarks/memory_20b.py --eager-20b  # also the copying loader on 20b
                                                                # (needs ~14 GiB of free RAM)

1. writes a synthetic checkpoint with exactly gpt-oss-20b's keys, shapes and dtypes
   (`gptoss_edu.checkpoint.write_synthetic`, 13.8 GB, streamed);
2. in a fresh subprocess (so that the figures are the loader's own): loads it with
   experts="mxfp4" in bf16 (memory-mapped: the model's tensors are views of the file), runs a
   16-token prompt and decodes 4 tokens with the KV cache; reports load time, prefill time,
   tok/s, peak RSS (the kernel's VmHWM) and peak RssAnon (sampled every 5 ms by a thread: the
   kernel keeps no high-water mark for it), and times the NaN/Inf check of the bf16 tensors;
3. side by side on a 2-layer slice of the 20b shapes: the same mapped load, the copying loader
   (mmap=False, the loader before issue 15), and dequantize-on-load;
then deletes the files and writes benchmarks/results/memory_20b.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.checkpoint import original_spec, write_synthetic  # noqa: E402

GiB = 2**30
PROMPT, NEW_TOKENS = 16, 4


def status(field: str) -> int:
    """A field of /proc/self/status in bytes (VmHWM, VmRSS, RssAnon, RssFile)."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


class AnonSampler:
    """Peak RssAnon and VmRSS, sampled every `every` seconds in a thread."""

    def __init__(self, every: float = 0.005):
        self.every, self.peak_anon, self.peak_rss = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.every)

    def sample(self):
        self.peak_anon = max(self.peak_anon, status("RssAnon"))
        self.peak_rss = max(self.peak_rss, status("VmRSS"))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def child(path: str, experts: str, mapped: bool) -> None:
    """Run in a subprocess: load, prefill, decode; print one JSON line."""
    import warnings

    warnings.simplefilter("ignore")
    from gptoss_edu.checkpoint import check_finite

    result = {"experts": experts, "mmap": mapped}
    # compile the JIT kernels first (prefill and decode shapes), on a tiny model of the same
    # kind, so that the timings below are the 20b's and not numba's compiler
    with tempfile.TemporaryDirectory() as d:
        tiny = write_synthetic(Path(d) / "tiny", ge.ModelConfig.tiny(), progress=False)
        warm = ge.load_checkpoint(
            tiny, dtype=torch.bfloat16, experts=experts, progress=False, mmap=mapped
        )
    with torch.no_grad():
        cache = warm.new_cache()
        warm(torch.arange(PROMPT), cache=cache)
        warm(torch.arange(1), cache=cache)
    del warm, cache
    result["anon_before"] = status("RssAnon")
    with AnonSampler() as sampler:
        t0 = time.perf_counter()
        model = ge.load_checkpoint(
            path, dtype=torch.bfloat16, experts=experts, progress=False, mmap=mapped
        )
        result["load_s"] = time.perf_counter() - t0
        result["anon_after_load"] = status("RssAnon")
        result["model_bytes"] = sum(
            t.numel() * t.element_size() for t in model.state_dict().values()
        )
        cfg = model.config
        g = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, cfg.vocab_size, (PROMPT,), generator=g)
        cache = model.new_cache()
        with torch.no_grad():
            t0, c0 = time.perf_counter(), time.process_time()
            logits = model(prompt, cache=cache)  # (T, V)
            result["prefill_s"] = time.perf_counter() - t0
            result["prefill_cpu_s"] = time.process_time() - c0  # both threads' CPU time
            token = logits[-1].argmax()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(NEW_TOKENS):
                logits = model(token[None], cache=cache)
                token = logits[-1].argmax()
            result["decode_tok_s"] = NEW_TOKENS / (time.perf_counter() - t0)
            result["decode_cpu_s"] = time.process_time() - c0
            result["loadavg_1min"] = os.getloadavg()[0]
        result["finite"] = bool(torch.isfinite(logits).all())
        # the NaN/Inf check of load_checkpoint, timed alone on the float tensors (already in
        # the page cache after the load and the forward passes)
        floats = [(k, t) for k, t in model.state_dict().items() if t.is_floating_point()]
        nbytes = sum(t.numel() * t.element_size() for _, t in floats)
        t0 = time.perf_counter()
        for k, t in floats:
            check_finite(t, k, "bench")
        seconds = time.perf_counter() - t0
        result.update(finite_check_bytes=nbytes, finite_check_s=seconds)
    result["peak_rss"] = status("VmHWM")
    result["peak_anon"] = sampler.peak_anon
    result["rss_file_end"] = status("RssFile")
    result["backend"] = ge.kernels.get_backend("auto", "cpu").__name__.rsplit(".", 1)[-1]
    result["ok"] = True
    print("RESULT " + json.dumps(result), flush=True)


def run_child(path: Path, experts: str, mapped: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), experts, "1" if mapped else "0"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if lines:
        out = json.loads(lines[-1][len("RESULT ") :])
    else:  # killed (e.g. by the OOM killer) before it could report
        out = {
            "experts": experts,
            "mmap": mapped,
            "ok": False,
            "error": f"exit {proc.returncode}: {proc.stderr[-300:]}",
        }
    out["wall_s"] = wall
    print(f"  {experts} mmap={mapped}: {json.dumps(out)}", flush=True)
    return out


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "ram": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }


def measure(eager_20b: bool) -> dict:
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
    cfg2 = cfg20.replace(num_hidden_layers=2)
    try:
        print(f"writing a 20b-shaped synthetic checkpoint to {work}", flush=True)
        t0 = time.perf_counter()
        write_synthetic(work / "20b", cfg20, layout="original", seed=0, progress=False)
        write_s = time.perf_counter() - t0
        print(f"  written in {write_s:.0f} s", flush=True)
        full = {"mapped": run_child(work / "20b", "mxfp4", True)}
        if eager_20b:
            full["eager"] = run_child(work / "20b", "mxfp4", False)
        shutil.rmtree(work / "20b")

        write_synthetic(work / "20b-2layers", cfg2, layout="original", seed=0, progress=False)
        part = {
            "mapped": run_child(work / "20b-2layers", "mxfp4", True),
            "eager": run_child(work / "20b-2layers", "mxfp4", False),
            "dequantized": run_child(work / "20b-2layers", "dequantized", False),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "nice": os.nice(0),
        "write_s": write_s,
        "full": full,
        "part": part,
    }


def from_log(path: Path) -> dict:
    """The measurements of a run from its printed log (the lines run_child prints), so that a
    run whose parent rendered with older code can be rendered again without re-measuring."""
    run = {"date": datetime.date.today().isoformat(), "machine": machine(), "full": {}}
    run["rendered_from"] = str(path)
    run["part"] = {}
    full_bytes = ge.count_parameters(ge.ModelConfig.gpt_oss_20b()).checkpoint_bytes
    for line in path.read_text().splitlines():
        if line.strip().startswith("written in"):
            run["write_s"] = float(line.split()[2])
        elif line.startswith("  ") and ": {" in line:
            r = json.loads(line.split(": ", 1)[1])
            group = "full" if r.get("model_bytes") == full_bytes else "part"
            name = (
                "dequantized"
                if r["experts"] == "dequantized"
                else ("mapped" if r["mmap"] else "eager")
            )
            run[group][name] = r
    return run


def render(run: dict) -> str:
    cfg20 = ge.ModelConfig.gpt_oss_20b()
    counts = ge.count_parameters(cfg20)
    full, part, mach = run["full"], run["part"], run["machine"]

    def row(name, how, r):
        if not r.get("ok"):
            return f"| {name} | {how} | failed: {r.get('error', '?')[:120]} | | | | | | | |"
        cpu = r.get("prefill_cpu_s")
        cpu = f"{cpu:.1f} s" if cpu is not None else "-"
        load = r.get("loadavg_1min")
        load = f"{load:.1f}" if load is not None else "-"
        return (
            f"| {name} | {how} | {gib(r['peak_rss'])} | {gib(r['peak_anon'])} | "
            f"{gib(r['model_bytes'])} | {r['load_s']:.1f} s | {r['prefill_s']:.1f} s | {cpu} | "
            f"{r['decode_tok_s']:.2f} | {load} |"
        )

    rows = [row("gpt-oss-20b (24 layers)", "mxfp4, memory-mapped", full["mapped"])]
    if "eager" in full:
        rows.append(row("gpt-oss-20b (24 layers)", "mxfp4, copied (mmap=False)", full["eager"]))
    rows += [
        row("20b shapes, 2 layers", "mxfp4, memory-mapped", part["mapped"]),
        row("20b shapes, 2 layers", "mxfp4, copied (mmap=False)", part["eager"]),
        row("20b shapes, 2 layers", "dequantized on load", part["dequantized"]),
    ]
    m = full["mapped"]
    verdict = (
        f"**Peak anonymous memory of the mapped 20b: {gib(m['peak_anon'])} "
        f"({'under' if m['peak_anon'] < 4 * GiB else 'OVER'} the 4 GiB goal), for a "
        f"{gib(counts.checkpoint_bytes)} checkpoint; peak RSS {gib(m['peak_rss'])}, the rest of "
        "it file-backed page cache that the OS can drop and read again.**"
        if m.get("ok")
        else f"**The mapped 20b run failed: {m.get('error')}**"
    )
    finite = ""
    if m.get("ok"):
        rate = m["finite_check_bytes"] / m["finite_check_s"]
        finite = (
            f"The NaN/Inf check of `load_checkpoint` on the {m['finite_check_bytes'] / 1e9:.2f} GB "
            f"of float (bf16) tensors, timed alone in the 20b child after the load (bytes in the "
            f"page cache): {m['finite_check_s']:.2f} s, {rate / 1e9:.2f} GB/s, "
            f"{100 * m['finite_check_s'] / m['load_s']:.0f}% of that load's {m['load_s']:.1f} s "
            "(which includes it, and reading the bytes from disk)."
        )

    def side_by_side(where: str, p: dict, e: dict, prefill_note: str = "") -> str:
        """One sentence comparing the mapped (p) and copied (e) children of one model."""
        if not (p.get("ok") and e.get("ok")):
            return ""
        return (
            f"On {where}, one after the other in this run: mapped vs copied peak RssAnon "
            f"{gib(p['peak_anon'])} vs {gib(e['peak_anon'])}, peak RSS {gib(p['peak_rss'])} vs "
            f"{gib(e['peak_rss'])}, load {p['load_s']:.1f} s vs {e['load_s']:.1f} s, prefill "
            f"{p['prefill_s']:.1f} s vs {e['prefill_s']:.1f} s{prefill_note}, decode "
            f"{p['decode_tok_s']:.2f} vs {e['decode_tok_s']:.2f} tok/s."
        )

    side = "\n".join(
        x
        for x in (
            side_by_side(
                "the 24 layers",
                full.get("mapped", {}),
                full.get("eager", {}),
                " (the mapped model reads the experts it routes to during its first pass)",
            ),
            side_by_side("the 2-layer slice", part["mapped"], part["eager"]),
        )
        if x
    )
    eager_note = (
        ""
        if "eager" in full
        else (
            "The copying loader was not run on the 24 layers here (`--eager-20b`; it needs "
            "~14 GiB of free RAM, more than this shared machine could spare safely); the "
            "previous page (2026-11-23, same machine, the copying loader of that day) measured "
            "13.24 GiB peak RSS for it, 13.1 GiB of it anonymous: not side by side."
        )
    )
    nice = "nice " if run.get("nice", 10) else ""  # runs before the field was recorded: niced
    eager_arg = " --eager-20b" if "eager" in full else ""
    loads = [
        r["loadavg_1min"]
        for group in (full, part)
        for r in group.values()
        if r.get("loadavg_1min") is not None
    ]
    if loads and max(loads) <= mach["cpus"]:
        conditions = (
            f": the machine ran nothing else (load average {min(loads):.1f}-{max(loads):.1f} on "
            f"{mach['cpus']} cores), so the times are what a user waits."
        )
    else:
        conditions = (
            ": this run shared its cores with other jobs"
            + (f" (load average up to {max(loads):.1f})" if loads else "")
            + ", so the wall-clock times are longer than an idle machine gives; compare rows of "
            "one table, not with other pages."
        )
    how = ""
    if run.get("rendered_from"):
        how = (
            " (this page rendered again from that run's printed log with `--render-log LOG`, "
            "after the page's layout changed during the run)"
        )
    return f"""# gpt-oss-20b in less anonymous memory than its file: memory-mapped MXFP4 checkpoints

Date: {run["date"]}. Command: `{nice}.venv/bin/python benchmarks/memory_20b.py{eager_arg}`{how}.
Machine: {mach["platform"]}, {mach["processor"]}, {mach["cpus"]} CPU cores,
torch {mach["torch"]} with {mach["threads"]} threads, {gib(mach["ram"])} RAM.

A synthetic checkpoint with exactly gpt-oss-20b's {len(original_spec(cfg20))} keys, shapes and
dtypes ({counts.checkpoint_bytes:,} bytes of tensors, written by `write_synthetic` in
{run["write_s"]:.0f} s) is loaded in a fresh subprocess with `ge.load_checkpoint(path,
dtype=torch.bfloat16, experts=..., mmap=...)`; it then runs a {PROMPT}-token prompt (prefill) and
decodes {NEW_TOKENS} tokens greedily with the KV cache. Memory-mapped (the default), the files are
mapped copy-on-write and every tensor stored in the dtype it is used in (all of them here: packed
experts, bf16 rest) is a view of the mapping, so the weights are file-backed page cache, not the
process's own memory. Peak RSS is the kernel's high-water mark of the subprocess (`VmHWM`); peak
RssAnon (the process's own, anonymous memory: Python, torch, numba, activations, KV cache, any
copies) is sampled every 5 ms by a thread, since the kernel keeps no high-water mark for it.
Expert kernels: back end `{m.get("backend", "?")}` ("auto" on this CPU). "prefill CPU" is the
process's CPU time during the prefill (both threads), and "load avg" the machine's 1-minute load
average at the end of the child{conditions} ("-": the measurement was added to the script
while that child ran.) Memory-mapped, the first forward pass is also the one that reads the experts
it routes to from the file (page faults), which the copying loader does while loading: prefill
is where a mapped model pays for the bytes it touches.

| model | loader | peak RSS | peak RssAnon | model bytes | load | prefill ({PROMPT} tok) | prefill CPU | decode tok/s | load avg |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{verdict}

{finite}

{side}
{eager_note}

With the copying loader the file's pages also show in RSS while it copies (it reads through the
same mapping), which is why its peak RSS is the model twice; its RssAnon is the figure to compare.
The file-backed part of RSS is what the process touched of the mapping: the whole of the bf16
tensors (the NaN/Inf check reads them) and the experts the router chose. Where RAM is smaller
than the checkpoint the OS evicts those pages and reads them again when needed: the model runs,
slower, instead of failing. The synthetic weights are random, so the tokens decoded are
meaningless (the logits were checked finite: {m.get("finite")}).
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--eager-20b", action="store_true", help="also run the copying loader on the 24 layers"
    )
    ap.add_argument(
        "--render-log",
        type=Path,
        help="render the page from a run's printed log instead of measuring",
    )
    args = ap.parse_args(argv)
    run = from_log(args.render_log) if args.render_log else measure(args.eager_20b)
    results = ROOT / "benchmarks" / "results"
    (results / "memory_20b.json").write_text(json.dumps(run, indent=1) + "\n")
    md = render(run)
    (results / "memory_20b.md").write_text(md)
    print(md)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    else:
        main()
