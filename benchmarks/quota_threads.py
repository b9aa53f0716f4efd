"""The tiny model under a container's CPU quota: threads sized by the cores vs by the quota.

Binder, Kubernetes and `docker run --cpus N` limit a process by a CPU *quota* while it still sees
every core of the host, and torch and numba size their thread pools by the cores they see. The
package reads the quota (`gptoss_edu/kernels/cpus.py`) and sizes both pools by it, unless the
user chose (OMP_NUM_THREADS, NUMBA_NUM_THREADS). This puts each child in a cgroup with a quota of
`--quota` CPUs (needs root and a writable cgroup file system, v1 or v2) and times the shipped
tiny model's greedy generation of 64 tokens, side by side:

  - "sized by the cores": OMP_NUM_THREADS and NUMBA_NUM_THREADS set to the cores this process
    sees (what torch and numba do by themselves, and what the package did before);
  - "sized by the quota (today)": no variable set, the package's own choice;
  - the same two without the quota, for reference.

    sudo .venv/bin/python benchmarks/quota_threads.py            # print the table
    sudo .venv/bin/python benchmarks/quota_threads.py --write    # and write results/quota_threads.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 64
REPEATS = 5

CHILD = """
import json, os, time, warnings
warnings.simplefilter("ignore")
import torch
import gptoss_edu as ge
from gptoss_edu.kernels import cpus
m, tok = ge.load_tiny()
ids = tok.encode("The quick brown fox jumps over the lazy dog.")
ge.generate(m, ids, max_new_tokens=8, temperature=0)  # compile, warm
times = []
for _ in range({repeats}):
    t0 = time.perf_counter()
    ge.generate(m, ids, max_new_tokens={tokens}, temperature=0)
    times.append(time.perf_counter() - t0)
import numba  # only now: a numba imported before the package keeps its own thread count
print("RESULT " + json.dumps({{"s": min(times), "all_s": times, "torch": torch.get_num_threads(),
      "numba": numba.config.NUMBA_NUM_THREADS, "quota_seen": cpus.cgroup_cpu_limit()}}))
"""


def make_cgroup(quota: float) -> tuple[Path, str]:
    """A new cgroup with `quota` CPUs of time per period; (its directory, 'v1' or 'v2')."""
    name = f"gptoss-bench-{uuid.uuid4().hex[:8]}"
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        d = v2 / name
        d.mkdir()
        (d / "cpu.max").write_text(f"{int(quota * 100000)} 100000\n")
        return d, "v2"
    d = Path("/sys/fs/cgroup/cpu") / name
    d.mkdir()
    (d / "cpu.cfs_period_us").write_text("100000\n")
    (d / "cpu.cfs_quota_us").write_text(f"{int(quota * 100000)}\n")
    return d, "v1"


def run_child(cgroup: Path | None, env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    code = CHILD.format(repeats=REPEATS, tokens=TOKENS)
    cmd = [sys.executable, "-c", code]
    if cgroup is not None:  # join the cgroup, then become the child: the quota holds from its start
        cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" "$@"', *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quota", type=float, default=1.0, help="CPUs of time (default 1)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    try:
        cgroup, version = make_cgroup(args.quota)
    except OSError as e:
        print(f"cannot make a cgroup here ({e}): run as root on Linux", file=sys.stderr)
        return 2
    by_cores = {"OMP_NUM_THREADS": str(cores), "NUMBA_NUM_THREADS": str(cores)}
    rows = []
    try:
        for where, cg in (("quota", cgroup), ("no quota", None)):
            for label, extra in (
                ("sized by the cores", by_cores),
                ("sized by the quota (today)", {}),
            ):
                r = run_child(cg, extra)
                rows.append((where, label, r))
                print(where, label, json.dumps(r), flush=True)
    finally:
        cgroup.rmdir()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    base = {(w, lab): r["s"] for w, lab, r in rows}
    lines = [
        "# The tiny model under a CPU quota: threads sized by the cores vs by the quota",
        "",
        f"Date: {date}. Command: `.venv/bin/python benchmarks/quota_threads.py --quota "
        f"{args.quota:g} --write` (as root). Machine: {platform.platform()}, {cores} cores in "
        f"the affinity mask; the quota: a cgroup {version} with {args.quota:g} CPU(s) of time.",
        "",
        f"Greedy generation of {TOKENS} tokens with the shipped tiny model, the fastest of "
        f"{REPEATS} runs, each child in its own process. 'Sized by the cores' sets "
        "OMP_NUM_THREADS and NUMBA_NUM_THREADS to the cores the process sees, which is what torch "
        "and numba choose by themselves; 'sized by the quota' sets neither and lets the package "
        "read the quota (`gptoss_edu/kernels/cpus.py`).",
        "",
        "| where | threads | torch / numba threads | quota the package saw | s per reply | "
        "vs sized by the cores |",
        "|---|---|---|---|---:|---:|",
    ]
    for where, label, r in rows:
        ratio = base[(where, "sized by the cores")] / r["s"]
        lines.append(
            f"| {where} | {label} | {r['torch']} / {r['numba']} | {r['quota_seen']} | "
            f"{r['s']:.3f} | {ratio:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        out = ROOT / "benchmarks" / "results" / "quota_threads.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
