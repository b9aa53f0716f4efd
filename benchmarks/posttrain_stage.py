"""Re-run one stage of the shipped reasoner's training with today's code, timed (chapter 15).

    python benchmarks/posttrain_stage.py --stage 1 --threads 2 --write     # ~8 min, from a clone
    python benchmarks/posttrain_stage.py --stage 5 --init S4_F32 --threads 2 --n 50 --write

Takes stage `--stage` of `gptoss_edu/assets/reasoner/training.json` (the record lists each
stage's exact `python -m gptoss_edu posttrain` command), and runs that command in a subprocess
with `--out` and `--save-float` in a temporary directory, `--threads` as given, and `--init`
replaced by the file given here (a stage after the first starts from the float32 weights of the
one before, which the repository does not ship: `posttrain --save-float` writes them). Measures
the wall time of the whole command (loading, training, re-quantizing, saving) and its CPU time,
and sets the rerun's record beside the shipped one: the stage's loss, the facts drill, the loss
after re-quantization. With --n > 0 it also asks the rerun `ge.chat` (greedy, high effort) the
first n held-out problems of each operation, and the shipped reasoner the same ones when the
stage is the last (the shipped reasoner is that stage's result).

Writes benchmarks/results/posttrain_stage<k>.md with --write (then run collect.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.checkpoint import load_model_and_tokenizer  # noqa: E402
from gptoss_edu.posttrain.data import OPS, heldout_problems  # noqa: E402

RECORD = ROOT / "gptoss_edu" / "assets" / "reasoner" / "training.json"


def stages(record: dict) -> list[dict]:
    """The records of every stage, first to last (each record nests the one before)."""
    out = [record]
    while out[0].get("previous_stage"):
        out.insert(0, out[0]["previous_stage"])
    return out


def rerun_args(command: str, out: Path, threads: int, init: str | None) -> list[str]:
    """The stage's posttrain arguments with --out, --save-float, --threads and --init replaced."""
    words = shlex.split(command)
    if words[:4] != ["python", "-m", "gptoss_edu", "posttrain"]:
        raise ValueError(f"not a posttrain command: {command!r}")
    args, drop = [], {"--out", "--save-float", "--threads", "--init", "--overwrite"}
    it = iter(words[4:])
    had_init = False
    for w in it:
        if w in drop:
            had_init |= w == "--init"
            if w != "--overwrite":
                next(it)
            continue
        args.append(w)
    if had_init and not init:
        raise SystemExit(
            "this stage starts from the float32 weights of the one before (--init in its "
            "command); give them with --init (posttrain --save-float writes them)"
        )
    if init:
        if not had_init:
            raise SystemExit("this stage starts from the tiny model (no --init); drop --init")
        args += ["--init", init]
    return args + [
        "--out", str(out / "reasoner"), "--save-float", str(out / "float32.safetensors"),
        "--threads", str(threads),
    ]  # fmt: skip


def stage_summary(rec: dict) -> dict:
    """The figures of a stage's record that a rerun can be set beside (None where the record,
    written by the code of its day, has no such figure)."""
    h = rec["history"]
    last = h["loss"][-50:]
    q = rec.get("requantization") or {}
    return {
        "seconds in training": h.get("seconds"),
        "masked loss, mean of the last 50 steps": sum(last) / len(last),
        "facts right at the end": rec.get("facts_accuracy"),
        "held-out loss, float32": q.get("loss_float32"),
        "held-out loss, MXFP4": q.get("loss_mxfp4"),
        "greedy agreement float32 / MXFP4": q.get("argmax_agreement"),
    }


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def accuracy(model, tok, n: int) -> dict[str, tuple[int, int]]:
    """Right answers of ge.chat (greedy, high effort) on the first n held-out problems per op."""
    probs = heldout_problems(seed=0, n=n)
    out = {}
    for op in OPS:
        mine = [p for p in probs if p.op == op]
        right = 0
        for p in mine:
            rep = ge.chat(model, tok, p.question, reasoning="high", temperature=0.0, stream=None)
            right += rep.final is not None and rep.final.strip() == str(p.answer)
        out[op] = (right, len(mine))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", type=int, default=1, help="1 = the first stage")
    ap.add_argument("--init", help="float32 weights of the stage before (posttrain --save-float)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the rerun")
    ap.add_argument("--n", type=int, default=0, help="held-out problems per operation to ask")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    record = json.loads(RECORD.read_text())
    chain = stages(record)
    if not 1 <= args.stage <= len(chain):
        ap.error(f"--stage {args.stage}: the shipped reasoner has stages 1 to {len(chain)}")
    shipped = chain[args.stage - 1]
    with tempfile.TemporaryDirectory(prefix="posttrain_stage_") as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "gptoss_edu", "posttrain"]
        cmd += rerun_args(shipped["command"], tmp, args.threads, args.init)
        print(" ".join(cmd), flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rerun = json.loads((tmp / "reasoner" / "training.json").read_text())
        acc_new = acc_old = None
        if args.n:
            torch.set_num_threads(1)
            model, tok = load_model_and_tokenizer(tmp / "reasoner")
            acc_new = accuracy(model, tok, args.n)
            if args.stage == len(chain):
                acc_old = accuracy(*ge.load_tiny("reasoner"), args.n)
    a, b = stage_summary(shipped), stage_summary(rerun)
    rows = "\n".join(f"| {k} | {_fmt(v)} | {_fmt(b[k])} |" for k, v in a.items())
    if acc_new:
        for op in OPS:
            old = f"{acc_old[op][0]}/{acc_old[op][1]}" if acc_old else "-"
            rows += f"\n| held-out {op}, high effort, right | {old} | {acc_new[op][0]}/{acc_new[op][1]} |"
    words = list(argv if argv is not None else sys.argv[1:])
    for i, w in enumerate(words):  # the float32 file is a local path: name it S_F32
        if words[i - 1] == "--init" and i:
            words[i] = "S_F32"
        elif w.startswith("--init="):
            words[i] = "--init=S_F32"
    shown = " ".join(["python benchmarks/posttrain_stage.py", *words])
    page = f"""# Stage {args.stage} of the shipped reasoner, run again with today's code

Date {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} at the end.

Command: `{shown}` (S_F32: the float32 weights of the stage before)

The stage's recorded command (`gptoss_edu/assets/reasoner/training.json`):

```
{shipped["command"]}
```

run again as `python -m gptoss_edu posttrain` with `--threads {args.threads}` and its outputs in a
temporary directory. **The whole command took {wall / 60:.1f} min of wall time** ({wall:.0f} s:
loading, {len(rerun["history"]["steps"])} training steps, re-quantizing the experts and saving), and {cpu:.0f} s of CPU time.

| | shipped run ({shipped["threads"]} thread(s), {shipped["date"]}) | this rerun ({args.threads} thread(s)) |
|---|---:|---:|
{rows}

The shipped run's seconds are those of the code of its day, on a machine other jobs shared; the
rerun takes each step as parts of rows of similar length with logits only at the trained
positions (`gptoss_edu.posttrain.sft`), the same step up to float round-off, so its losses
follow the shipped run's without matching them digit for digit.
"""
    print(page)
    if args.write:
        (ROOT / "benchmarks" / "results" / f"posttrain_stage{args.stage}.md").write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
