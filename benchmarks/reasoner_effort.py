"""The shipped reasoner on held-out arithmetic, per operation and reasoning effort (chapter 15).

    nice .venv/bin/python benchmarks/reasoner_effort.py --write
    nice .venv/bin/python benchmarks/reasoner_effort.py --n 10 --n-tool 5    # a quick look

Measures `ge.load_tiny("reasoner")` (MXFP4 experts, as shipped) with the evaluation harness
(gptoss_edu.evaluate, greedy: temperature 0) on problems none of which it was trained on:

  1. the held-out split `heldout_problems(seed=0, n)` at low, medium and high effort: accuracy
     with a Wilson 95% interval, mean analysis and final tokens, seconds per task, per op;
  2. the calculator: `A * B` with three-digit operands (the tool range), asked through the agent
     loop with the tool declared (how often it calls, accuracy) and asked plainly with no tool
     (accuracy without it); and in-range problems with the tool declared (calls it should not
     make);
  3. with --float-weights FILE (written by `posttrain --save-float`): the float32 model before
     its experts were re-quantized to MXFP4, at high effort, on the same problems: the accuracy
     cost of re-quantization.

Writes benchmarks/results/reasoner_effort.md and .json with --write (then run collect.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.evaluate import evaluate  # noqa: E402
from gptoss_edu.posttrain.data import EFFORTS, heldout_problems  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _rows(report) -> list[dict]:
    return [r.__dict__ for r in report.rows]


def _table(rows: list[dict], extra: str = "") -> str:
    lines = [
        "| op | effort | n | accuracy | 95% CI (Wilson) | analysis tokens | final tokens "
        f"| seconds/task | tool calls |{extra}",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['group']} | {r['effort']} | {r['n']} | {r['accuracy']:.1%} | "
            f"[{r['ci_low']:.1%}, {r['ci_high']:.1%}] | {r['mean_analysis_tokens']:.1f} | "
            f"{r['mean_final_tokens']:.1f} | {r['mean_seconds']:.2f} | {r['tool_calls']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="held-out problems per operation")
    ap.add_argument("--n-tool", type=int, default=30, help="tool-range problems")
    ap.add_argument("--seed", type=int, default=0, help="held-out split seed")
    ap.add_argument("--max-new-tokens", type=int, default=640)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--float-weights", help="float32 weights from posttrain --save-float")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/reasoner_*")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    model, tok = ge.load_tiny("reasoner", experts="mxfp4")
    out: dict = {
        "command": "python benchmarks/reasoner_effort.py " + " ".join(argv or sys.argv[1:]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{args.threads} thread(s)",
    }
    problems = heldout_problems(args.seed, n=args.n)
    common = {"temperature": 0.0, "seed": 0, "max_new_tokens": args.max_new_tokens}

    def say(msg):
        print(f"[{time.time() - t_start:6.0f} s] {msg}", flush=True)

    say(f"effort table: {len(problems)} problems x {len(EFFORTS)} efforts")
    effort = evaluate(model, tok, problems, EFFORTS, **common)
    out["effort"] = {"rows": _rows(effort), "peak_memory_mb": effort.peak_memory_mb}
    out["effort_results"] = [r.__dict__ for r in effort.results]
    say("\n" + effort.table())

    tool_problems = [p for p in heldout_problems(args.seed, n=0, n_tool=args.n_tool)]
    say(f"tools: {len(tool_problems)} tool-range problems, with and without the calculator")
    with_tool = evaluate(model, tok, tool_problems, ("high",), use_tools=True, **common)
    without = evaluate(model, tok, tool_problems, ("high",), **common)
    in_range = evaluate(model, tok, problems[:: max(1, args.n // 10)], ("high",), use_tools=True, **common)
    out["tools"] = {
        "with_tool": _rows(with_tool),
        "without_tool": _rows(without),
        "in_range_with_tool": _rows(in_range),
        "calls_per_task": [r.tool_calls for r in with_tool.results],
        "in_range_calls_per_task": [r.tool_calls for r in in_range.results],
    }
    say("\n" + with_tool.table() + "\n" + without.table() + "\n" + in_range.table())

    if args.float_weights:
        from safetensors.torch import load_file

        say("re-quantization: the float32 weights at high effort")
        fmodel, _ = ge.load_tiny("reasoner", experts="dequantized")
        fmodel.load_state_dict(load_file(args.float_weights))
        fmodel.eval()
        f_high = evaluate(fmodel, tok, problems, ("high",), **common)
        out["requantization"] = {
            "float32": _rows(f_high),
            "mxfp4": [r for r in _rows(effort) if r["effort"] == "high"],
        }
        say("\n" + f_high.table())
    out["seconds"] = time.time() - t_start
    if args.write:
        (RESULTS / "reasoner_effort.json").write_text(json.dumps(out, indent=1) + "\n")
        (RESULTS / "reasoner_effort.md").write_text(render(out))
        say(f"wrote {RESULTS / 'reasoner_effort.md'}")
    return 0


def render(out: dict) -> str:
    rows = out["effort"]["rows"]
    by = {(r["group"], r["effort"]): r for r in rows}
    lines = [
        "# The shipped reasoner: accuracy per reasoning effort (chapter 15)",
        "",
        f"Date {out['date']}. Machine: {out['machine']}. Command: `{out['command']}` "
        f"({out['seconds'] / 60:.0f} min).",
        "",
        '`ge.load_tiny("reasoner")` (MXFP4 experts, as shipped; made by `python -m gptoss_edu '
        "posttrain`, see `gptoss_edu/assets/reasoner/TRAINING.md`) asked `What is A op B?` on "
        "held-out problems it was never trained on, greedy (temperature 0), through "
        "`gptoss_edu.evaluate` (the same call as `ge.chat(model, tok, question, "
        "reasoning=effort, temperature=0.0)`).",
        "",
        _table(rows),
        "",
        f"Peak memory: {out['effort']['peak_memory_mb']:.0f} MB.",
        "",
    ]
    if all(("all", e) in by for e in EFFORTS):
        a = {e: by[("all", e)] for e in EFFORTS}
        lines.append(
            "Accuracy against reasoning length (all operations): "
            + "; ".join(
                f"{e} {a[e]['accuracy']:.1%} at {a[e]['mean_analysis_tokens']:.0f} analysis tokens"
                for e in EFFORTS
            )
            + "."
        )
        lines.append("")
    t = out["tools"]
    calls = t["calls_per_task"]
    lines += [
        "## The calculator",
        "",
        f"{len(calls)} held-out `A * B` problems with 100 <= A, B <= 999 (beyond what it was "
        "taught to work by hand), at high effort:",
        "",
        "With the calculator declared (the agent loop of `gptoss_edu.tools` executes the call "
        "with its own parser: no `eval` of model text):",
        "",
        _table(t["with_tool"]),
        "",
        f"Tasks with at least one call: {sum(c > 0 for c in calls)} of {len(calls)}.",
        "",
        "Without the tool (plain chat, no developer message):",
        "",
        _table(t["without_tool"]),
        "",
        "In-range problems with the calculator declared (it should work them itself):",
        "",
        _table(t["in_range_with_tool"]),
        "",
        f"Tasks with a call: {sum(c > 0 for c in t['in_range_calls_per_task'])} of "
        f"{len(t['in_range_calls_per_task'])}.",
        "",
    ]
    if "requantization" in out:
        q = out["requantization"]
        lines += [
            "## Re-quantizing the experts to MXFP4",
            "",
            "The same held-out problems at high effort, float32 weights (before saving) vs the "
            "shipped MXFP4 experts:",
            "",
            "float32:",
            "",
            _table(q["float32"]),
            "",
            "MXFP4 (from the table above):",
            "",
            _table(q["mxfp4"]),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
