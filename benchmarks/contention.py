"""Two processes on the same cores: the tiny reasoner's replies, alone and side by side.

    python benchmarks/contention.py --write        # ~7 min on 2 cores

A student with two notebooks open, or a chapter running while a model trains, puts two
processes on a laptop's cores. Each child process loads the shipped reasoner (MXFP4 experts on
the numba back end), answers one question once to compile and warm up, waits for a common start
time, then answers `What is 47 * 86?` at high effort (greedy) again and again for --seconds, and
reports the seconds per reply. Each setup runs in fresh processes:

- torch on 1 thread (`torch.set_num_threads(1)`, as chapters 10, 11, 14 and 15 do) or at its
  default (one thread per core);
- today's package, or with one of its two guards taken out: "numba before" is the numba back end
  without `numba_cpu._threads_for` (every kernel call on all of numba's threads, and torch's
  thread count left as numba's OpenMP pool start set it); "chat before" is `ge.chat` without
  `conversation._threads_for` (a small model's reply on torch's own thread count).

Writes benchmarks/results/contention.md with --write.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import contextlib, json, sys, time
import torch
setup, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
if "torch default" not in setup:
    torch.set_num_threads(1)
import gptoss_edu as ge
from gptoss_edu import conversation
from gptoss_edu.kernels import numba_cpu as nc
if "numba before" in setup:  # the back end without _threads_for
    nc._threads_for = lambda work: contextlib.nullcontext()
if "chat before" in setup:  # chat without its one-thread guard for small models
    conversation._threads_for = lambda model: contextlib.nullcontext()
model, tok = ge.load_tiny("reasoner")
ask = lambda: ge.chat(model, tok, "What is 47 * 86?", reasoning="high", temperature=0.0, stream=None)
reply = ask()
time.sleep(max(0.0, start - time.time()))
t0, n = time.perf_counter(), 0
while time.perf_counter() - t0 < seconds:
    reply = ask()
    n += 1
wall = time.perf_counter() - t0
print(json.dumps({"per_reply": wall / n, "replies": n, "final": reply.final,
                  "torch_threads": torch.get_num_threads()}))
"""

SETUPS = [  # (name, processes, child setup)
    ("alone, torch 1 thread", 1, "today"),
    ("alone, torch default threads", 1, "torch default"),
    ("alone, torch default threads, chat before", 1, "torch default, chat before"),
    ("two, torch 1 thread", 2, "today"),
    ("two, torch 1 thread, numba before", 2, "numba before"),
    ("two, torch default threads", 2, "torch default"),
    ("two, torch default threads, chat before", 2, "torch default, chat before"),
]

# One numba MXFP4 matmul call (T = 1), timed at 1 and at 2 numba threads: argv = mode, start time,
# seconds. mode "shapes": best of 5 loops per shape, alone. mode "loop1"/"loop2": the tiny
# model's expert shape (256 x 128) called again and again for `seconds` on 1 or 2 threads.
KERNEL_CHILD = """
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
import numba
from gptoss_edu.kernels import numba_cpu as nc
mode, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def args(N, K):
    g = torch.Generator().manual_seed(0)
    b = torch.randint(0, 256, (N, K // 32, 16), dtype=torch.uint8, generator=g).numpy()
    s = np.full((N, K // 32), 120, np.uint8)
    return np.random.default_rng(0).standard_normal((1, K)).astype(np.float32), b, s, np.zeros(N, np.float32)
out = {}
if mode == "shapes":
    for N, K in [(256, 128), (1024, 512), (2048, 1024), (5760, 2880)]:
        a = args(N, K)
        for n in (1, 2):
            numba.set_num_threads(n)
            nc._linear_np(*a)
            reps = max(20, int(2e7 // (N * K)))
            best = 1e9
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(reps):
                    nc._linear_np(*a)
                best = min(best, (time.perf_counter() - t) / reps)
            out[f"{N}x{K}/{n}"] = best
else:
    a = args(256, 128)
    numba.set_num_threads(int(mode[-1]))
    nc._linear_np(*a)
    time.sleep(max(0.0, start - time.time()))
    t, calls = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        nc._linear_np(*a)
        calls += 1
    out["per_call"] = (time.perf_counter() - t) / calls
print(json.dumps(out))
"""


def _children(code: str, argvs: list[list[str]]) -> list[dict]:
    """Run `code` in one fresh process per argv, all at once; their last JSON lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("NUMBA_NUM_THREADS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *a], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env,
        )
        for a in argvs
    ]  # fmt: skip
    out = []
    for p, a in zip(procs, argvs):
        stdout, _ = p.communicate(timeout=900)
        if p.returncode != 0:
            raise SystemExit(f"a child ({' '.join(a)}) failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run_setup(processes: int, setup: str, seconds: float) -> list[dict]:
    start = time.time() + 20  # time for every child to load and warm up
    return _children(CHILD, [[setup, str(start), str(seconds)]] * processes)


def kernel_rows(seconds: float) -> tuple[str, str]:
    """The two kernel tables: 1 vs 2 numba threads per shape alone, and in two processes."""
    shapes = _children(KERNEL_CHILD, [["shapes", "0", "0"]])[0]
    rows = []
    for key in [k for k in shapes if k.endswith("/1")]:
        shape = key[:-2]
        one, two = shapes[key], shapes[shape + "/2"]
        n, k = (int(v) for v in shape.split("x"))
        rows.append(
            f"| {shape} | {n * k:,} | {one * 1e6:.1f} | {two * 1e6:.1f} | {one / two:.2f}x |"
        )
    pairs = []
    for mode in ("loop1", "loop2"):
        start = time.time() + 10
        res = _children(KERNEL_CHILD, [[mode, str(start), str(seconds)]] * 2)
        per = " / ".join(f"{r['per_call'] * 1e6:,.1f}" for r in res)
        pairs.append(f"| {mode[-1]} | {per} |")
    return "\n".join(rows), "\n".join(pairs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each timed window")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name, processes, setup in SETUPS:
        res = run_setup(processes, setup, args.seconds)
        per = [r["per_reply"] for r in res]
        rows.append((name, processes, per, res))
        print(name, [f"{p:.2f} s" for p in per], [r["torch_threads"] for r in res], flush=True)
    shape_table, pair_table = kernel_rows(args.seconds / 2)
    print(shape_table, pair_table, sep="\n", flush=True)
    alone = rows[0][2][0]
    table = "\n".join(
        f"| {name} | {n} | {' / '.join(f'{p:.2f}' for p in per)} | "
        f"{max(per) / alone:.1f}x | {' / '.join(str(r['torch_threads']) for r in res)} | "
        f"{res[0]['replies'] if n == 1 else ' / '.join(str(r['replies']) for r in res)} |"
        for name, n, per, res in rows
    )
    import torch

    cmd = "python benchmarks/contention.py " + " ".join(argv if argv is not None else sys.argv[1:])
    page = f"""# Two processes on the same cores: the tiny reasoner, alone and side by side

Date {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} at the end.

Command: `{cmd.strip()}`

Each process answers `What is 47 * 86?` at high effort (greedy, the shipped reasoner, MXFP4
experts on the numba back end) again and again for {args.seconds:.0f} s, all processes of a
setup starting together; fresh processes for every setup.

| setup | processes | seconds per reply (each process) | vs alone | torch threads at the end | replies |
|---|---:|---:|---:|---:|---:|
{table}

Every parallel region waits at a barrier for all its threads. With two processes' threads on two
cores, a region can wait for a thread that is not running, and the tiny model's operations last
microseconds, so the waits are most of the time. "numba before": every numba kernel call ran on
all of numba's threads, and numba's OpenMP pool start reset the thread count torch shares with
it, so a `torch.set_num_threads(1)` became 2; today a call under `PARALLEL_MIN_WORK` weights x
tokens runs on one thread and torch's count is put back. "chat before": a reply ran on torch's
default thread count; today `ge.chat` runs a model with hidden size up to
`conversation.SMALL_MODEL_HIDDEN` on one torch thread and puts torch's count back after the reply
(torch threads at the end: the count each process had after its replies).

## One kernel call, 1 or 2 numba threads

`numba_cpu`'s MXFP4 matmul for one token (the kernel itself, `_linear_np`, with the thread count
set by hand), best of 5 loops, one process alone on the idle machine, in microseconds:

| shape (N x K) | weights | 1 thread | 2 threads | gain from the second thread |
|---|---:|---:|---:|---:|
{shape_table}

The tiny model's expert shape (256 x 128) called in a loop for {args.seconds / 2:.0f} s by two processes at
once, microseconds per call (each process):

| numba threads per process | per call |
|---:|---:|
{pair_table}

These set `numba_cpu.PARALLEL_MIN_WORK` (2^23 weights x tokens, about a millisecond of work on
one thread): a second thread gains a call under it little when the machine is idle, and next to
another busy process each parallel region can cost milliseconds.
"""
    print(page)
    if args.write:
        (ROOT / "benchmarks" / "results" / "contention.md").write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
