"""Piloting a model before adopting it: one harness, several candidates, the same held-out
problems and seed (chapter 16).

    nice -n 19 .venv/bin/python benchmarks/pilot.py --write            # ~10 min on 2 cores
    nice -n 19 .venv/bin/python benchmarks/pilot.py --n 1 --models reasoner-mxfp4

Candidates (each through `gptoss_edu.evaluate` with temperature 0, seed 0, the chapter-15
held-out split of seed 0, at the three reasoning efforts):

    base                 the shipped tiny model, ge.load_tiny() (never post-trained)
    reasoner-mxfp4       the shipped reasoner as it loads by default: MXFP4 experts (it was
                         trained in float32 and re-quantized for saving)
    reasoner-dequantized the same checkpoint with its experts decoded to float32 first: the same
                         numbers up to the order of float additions, so it must agree
    reasoner-float32     only with --float-weights FILE: the reasoner's float32 weights before
                         re-quantization (`python -m gptoss_edu posttrain --save-float FILE`
                         writes them; they are not shipped)
    lora-packed          only with --lora-steps N > 0: the base tiny model with LoRA adapters on
                         attention (experts packed and frozen, gptoss_edu.posttrain.lora) trained
                         N steps on the chapter-15 data here

Also the gated gpt-oss-20b cell: with a checkpoint folder in $GPTOSS_20B (or $GPTOSS_20B_DIR, or
the Hugging Face cache), the same evaluate() call runs on it; without one it prints
"skipped: no gpt-oss-20b checkpoint at ..." and does nothing else.

Writes benchmarks/results/pilot.{md,json} with --write (then run benchmarks/collect.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.evaluate import evaluate  # noqa: E402
from gptoss_edu.posttrain.data import EFFORTS, heldout_problems  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
MODELS = ("base", "reasoner-mxfp4", "reasoner-dequantized", "reasoner-float32", "lora-packed")
HF_CACHE_20B = "~/.cache/huggingface/hub/models--openai--gpt-oss-20b/snapshots/*/original"


def gpt_oss_20b_dir() -> tuple[Path | None, list[str]]:
    """(the gpt-oss-20b checkpoint folder, or None; the places looked at)."""
    looked = []
    for var in ("GPTOSS_20B", "GPTOSS_20B_DIR"):
        value = os.environ.get(var)
        looked.append(f"${var}={value!r}" if value else f"${var} (not set)")
        if value and (Path(value).expanduser() / "config.json").is_file():
            return Path(value).expanduser(), looked
        if value and (Path(value).expanduser() / "original" / "config.json").is_file():
            return Path(value).expanduser() / "original", looked
    looked.append(HF_CACHE_20B)
    found = sorted(Path.home().glob(HF_CACHE_20B.removeprefix("~/")))
    for path in found:
        if (path / "config.json").is_file():
            return path, looked
    return None, looked


def load_reasoner(experts: str, override: str | None):
    """The shipped reasoner, or the checkpoint folder `override` (same layout)."""
    if override is None:
        return ge.load_tiny("reasoner", experts=experts)
    from gptoss_edu.checkpoint import load_checkpoint
    from gptoss_edu.tokenizer.bpe import BPETokenizer

    model = load_checkpoint(Path(override), experts=experts, dtype=torch.float32)
    return model, BPETokenizer.load(Path(override) / "tokenizer.tiktoken")


def load(name: str, lora_steps: int, float_weights: str | None = None, override=None):
    if name == "reasoner-float32":
        from safetensors.torch import load_file

        model, tok = load_reasoner("dequantized", override)
        model.load_state_dict(load_file(float_weights))  # the same keys: saved dequantized
        return model.eval(), tok
    if name == "base":
        return ge.load_tiny()
    if name == "reasoner-mxfp4":
        return load_reasoner("mxfp4", override)
    if name == "reasoner-dequantized":
        return load_reasoner("dequantized", override)
    from gptoss_edu.posttrain import lora

    model, tok = lora.load_for("lora-packed", start="base")
    lora.apply_recipe(model, "lora-packed", r=8, alpha=16)
    tok = lora.task_tokenizer(tok)
    lora.train(model, tok, steps=lora_steps, batch_size=8, lr=2e-3)
    model.eval()
    return model, tok


def page(rec: dict) -> str:
    lines = [
        "# Piloting: base vs reasoner (MXFP4 vs dequantized) at three efforts",
        "",
        f"Date {rec['date']}. Machine: {rec['machine']} (a shared machine: times indicate scale "
        "only).",
        "",
        f"Command: `{rec['command']}`",
        "",
        f"Reasoner: `{rec['reasoner']}` (model.safetensors sha256 {rec['reasoner_sha256'][:16]}...).",
        "",
        f"Every candidate answers the same {rec['n_problems']} chapter-15 held-out problems "
        f"({rec['n_per_op']} per operation, split seed 0) at each effort, greedily (temperature 0, "
        f"seed 0, at most {rec['max_new_tokens']} new tokens), through `gptoss_edu.evaluate`. "
        "Accuracy over all operations with its Wilson 95% interval; analysis and final tokens are "
        "means per reply.",
        "",
        "| model | effort | correct | accuracy [95% CI] | analysis tokens | final tokens "
        "| seconds/task |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for name, r in rec["runs"].items():
        for row in r["rows"]:
            if row["group"] != "all":
                continue
            lines.append(
                f"| {name} | {row['effort']} | {row['correct']}/{row['n']} | "
                f"{row['accuracy']:.0%} [{row['ci_low']:.0%}, {row['ci_high']:.0%}] | "
                f"{row['mean_analysis_tokens']:.1f} | {row['mean_final_tokens']:.1f} | "
                f"{row['mean_seconds']:.2f} |"
            )
    if "agreement" in rec:
        a = rec["agreement"]
        lines += [
            "",
            f"MXFP4 vs dequantized experts of the same checkpoint: the same final answer on "
            f"{a['same_final']} of {a['n']} tasks, the same whole reply (analysis and final) "
            f"on {a['same_reply']} of {a['n']}.",
        ]
    if "requantization" in rec:
        q = rec["requantization"]
        lines += [
            "",
            f"float32 weights before re-quantization (`{q['file']}`) vs the shipped MXFP4: the "
            f"same final answer on {q['same_final']} of {q['n']} tasks, the same whole reply on "
            f"{q['same_reply']} of {q['n']}.",
        ]
    lines += ["", *[f"- {s}" for s in rec["notes"]], ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS[:4]))
    ap.add_argument("--n", type=int, default=5, help="held-out problems per operation")
    ap.add_argument("--effort", nargs="+", choices=EFFORTS, default=list(EFFORTS))
    ap.add_argument("--max-new-tokens", type=int, default=400)
    ap.add_argument("--lora-steps", type=int, default=0, help="train lora-packed this many steps")
    ap.add_argument("--reasoner-dir", help="a reasoner checkpoint folder (default: shipped)")
    ap.add_argument(
        "--float-weights", help="the reasoner's float32 weights (posttrain --save-float)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/pilot.*")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    problems = heldout_problems(seed=0, n=args.n)
    runs, replies, notes = {}, {}, []
    for name in args.models:
        if name == "lora-packed" and args.lora_steps <= 0:
            notes.append("lora-packed: not run (give --lora-steps N to train it here)")
            continue
        if name == "reasoner-float32" and not args.float_weights:
            notes.append("reasoner-float32: not run (give --float-weights FILE)")
            continue
        torch.manual_seed(0)
        model, tok = load(name, args.lora_steps, args.float_weights, args.reasoner_dir)
        report = evaluate(
            model,
            tok,
            problems,
            args.effort,
            temperature=0.0,
            seed=0,
            max_new_tokens=args.max_new_tokens,
        )
        print(f"## {name}\n{report.table()}\n", flush=True)
        runs[name] = report.to_json()
        replies[name] = [(r.final, r.analysis_tokens, r.final_tokens) for r in report.results]
        del model
    if "reasoner-mxfp4" in replies and "reasoner-dequantized" in replies:
        a, b = replies["reasoner-mxfp4"], replies["reasoner-dequantized"]
        agreement = {
            "n": len(a),
            "same_final": sum(x[0] == y[0] for x, y in zip(a, b)),
            "same_reply": sum(x == y for x, y in zip(a, b)),
        }
        print(f"MXFP4 vs dequantized: {agreement}")
    else:
        agreement = None
    if "reasoner-float32" in replies and "reasoner-mxfp4" in replies:
        a, b = replies["reasoner-float32"], replies["reasoner-mxfp4"]
        rec_float = {
            "n": len(a),
            "same_final": sum(x[0] == y[0] for x, y in zip(a, b)),
            "same_reply": sum(x == y for x, y in zip(a, b)),
            "file": args.float_weights,
        }
        print(f"float32 vs re-quantized MXFP4: {rec_float}")
    else:
        rec_float = None
        notes.append(
            "The reasoner's float32 weights (before re-quantization to MXFP4) are not shipped; "
            "re-quantized vs float32 is measured at training time: assets/reasoner/TRAINING.md."
        )
    path, looked = gpt_oss_20b_dir()
    if path is None:
        msg = "skipped: no gpt-oss-20b checkpoint at " + ", ".join(looked)
        print(msg)
        notes.append(f"gpt-oss-20b: {msg}")
    else:
        from gptoss_edu.__main__ import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(str(path))
        report = evaluate(
            model, tok, problems, args.effort, temperature=0.0, seed=0,
            max_new_tokens=args.max_new_tokens,
        )  # fmt: skip
        print(f"## gpt-oss-20b ({path})\n{report.table()}\n")
        runs["gpt-oss-20b"] = report.to_json()
    rec = {
        "command": (f"nice -n {os.nice(0)} " if os.nice(0) else "")
        + ".venv/bin/python benchmarks/pilot.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__}, {args.threads} threads; load average "
        f"{os.getloadavg()[0]:.1f} at the end",
        "reasoner": args.reasoner_dir or str(ge.tiny.tiny_path("reasoner")),
        "reasoner_sha256": hashlib.sha256(
            (
                Path(args.reasoner_dir or ge.tiny.tiny_path("reasoner")) / "model.safetensors"
            ).read_bytes()
        ).hexdigest(),
        "n_per_op": args.n,
        "n_problems": len(problems),
        "max_new_tokens": args.max_new_tokens,
        "runs": runs,
        "notes": notes,
    }
    if agreement:
        rec["agreement"] = agreement
    if rec_float:
        rec["requantization"] = rec_float
    if args.write:
        OUT.mkdir(exist_ok=True)
        (OUT / "pilot.json").write_text(json.dumps(rec, indent=1) + "\n")
        (OUT / "pilot.md").write_text(page(rec))
        print(f"wrote {OUT / 'pilot.md'} and pilot.json")
    else:
        print(page(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
