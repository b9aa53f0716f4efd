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
  3. where the loss is: the loss of held-out high-effort answers by the role of each token
     (gptoss_edu.posttrain.diagnose.loss_by_role), and whether the model can copy at all
     (repeat_test), for the reasoner and for the tiny model it was fine-tuned from;
  4. with --float-weights FILE (written by `posttrain --save-float`): the float32 model before
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
    ap.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="measure this reasoner checkpoint (a posttrain --out folder) instead of the shipped one",
    )
    ap.add_argument(
        "--name",
        default="reasoner_effort",
        help="file stem of the result page under benchmarks/results (with --write, --render)",
    )
    ap.add_argument("--title", help="the page's title (default: the shipped reasoner's)")
    ap.add_argument("--note", help="a paragraph under the title (what this page is for)")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/reasoner_*")
    ap.add_argument(
        "--render", action="store_true", help="only rewrite the .md page from the recorded .json"
    )
    args = ap.parse_args(argv)
    if not args.name.replace("_", "").isalnum():
        ap.error(f"--name {args.name!r}: letters, digits and _ only (a file stem)")
    if args.render:
        out = json.loads((RESULTS / f"{args.name}.json").read_text())
        (RESULTS / f"{args.name}.md").write_text(render(out))
        return 0
    torch.set_num_threads(args.threads)
    t_start = time.time()
    if args.checkpoint:
        from gptoss_edu.checkpoint import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(args.checkpoint)
    else:
        model, tok = ge.load_tiny("reasoner", experts="mxfp4")
    out: dict = {
        "title": args.title,
        "note": args.note,
        "checkpoint": args.checkpoint,
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
    in_range = evaluate(
        model, tok, problems[:: max(1, args.n // 10)], ("high",), use_tools=True, **common
    )
    out["tools"] = {
        "with_tool": _rows(with_tool),
        "without_tool": _rows(without),
        "in_range_with_tool": _rows(in_range),
        "calls_per_task": [r.tool_calls for r in with_tool.results],
        "in_range_calls_per_task": [r.tool_calls for r in in_range.results],
    }
    say("\n" + with_tool.table() + "\n" + without.table() + "\n" + in_range.table())

    from gptoss_edu.posttrain.diagnose import loss_by_role, repeat_test
    from gptoss_edu.posttrain.reasoner import digit_tokenizer

    say("diagnosis: loss by role and the repeat test")
    base, base_tok = ge.load_tiny(experts="mxfp4")
    diag = {}
    for name, m in (("tiny", base), ("reasoner", model)):
        roles = {}
        for op in ("+", "-", "*"):
            ps = [p for p in problems if p.op == op][:20]
            roles[op] = {k: list(v) for k, v in loss_by_role(m, tok, ps).items()}
        diag[name] = {"loss_by_role": roles, "repeat": repeat_test(m, digit_tokenizer(base_tok))}
        say(f"{name}: {diag[name]}")
    out["diagnosis"] = diag

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
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.write:
        (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
        (RESULTS / f"{args.name}.md").write_text(render(out))
        say(f"wrote {RESULTS / (args.name + '.md')}")
    return 0


def render(out: dict) -> str:
    rows = out["effort"]["rows"]
    by = {(r["group"], r["effort"]): r for r in rows}
    lines = [
        f"# {out.get('title') or 'The shipped reasoner: accuracy per reasoning effort (chapter 15)'}",
        "",
        *([out["note"], ""] if out.get("note") else []),
        f"Date {out['date']}. Machine: {out['machine']}. Command: `{out['command']}` "
        f"({out['seconds'] / 60:.0f} min; load average {out['load_average'][0]} at the end on a "
        "shared machine: the seconds per task indicate scale only, the accuracies and token "
        "counts do not depend on it).",
        "",
        (
            f"The checkpoint `{out['checkpoint']}` (MXFP4 experts, as `posttrain` wrote it; its "
            "TRAINING.md says how it was made)"
            if out.get("checkpoint")
            else '`ge.load_tiny("reasoner")` (MXFP4 experts, as shipped; made by `python -m '
            "gptoss_edu posttrain`, see `gptoss_edu/assets/reasoner/TRAINING.md`)"
        )
        + " asked `What is A op B?` on "
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
    if all(("all", e) in by for e in EFFORTS):
        lines += ["Goals of issue 13 (greedy, held-out):", ""]
        for op in ("+", "-", "*"):
            r = by[(op, "high")]
            ok = r["accuracy"] >= 0.8
            lines.append(
                f"- `{op}` at high effort >= 80%: {r['accuracy']:.1%} "
                f"[{r['ci_low']:.1%}, {r['ci_high']:.1%}]: {'met' if ok else 'not met'}"
            )
        tokens = [by[("all", e)]["mean_analysis_tokens"] for e in EFFORTS]
        ok = tokens[0] < tokens[1] < tokens[2]
        lines.append(
            "- mean analysis tokens low < medium < high: "
            + " < ".join(f"{t:.1f}" for t in tokens)
            + f": {'met' if ok else 'not met'}"
        )
        gap = by[("all", "high")]["accuracy"] - by[("all", "low")]["accuracy"]
        lines.append(
            f"- accuracy at high at least 20 points above low: {100 * gap:+.1f} points: "
            f"{'met' if gap >= 0.2 else 'not met'}"
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
    if "diagnosis" in out:
        d = out["diagnosis"]
        roles = list(next(iter(d["reasoner"]["loss_by_role"].values())))
        lines += [
            "## Where the loss is",
            "",
            "Mean loss (nats) of the trained tokens of held-out high-effort answers, teacher "
            "forcing, by the role of each token (`gptoss_edu.posttrain.diagnose`; a digit the "
            "model knows nothing about costs ln 10 = 2.303 nats); tokens per op in brackets:",
            "",
            "| role | " + " | ".join(f"{n} {op}" for n in d for op in ("+", "-", "*")) + " |",
            "|---|" + "---:|" * (3 * len(d)),
        ]
        for role in roles:
            cells = []
            for n in d:
                for op in ("+", "-", "*"):
                    v = d[n]["loss_by_role"][op].get(role)
                    cells.append(f"{v[0]:.2f} ({v[1]})" if v else "")
            lines.append(f"| {role} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "A role near 0 nats is learned; one near ln 10 = 2.30 nats is a guess among the ten "
            "digits. A worked answer needs some 30 digits right in a row, so a role that still "
            "costs a fraction of a nat per digit is enough to make most final answers wrong.",
            "",
            "Can it copy? Loss per digit of a random 24-digit string the first and the second "
            "time it appears (`repeat_test`; an induction head makes the second nearly free): "
            + "; ".join(
                f"{n}: {d[n]['repeat']['first']:.2f} then {d[n]['repeat']['second']:.2f}" for n in d
            )
            + ".",
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
