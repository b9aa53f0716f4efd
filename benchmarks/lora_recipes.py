"""LoRA with the MXFP4 experts frozen and packed, against the common recipes, side by side on the
tiny model (chapter 16; issue 13, chapter 16 item 1).

    nice -n 19 .venv/bin/python benchmarks/lora_recipes.py --write                 # from the base
    nice -n 19 .venv/bin/python benchmarks/lora_recipes.py --from reasoner --write  # from ch. 15

Each recipe of gptoss_edu.posttrain.lora.RECIPES runs in its own subprocess (so that peak RSS
figures do not mix): load the model with the experts the recipe wants, make it trainable
(peft adapters, or every weight), fine-tune it with gptoss_edu.posttrain.reasoner.sft on the
chapter-15 conversations (same data, seed, steps and learning rate for every recipe), then
measure on the held-out split: the masked SFT loss (teacher forcing, high effort) before and
after, and greedy accuracy at `--effort` (high by default) with gptoss_edu.evaluate. Counted in the child:
trainable parameters, bytes of weights held (parameters + packed bytes), gradient bytes,
AdamW state bytes (lora.optimizer_state_bytes), RSS after loading, peak RSS (ru_maxrss) at the
end of training. Writes benchmarks/results/lora_recipes.md (+ .json) with --write
(lora_recipes_reasoner.* with --from reasoner); the 20b and 120b arithmetic of
lora.recipe_arithmetic is printed on the same page, and the cost of the autograd check added to
MXFP4Weight.linear on the inference path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 2**20


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MiB


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args) -> dict:
    """One recipe, start to finish, in this process."""
    import torch

    torch.set_num_threads(args.threads)
    from gptoss_edu.evaluate import evaluate
    from gptoss_edu.posttrain import lora
    from gptoss_edu.posttrain.data import heldout_problems

    rss_imports = _rss_mib()
    t0 = time.perf_counter()
    model, tok = lora.load_for(args.child, start=args.start)
    lora.apply_recipe(model, args.child, r=args.r, alpha=args.alpha, seed=args.seed)
    tok = lora.task_tokenizer(tok)
    rss_loaded = _rss_mib()
    summary = lora.memory_summary(model)
    problems = heldout_problems(seed=args.seed, n=args.n_eval)  # never trained on (same seed)
    loss_before = lora.heldout_loss(model, tok, problems, effort="high")
    t1 = time.perf_counter()
    hist = lora.train(
        model, tok, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    train_s = time.perf_counter() - t1
    peak_train = _peak_mib()
    summary.update(lora.memory_summary(model))  # grad_bytes now that gradients exist
    summary["optimizer_bytes"] = lora.optimizer_state_bytes(model)
    loss_after = lora.heldout_loss(model, tok, problems, effort="high")
    t2 = time.perf_counter()
    report = evaluate(
        model,
        tok,
        problems,
        efforts=(args.effort,),
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    eval_s = time.perf_counter() - t2
    total = report.row("all", args.effort)
    k = len(hist.loss) // 5 or 1
    return {
        "recipe": args.child,
        "description": lora.get_recipe(args.child).description,
        **summary,
        "rss_after_imports_mib": round(rss_imports, 1),
        "rss_after_load_mib": round(rss_loaded, 1),
        "peak_rss_train_mib": round(peak_train, 1),
        "train_seconds": round(train_s, 1),
        "seconds_per_step": round(train_s / args.steps, 2),
        "train_loss_first": round(sum(hist.loss[:k]) / k, 4),
        "train_loss_last": round(sum(hist.loss[-k:]) / k, 4),
        "train_loss_window": k,
        "heldout_loss_before": round(loss_before, 4),
        "heldout_loss_after": round(loss_after, 4),
        "accuracy": total.accuracy,
        "correct": total.correct,
        "n_eval": total.n,
        "ci": [total.ci_low, total.ci_high],
        "per_op": {r.group: [r.correct, r.n] for r in report.rows if r.group != "all"},
        "with_final": sum(t.final is not None for t in report.results),
        "mean_analysis_tokens": round(total.mean_analysis_tokens, 1),
        "eval_seconds": round(eval_s, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }


def linear_overhead() -> dict:
    """What the autograd check added to MXFP4Weight.linear costs on the inference path: the check
    alone (`x.requires_grad and torch.is_grad_enabled()`) vs one call of the method, for one
    token on the tiny model's block-0 mlp1_weight (256 x 128); best of several rounds, in
    microseconds. (Timing the method with and without the check side by side is dominated by
    scheduling noise on a loaded machine; the check's own cost is not.)"""
    import timeit

    import torch

    import gptoss_edu as ge

    model, _ = ge.load_tiny(experts="mxfp4")
    w = model.block[0].mlp.mlp1_weight  # (8, 256, 128) packed
    x = torch.randn(1, w.shape[2])
    with torch.no_grad():
        w.linear(0, x)  # compile / warm up
        check = min(
            timeit.timeit(lambda: x.requires_grad and torch.is_grad_enabled(), number=20000) / 20000
            for _ in range(7)
        )
        call = min(timeit.timeit(lambda: w.linear(0, x), number=20) / 20 for _ in range(5))
    return {"check_us": round(check * 1e6, 3), "call_us": round(call * 1e6, 1)}


def _mib(b) -> str:
    return f"{b / MiB:.2f}"


def page(record: dict) -> str:
    from gptoss_edu.config import ModelConfig
    from gptoss_edu.posttrain import lora

    a = record["args"]
    rows = record["recipes"]
    arith = {c.recipe: c for c in lora.recipe_arithmetic(ModelConfig.tiny(), a["r"], 4)}
    t1 = [
        "| recipe | trainable parameters | weights held MiB (of which packed MXFP4) | "
        "gradients MiB | AdamW state MiB | RSS after load MiB | peak RSS training MiB | "
        "s/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    t2 = [
        "| recipe | train loss, first -> last steps | held-out loss before -> after | "
        f"accuracy at {a['effort']} effort (95% CI) | per operation | replies with a final |",
        "|---|---|---|---|---|---:|",
    ]
    checks = []
    for r in rows:
        t1.append(
            f"| {r['recipe']} | {r['trainable']:,} | {_mib(r['weight_bytes'])} "
            f"({_mib(r['packed_bytes'])}) | {_mib(r['grad_bytes'])} | "
            f"{_mib(r['optimizer_bytes'])} | {r['rss_after_load_mib']:.0f} | "
            f"{r['peak_rss_train_mib']:.0f} | {r['seconds_per_step']:.2f} |"
        )
        ops = ", ".join(f"{op} {c}/{n}" for op, (c, n) in r["per_op"].items())
        t2.append(
            f"| {r['recipe']} | {r['train_loss_first']:.3f} -> {r['train_loss_last']:.3f} | "
            f"{r['heldout_loss_before']:.3f} -> {r['heldout_loss_after']:.3f} | "
            f"{r['correct']}/{r['n_eval']} = {r['accuracy']:.0%} "
            f"[{r['ci'][0]:.0%}, {r['ci'][1]:.0%}] | {ops} | {r['with_final']}/{r['n_eval']} |"
        )
        c = arith[r["recipe"]]
        checks.append(
            f"{r['recipe']}: weights {c.weight_bytes:,} B computed / {r['weight_bytes']:,} B "
            f"counted; AdamW {c.optimizer_bytes:,} / {r['optimizer_bytes']:,} B "
            f"(+ {r['optimizer_bytes'] - c.optimizer_bytes} B of `step` counters)"
        )
    lp = {r["recipe"]: r for r in rows}
    ratio = ""
    if "lora-packed" in lp and "lora-dequantized" in lp:
        p, d = lp["lora-packed"], lp["lora-dequantized"]
        ratio = (
            f"On the tiny model, lora-packed holds {p['weight_bytes'] / d['weight_bytes']:.2f}x "
            f"the weight bytes of lora-dequantized and trains {p['trainable'] / d['trainable']:.2f}x"
            " its parameters. "
        )
    start = (
        "the shipped tiny model (`ge.load_tiny()`, pretrained on the Python standard library; it "
        "has never seen the task)"
        if a["start"] == "base"
        else 'the chapter-15 reasoner (`ge.load_tiny("reasoner")`)'
    )
    oh = record["linear_overhead_us"]
    note = f"\n{record['note']}\n" if record.get("note") else ""
    walls = "; ".join(
        f"{r['recipe']} {r['wall_seconds']:.0f} (training {r['train_seconds']:.0f}, "
        f"evaluation {r['eval_seconds']:.0f})"
        for r in rows
    )
    return f"""# LoRA with packed MXFP4 experts vs the common recipes (tiny model, from the {a["start"]})

Date {record["date"]}. Machine: {record["machine"]}. Load average {record["load_start"]:.1f} at the start, {record["load_end"]:.1f} at the end: the 2 cores are shared with other jobs (a model training), so times are indicative only; the memory and parameter counts are exact.

Command: `{record["command"]}` ({record["wall_seconds"]:.0f} s wall in all)
{note}
Every recipe starts from {start} and is fine-tuned with `gptoss_edu.posttrain.reasoner.sft` on the chapter-15 conversations: {a["steps"]} AdamW steps of {a["batch_size"]} conversations, lr {a["lr"]} (warm-up then cosine), seed {a["seed"]}, the same batches for every recipe; LoRA rank {a["r"]}, alpha {a["alpha"]} (peft {record["peft"]}). The dequantized recipes decode the experts to float32 (bf16 training is slow on this CPU; the 20b/120b arithmetic below uses bf16). Each recipe runs in its own process (`--child`), so each peak RSS is its own; the RSS includes Python, torch and numba (about {rows[0]["rss_after_imports_mib"]:.0f} MiB after the imports).

{chr(10).join(t1)}

Held-out problems ({a["n_eval"]} per operation, none in the training split); loss = the masked SFT loss per generated token at high effort (teacher forcing); accuracy = greedy (temperature 0) replies at {a["effort"]} effort through `gptoss_edu.evaluate`, at most {a["max_new_tokens"]} new tokens:

{chr(10).join(t2)}

Wall seconds per recipe (its own process: load, train, evaluate): {walls}.

{ratio}The counts above are the tensors themselves (`lora.memory_summary`, `lora.optimizer_state_bytes`); `lora.recipe_arithmetic(ModelConfig.tiny(), r={a["r"]}, float_bytes=4)` computes the same from the config alone:

{chr(10).join("- " + c for c in checks)}

The same arithmetic for the real models (`lora.arithmetic_table`: packed experts 4.25 bits per weight, every other weight bf16, gradients float32, AdamW two float32 moments per trainable parameter; activations not counted):

{lora.arithmetic_table(ModelConfig.gpt_oss_20b(), a["r"], "gpt-oss-20b")}

{lora.arithmetic_table(ModelConfig.gpt_oss_120b(), a["r"], "gpt-oss-120b")}

Inference is not changed by the gradient path: `MXFP4Weight.linear` takes `PackedLinear` only when its input requires a gradient and grad mode is on. The check costs {oh["check_us"]:.3f} us per call (best of 7 rounds of 20,000), one call of the method {oh["call_us"]:.0f} us (one token, the tiny model's block-0 `mlp1_weight`, 256 x 128, numba back end, best of 5 rounds of 20, under `torch.no_grad()`): {oh["check_us"] / oh["call_us"]:.2%} of a call, on this loaded machine.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=None, help="default: all of lora.RECIPES")
    ap.add_argument("--from", dest="start", default="base", choices=["base", "reasoner"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--n-eval", type=int, default=5, help="held-out problems per operation")
    ap.add_argument("--effort", default="high", choices=["low", "medium", "high"])
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/lora_recipes.*")
    ap.add_argument(
        "--workdir",
        help="keep each recipe's result here and reuse it on a rerun with the same settings",
    )
    ap.add_argument("--note", help="a sentence for the page (how this run was made)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        Path(args.out).write_text(json.dumps(child(args)))
        return 0

    import peft
    import torch

    from gptoss_edu.posttrain import lora

    recipes = args.recipes or list(lora.RECIPES)
    for name in recipes:
        lora.get_recipe(name)  # a clear error for an unknown name, before any work
    passed = list(argv if argv is not None else sys.argv[1:])
    common = [a for a in passed if a not in ("--write",)]
    if args.workdir:  # the children do not need it
        i = common.index("--workdir") if "--workdir" in common else None
        common = (
            common[:i] + common[i + 2 :]
            if i is not None
            else [a for a in common if not a.startswith("--workdir=")]
        )
    load_start, t0 = os.getloadavg()[0], time.perf_counter()
    overhead = linear_overhead()
    print(f"MXFP4Weight.linear on the inference path, microseconds: {overhead}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in recipes:
            out = work / f"{name}.json"
            # a child's result is kept only with the settings it ran with (--workdir: resume)
            settings = work / f"{name}.args.json"
            mine = {
                k: v
                for k, v in vars(args).items()
                if k not in ("recipes", "write", "workdir", "note")
            }
            if out.exists() and settings.exists() and json.loads(settings.read_text()) == mine:
                print(f"--- {name}: reusing {out}", flush=True)
            else:
                cmd = [sys.executable, __file__, *common, "--child", name, "--out", str(out)]
                print(f"--- {name}", flush=True)
                subprocess.run(cmd, check=True)
                settings.write_text(json.dumps(mine))
            results.append(json.loads(out.read_text()))
            r = results[-1]
            print(
                f"{name}: {r['trainable']:,} trainable, {r['seconds_per_step']} s/step, "
                f"held-out loss {r['heldout_loss_before']} -> {r['heldout_loss_after']}, "
                f"{r['correct']}/{r['n_eval']} correct, peak RSS {r['peak_rss_train_mib']} MiB",
                flush=True,
            )
    record = {
        "command": (f"nice -n {os.nice(0)} " if os.nice(0) else "")
        + ".venv/bin/python benchmarks/lora_recipes.py "
        + " ".join(passed),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__}, {args.threads} threads",
        "peft": peft.__version__,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "wall_seconds": time.perf_counter() - t0,
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "out", "write", "note")},
        "recipes": results,
        "linear_overhead_us": overhead,
        "note": args.note,
    }
    text = page(record)
    print(text)
    if args.write:
        out = ROOT / "benchmarks" / "results"
        stem = "lora_recipes" if args.start == "base" else f"lora_recipes_{args.start}"
        (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
        (out / f"{stem}.md").write_text(text)
        print(f"wrote {out / stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
