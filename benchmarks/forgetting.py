"""Forgetting: fine-tune the chapter-15 reasoner on a new skill whose data has no analysis, and
measure what happens to its reasoning; then two fixes, measured the same way (chapter 16).

    nice -n 19 .venv/bin/python benchmarks/forgetting.py --write          # the reasoner, ~15 min
    nice -n 19 .venv/bin/python benchmarks/forgetting.py --model base --steps 20 --n-arith 2 --n-new 5

From one starting model (the shipped reasoner, experts decoded to float32 so that every weight
trains) it runs the three recipes of gptoss_edu.posttrain.forgetting (naive: new skill, final
channel only; mix: the same with a share of chapter-15 reasoning conversations in every batch;
keep_analysis: the new skill with a short analysis in its targets), each for the same steps on
the same new-skill questions, and measures before and after each one, greedily:

- on the chapter-15 held-out arithmetic at high effort, with gptoss_edu.evaluate: accuracy (with
  a Wilson 95% interval), mean analysis tokens, share of replies with an empty or absent analysis;
- on held-out word repetitions (the new skill) at high effort: accuracy, the same analysis counts.

Writes benchmarks/results/forgetting.{md,json} with --write (then run benchmarks/collect.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.evaluate import evaluate, wilson_interval  # noqa: E402
from gptoss_edu.posttrain import forgetting as fg  # noqa: E402
from gptoss_edu.posttrain.data import heldout_problems  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def reasoner_dir(override: str | None) -> Path:
    return Path(override) if override else ge.tiny.tiny_path("reasoner")


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(which: str, override: str | None = None):
    """(model, tokenizer) with the experts decoded to float32 (trainable)."""
    if which == "reasoner":
        if override is None:
            return ge.load_tiny("reasoner", experts="dequantized")
        from gptoss_edu.checkpoint import load_checkpoint
        from gptoss_edu.tokenizer.bpe import BPETokenizer

        model = load_checkpoint(Path(override), experts="dequantized", dtype=torch.float32)
        return model, BPETokenizer.load(Path(override) / "tokenizer.tiktoken")
    from gptoss_edu.posttrain.reasoner import digit_tokenizer

    model, tok = ge.load_tiny(experts="dequantized")
    return model, digit_tokenizer(tok)


def measure(model, tok, arith, new, max_new_tokens: int, label: str) -> dict:
    t0 = time.perf_counter()
    report = evaluate(
        model, tok, arith, ("high",), temperature=0.0, seed=0, max_new_tokens=max_new_tokens
    )
    a = fg.reasoning_summary(report, "high")
    a["ci"] = wilson_interval(a["correct"], a["n"])
    n = fg.evaluate_echo(model, tok, new, "high")
    n["ci"] = wilson_interval(n["correct"], n["n"])
    seconds = time.perf_counter() - t0
    print(
        f"{label:14s} arithmetic {a['correct']}/{a['n']}  analysis {a['mean_analysis_tokens']:.1f} "
        f"tok  empty {a['empty_analysis_share']:.0%} | new skill {n['correct']}/{n['n']}  "
        f"analysis {n['mean_analysis_tokens']:.1f} tok  ({seconds:.0f} s)",
        flush=True,
    )
    example = report.results[-1]
    return {
        "arithmetic": a,
        "new_skill": {k: v for k, v in n.items() if k != "answers"},
        "new_skill_answers": n["answers"][:5],
        "arithmetic_example": {"question": example.question, "final": example.final},
        "seconds": round(seconds, 1),
    }


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def page(rec: dict) -> str:
    rows = []
    for name, r in rec["runs"].items():
        a, n = r["arithmetic"], r["new_skill"]
        rows.append(
            f"| {name} | {a['correct']}/{a['n']} ({pct(a['accuracy'])}) "
            f"[{pct(a['ci'][0])}, {pct(a['ci'][1])}] | {a['mean_analysis_tokens']:.1f} | "
            f"{pct(a['empty_analysis_share'])} | {n['correct']}/{n['n']} ({pct(n['accuracy'])}) | "
            f"{n['mean_analysis_tokens']:.1f} |"
        )
    c = rec["config"]
    train_lines = "\n".join(
        f"- {name}: {h['steps']} steps in {h['seconds']:.0f} s, conversations "
        f"{h['conversations']['new']} new-skill + {h['conversations']['reasoning']} chapter-15; "
        f"loss {h['loss_first']:.3f} -> {h['loss_last']:.3f}"
        for name, h in rec["training"].items()
    )
    sha = (
        f" (model.safetensors sha256 {rec['weights_sha256'][:16]}...)"
        if rec.get("weights_sha256")
        else ""
    )
    return f"""# Forgetting: fine-tuning the reasoner on a skill without analysis

Date {rec["date"]}. Machine: {rec["machine"]} (a shared machine: times indicate scale only).

Command: `{rec["command"]}`
{chr(10) + rec["note"] + chr(10) if rec.get("note") else ""}
Starting model: {rec["start"]}{sha}. Each recipe starts from it and fine-tunes every weight (experts
decoded to float32) for {c["steps"]} AdamW steps of {c["batch_size"]} conversations (lr {c["lr"]},
{c["warmup"]} warm-up steps, then constant) on the same word-repetition questions (`Repeat the words:
open file list` -> `open file list`, {len(fg.LENGTHS)} lengths {fg.LENGTHS}, efforts drawn uniformly):
**naive** final channel only; **mix** the same with {rec["n_mix"]} of every {c["batch_size"]}
conversations ({pct(rec["n_mix"] / c["batch_size"])}) chapter-15 arithmetic with its analysis;
**keep_analysis** the new skill with a short analysis in its targets. Measured greedily at high
effort: {rec["n_arith"]} chapter-15 held-out problems ({rec["n_arith"] // 3} per operation, with
`gptoss_edu.evaluate`) and {rec["n_new"]} held-out word repetitions.

| model | arithmetic correct [95% CI] | analysis tokens | empty analysis | new skill correct | new skill analysis tokens |
|---|---|---:|---:|---|---:|
{chr(10).join(rows)}

Training:

{train_lines}

The fine-tuned models are measured as trained (float32 experts), not re-quantized to MXFP4.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("reasoner", "base"), default="reasoner")
    ap.add_argument(
        "--reasoner-dir", help="a reasoner checkpoint folder (default: the shipped assets/reasoner)"
    )
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--mix-share", type=float, default=0.25)
    ap.add_argument("--n-arith", type=int, default=5, help="held-out problems per operation")
    ap.add_argument("--n-new", type=int, default=10, help="held-out word repetitions")
    ap.add_argument("--max-new-tokens", type=int, default=300)
    ap.add_argument("--recipes", nargs="+", choices=fg.RECIPES, default=list(fg.RECIPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/forgetting.*")
    ap.add_argument("--note", help="a paragraph for the page (other runs, how this one was made)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()

    model, tok = load(args.model, args.reasoner_dir)
    start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    arith = heldout_problems(seed=0, n=args.n_arith)
    new_train, new_heldout = fg.echo_problems(seed=0, n_heldout=max(args.n_new, 1))
    new_heldout = new_heldout[: args.n_new]
    runs = {"before": measure(model, tok, arith, new_heldout, args.max_new_tokens, "before")}
    training = {}
    n_mix = 0
    for recipe in args.recipes:
        model.load_state_dict(start_state)
        cfg = fg.ForgetConfig(
            recipe=recipe,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            mix_share=args.mix_share,
        )
        n_mix = max(n_mix, cfg.n_mix)
        torch.manual_seed(0)
        hist = fg.finetune(model, tok, cfg, new_train)
        training[recipe] = {
            "steps": cfg.steps,
            "seconds": round(hist.seconds, 1),
            "conversations": hist.conversations,
            "loss_first": hist.loss[0],
            "loss_last": hist.loss[-1],
            "loss": [round(v, 4) for v in hist.loss],
        }
        runs[recipe] = measure(model, tok, arith, new_heldout, args.max_new_tokens, recipe)

    cfg = fg.ForgetConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    rec = {
        "note": args.note,
        "command": (f"nice -n {os.nice(0)} " if os.nice(0) else "")
        + ".venv/bin/python benchmarks/forgetting.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__}, {args.threads} threads; load average "
        f"{os.getloadavg()[0]:.1f} at the end",
        "start": (
            "the shipped reasoner, ge.load_tiny('reasoner', experts='dequantized')"
            if not args.reasoner_dir
            else f"the reasoner checkpoint in {args.reasoner_dir} (experts decoded to float32)"
        )
        if args.model == "reasoner"
        else "the base tiny model (ge.load_tiny(experts='dequantized')) with the digit tokenizer: "
        "a dry run, not the reasoner",
        "model": args.model,
        "weights_sha256": sha256(reasoner_dir(args.reasoner_dir) / "model.safetensors")
        if args.model == "reasoner"
        else None,
        "config": {
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "warmup": cfg.warmup,
            "mix_share": args.mix_share,
            "max_new_tokens": args.max_new_tokens,
        },
        "n_mix": n_mix,
        "n_arith": len(arith),
        "n_new": len(new_heldout),
        "runs": runs,
        "training": training,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    print(f"wall {rec['wall_seconds']:.0f} s")
    if args.write:
        OUT.mkdir(exist_ok=True)
        (OUT / "forgetting.json").write_text(json.dumps(rec, indent=1) + "\n")
        (OUT / "forgetting.md").write_text(page(rec))
        print(f"wrote {OUT / 'forgetting.md'} and forgetting.json")
    else:
        print(page(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
