"""Two processes on the same cores: the tiny reasoner's replies, alone and side by side.

    python benchmarks/contention.py --write        # ~6 min on 2 cores

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


def run_setup(processes: int, setup: str, seconds: float) -> list[dict]:
    start = time.time() + 20  # time for every child to load and warm up
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("NUMBA_NUM_THREADS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, setup, str(start), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"a child of setup {setup!r} failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


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
"""
    print(page)
    if args.write:
        (ROOT / "benchmarks" / "results" / "contention.md").write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
