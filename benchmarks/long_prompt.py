"""Long prompts on gpt-oss-20b: time and memory of the prefill, before and after, side by side.

`ge.generate` prefills the prompt in one forward pass and draws the first new token from the
last position's logits. Two things in that pass grew with the prompt's length T:

  - the vocabulary projection of every position, a (T, V) bf16 tensor (1.6 GB for T = 4,096 on
    the 201,088-token vocabulary) of which one row was used; now `decode_loop` asks a model
    that takes `logits_at` (chapter 7) for the last row only;
  - attention's float32 scores, (heads, T, S + 1) per layer (4.3 GB for T = 4,096 and 64 heads),
    built three times over; now the queries run in blocks whose scores fit
    `attention.SCORES_BYTES` (chapter 5).

This times `ge.generate(model, prompt, max_new_tokens=1)` on a 20b-shaped synthetic checkpoint
(memory-mapped, packed MXFP4 experts, bf16) for prompts of several lengths, each run in its own
fresh subprocess (so that peak anonymous memory is the run's own), the modes alternating:

  - "before": `generation.takes_logits_at` patched to answer False and `SCORES_BYTES` to 2**62
    (one pass over all queries): the code before both changes;
  - "logits_at only": only `SCORES_BYTES` patched;
  - "today": the package as it is.

    nice .venv/bin/python benchmarks/long_prompt.py            # print the table (~15 minutes)
    nice .venv/bin/python benchmarks/long_prompt.py --write    # and write results/long_prompt.md

It writes the 13.8 GB checkpoint to a temporary directory (GPTOSS_BENCH_DIR to choose where)
and deletes it, unless `--checkpoint DIR` names one already written (`write_synthetic`).
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = (512, 2048, 4096)
REPEATS = {512: 2, 2048: 2, 4096: 1}
MODES = ("before", "logits_at only", "today")
GiB = 2**30

CHILD = """
import json, os, sys, threading, time, warnings
warnings.simplefilter("ignore")
import torch
import gptoss_edu as ge
from gptoss_edu import generation
from gptoss_edu.model import attention

path, T, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "before":
    generation.takes_logits_at = lambda model: False  # every position's logits
if mode in ("before", "logits_at only"):
    attention.SCORES_BYTES = 2**62  # all queries in one pass

def anon():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("RssAnon:")).split()[1]) * 1024

model = ge.load_checkpoint(path, dtype=torch.bfloat16, progress=False)
g = torch.Generator().manual_seed(0)
warm = torch.randint(0, model.config.vocab_size, (8,), generator=g).tolist()
ge.generate(model, warm, max_new_tokens=2, temperature=0)  # numba kernels compiled or loaded
prompt = torch.randint(0, model.config.vocab_size, (T,), generator=g).tolist()
before, peak, stop = anon(), [0], threading.Event()

def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], anon())
        time.sleep(0.005)

th = threading.Thread(target=sample, daemon=True)
th.start()
t0, c0 = time.perf_counter(), time.process_time()
ids = ge.generate(model, prompt, max_new_tokens=1, temperature=0)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
stop.set()
th.join()
print("RESULT " + json.dumps({"T": T, "mode": mode, "s": wall, "cpu_s": cpu, "token": ids[0],
      "peak_anon_rise": max(peak[0], anon()) - before, "threads": torch.get_num_threads(),
      "loadavg": os.getloadavg()[0]}))
"""


LAYER_PROMPTS = (2048, 4096)


def layer_times() -> list[dict]:
    """One attention layer of gpt-oss-20b's shapes (bf16, random weights) on T tokens: a sliding
    layer as today (each block of queries reads only the keys it may see), the same layer with
    every block reading all T keys (the code before: its mask drops them after the work), and a
    full layer. Best of 2, in this process, after a warm-up."""
    import torch

    import gptoss_edu as ge
    from gptoss_edu.model.attention import (
        SCORES_BYTES,
        AttentionBlock,
        attend,
        attention_mask,
        attention_weights,
    )

    def all_keys(block, x, pos):  # the blocked forward of the code before, for a sliding layer
        q, k, v = block.project(x, pos)
        mask = attention_mask(pos, pos, block.sliding_window)
        B, T, Hkv, G, _ = q.shape
        rows = max(1, SCORES_BYTES // (4 * B * Hkv * G * (k.shape[1] + 1)))
        parts = [
            attend(
                attention_weights(
                    q[:, t : t + rows], k, block.sinks, mask[t : t + rows], block.sm_scale
                ),
                v,
            )  # fmt: skip
            for t in range(0, T, rows)
        ]
        return block.out(torch.cat(parts, dim=1))

    def best(f):
        f()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    torch.manual_seed(0)
    cfg = ge.ModelConfig.gpt_oss_20b()
    sliding = AttentionBlock(cfg, 0).to(torch.bfloat16).eval()
    full = AttentionBlock(cfg, 1).to(torch.bfloat16).eval()
    out = []
    with torch.no_grad():
        for T in LAYER_PROMPTS:
            x = torch.randn(1, T, cfg.hidden_size, dtype=torch.bfloat16)
            pos = torch.arange(T)
            r = {
                "T": T,
                "sliding": best(lambda: sliding(x, pos)),  # noqa: B023
                "sliding_all_keys": best(lambda: all_keys(sliding, x, pos)),  # noqa: B023
                "full": best(lambda: full(x, pos)),  # noqa: B023
                "threads": torch.get_num_threads(),
            }
            a, b = sliding(x, pos).float(), all_keys(sliding, x, pos).float()
            r["max_abs_diff"], r["max_abs"] = float((a - b).abs().max()), float(a.abs().max())
            print(f"  layer T={T}: {json.dumps(r)}", flush=True)
            out.append(r)
    return out


def run_child(path: Path, T: int, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(T), mode],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        return {
            "T": T,
            "mode": mode,
            "ok": False,
            "error": f"exit {proc.returncode} {proc.stderr[-300:]}",
        }
    out = json.loads(lines[-1][len("RESULT ") :])
    out["ok"] = True
    print(f"  T={T} {mode}: {json.dumps(out)}", flush=True)
    return out


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "ram": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "torch": torch.__version__,
    }


def from_log(log: Path, date: str) -> dict:
    """The child results of an earlier run, from its printed lines; the layer table is measured
    now (a run whose last step failed keeps its children's figures)."""
    sys.path.insert(0, str(ROOT))
    runs = []
    for line in log.read_text().splitlines():
        if line.startswith("  T=") and ": {" in line:
            runs.append(json.loads(line[line.index(": {") + 2 :]))
    if not runs:
        sys.exit(f"long_prompt: no child results in {log}")
    run = {
        "date": date,
        "from_log": str(log.name),
        "machine": machine(),
        "prompts": sorted({x["T"] for x in runs}),
        "repeats": {str(k): v for k, v in REPEATS.items()},
        "runs": runs,
    }
    run["layers_date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run["layers"] = layer_times()
    return run


def measure(checkpoint: Path | None) -> dict:
    sys.path.insert(0, str(ROOT))

    import gptoss_edu as ge
    from gptoss_edu.checkpoint import write_synthetic

    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "prompts": list(PROMPTS),
        "repeats": {str(k): v for k, v in REPEATS.items()},
        "runs": [],
    }
    work = None
    if checkpoint is None:
        cfg = ge.ModelConfig.gpt_oss_20b()
        tmp_root = Path(os.environ.get("GPTOSS_BENCH_DIR", tempfile.gettempdir()))
        need = ge.count_parameters(cfg).checkpoint_bytes + 2 * 10**9
        if shutil.disk_usage(tmp_root).free < need:
            sys.exit(
                f"long_prompt: needs {need / 1e9:.0f} GB free in {tmp_root} for the "
                "checkpoint (set GPTOSS_BENCH_DIR to another directory)"
            )
        work = Path(tempfile.mkdtemp(prefix="long-prompt-", dir=tmp_root))
        checkpoint = work / "20b"
        print(f"writing a 20b-shaped synthetic checkpoint to {checkpoint}", flush=True)
        write_synthetic(checkpoint, cfg, progress=False)
    try:
        for T in PROMPTS:
            for r in range(REPEATS[T]):  # alternate, and reverse the order each repeat
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    run["runs"].append(run_child(checkpoint, T, mode))
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    run["layers"] = layer_times()
    return run


def render(run: dict) -> str:
    m = run["machine"]
    ok = [x for x in run["runs"] if x.get("ok")]
    threads = sorted({x["threads"] for x in ok})
    lines = [
        "# Long prompts on gpt-oss-20b: the prefill before and after, side by side",
        "",
        f"Date: {run['date']}. Command: `.venv/bin/python benchmarks/long_prompt.py "
        f"{run.get('argv', '--write')}`.",
        *(
            [
                f"The subprocess figures are that run's, read back from its printed log "
                f"(`--from-log {run['from_log']}`: its last step, the layer table, had failed); "
                f"the layer table was measured at {run['layers_date']}.",
            ]
            if run.get("from_log")
            else []
        ),
        f"Machine: {m['platform']}, {m['cpus']} CPU cores, {m['ram'] / GiB:.2f} GiB RAM, torch "
        f"{m['torch']}, torch threads {threads}.",
        "",
        "`ge.generate(model, prompt, max_new_tokens=1, temperature=0)` on a 20b-shaped synthetic "
        "checkpoint (gpt-oss-20b's keys, shapes and dtypes, random values; bf16, packed MXFP4 "
        "experts, memory-mapped), each run in its own fresh subprocess after a short generation "
        'that compiles the kernels, the modes alternating. "before": every position\'s logits '
        '(the (T, V) projection) and attention over all queries in one pass; "logits_at only": '
        'the last position\'s logits, attention in one pass; "today": the package (last '
        "position's logits, queries in blocks of at most `SCORES_BYTES` = 256 MiB of scores). "
        "Time: the fastest of the repeats (per prompt length: "
        + ", ".join(f"{k} tokens {v}" for k, v in run["repeats"].items())
        + "). Memory: the largest rise of anonymous memory (RssAnon, sampled every 5 ms) over "
        "the process's own before the call; the weights are file-backed and not in it.",
        "",
        "| prompt tokens | mode | time | vs before | peak RssAnon rise | first token |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for T in run["prompts"]:
        base = [x for x in ok if x["T"] == T and x["mode"] == "before"]
        tb = min(x["s"] for x in base) if base else None
        for mode in MODES:
            rs = [x for x in run["runs"] if x["T"] == T and x["mode"] == mode]
            good = [x for x in rs if x.get("ok")]
            if not good:
                why = rs[0].get("error", "not run")[-120:].replace("\n", " ") if rs else "not run"
                lines.append(f"| {T} | {mode} | failed: {why} | | | |")
                continue
            t = min(x["s"] for x in good)
            rise = max(x["peak_anon_rise"] for x in good)
            ratio = f"{tb / t:.2f}x" if tb else ""
            tokens = sorted({x["token"] for x in good})
            lines.append(
                f"| {T} | {mode} | {t:.1f} s | {ratio} | {rise / GiB:.2f} GiB | {tokens} |"
            )
    if run.get("layers"):
        lines += [
            "",
            "One attention layer of gpt-oss-20b's shapes (bf16, random weights, in the parent "
            "process, best of 2): a sliding layer today (each block of queries reads only the "
            "keys it may see: at most window + rows - 1), the same sliding layer with every "
            "block reading all T keys (the code before; the mask then zeroes all but the window), "
            "and a full layer. The two sliding versions compute the same function; in bf16 their "
            "outputs differ by round-off only (max |diff| "
            + ", ".join(f"{r['max_abs_diff']:.1e}" for r in run["layers"])
            + " for outputs up to "
            + ", ".join(f"{r['max_abs']:.2f}" for r in run["layers"])
            + ").",
            "",
            "| prompt tokens | sliding, today | sliding, all keys (before) | full layer | "
            "sliding before / today |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in run["layers"]:
            lines.append(
                f"| {r['T']} | {r['sliding']:.2f} s | {r['sliding_all_keys']:.2f} s | "
                f"{r['full']:.2f} s | {r['sliding_all_keys'] / r['sliding']:.1f}x |"
            )
    loads = [x["loadavg"] for x in ok]
    if loads:
        lines += [
            "",
            f"1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f} on "
            f"{m['cpus']} cores.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/")
    ap.add_argument("--checkpoint", type=Path, help="a 20b-shaped checkpoint already written")
    ap.add_argument("--from-log", type=Path, help="rebuild the child runs from a printed log")
    ap.add_argument("--date", help="with --from-log: when that run started")
    args = ap.parse_args(argv)
    if args.from_log:
        run = from_log(args.from_log, args.date or "unknown")
    else:
        run = measure(args.checkpoint)
    run["argv"] = " ".join(sys.argv[1:] if argv is None else argv)
    text = render(run)
    print(text)
    if args.write:
        out = ROOT / "benchmarks" / "results"
        (out / "long_prompt.json").write_text(json.dumps(run, indent=1) + "\n")
        (out / "long_prompt.md").write_text(text)


if __name__ == "__main__":
    main()
