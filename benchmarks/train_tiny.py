"""Training throughput and the shipped tiny model's held-out loss (chapter 14).

    .venv/bin/python benchmarks/train_tiny.py            # prints a Markdown report
    .venv/bin/python benchmarks/train_tiny.py --write    # also writes benchmarks/results/train_tiny.md

1. Throughput: tokens/s of full training steps (forward, backward, AdamW) of ModelConfig.tiny()
   at the shipped batch shape, with 1 and 2 torch threads, side by side in this process.
2. Held-out loss (nats/token) on the held-out standard-library files recorded in
   assets/tiny/training.json, all measured here on the same split and tokens: a unigram and a
   bigram model fit on the training files, and the shipped model as loaded by `load_tiny()`
   (MXFP4 experts) and with its experts dequantized.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import sysconfig
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu import train as tr  # noqa: E402
from gptoss_edu.tiny import TINY_DIR  # noqa: E402

DATE = "2026-11-23"


def throughput(train_ids, threads: int, batch: int, seq: int, steps: int = 6) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ge.GptOss(ge.ModelConfig.tiny())
    cfg = tr.TrainConfig(batch_size=batch, seq_len=seq)
    opt = tr.make_optimizer(model, cfg)
    times = []
    for step in range(steps + 1):
        x, y = tr.get_batch(train_ids, batch, seq, 0, step)
        t0 = time.perf_counter()
        total, *_ = tr.compute_loss(model, x, y, cfg)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])  # the first step warms up
    return batch * seq / times[len(times) // 2]  # median step


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    report = json.loads((TINY_DIR / "training.json").read_text())
    if sys.version.split()[0] != report["python"]:
        print(f"note: the model was trained on Python {report['python']}'s stdlib; this is "
              f"{sys.version.split()[0]}, so the held-out files differ a little")  # fmt: skip
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    model, tok = ge.load_tiny()
    dense, _ = ge.load_tiny(experts="dequantized")
    held = set(report["heldout_files"])
    docs = tr.read_documents([stdlib / n for n in report["corpus_files"]])
    train_docs = [d for d in docs if d[0] not in held]
    held_docs = [d for d in docs if d[0] in held]
    t0 = time.perf_counter()
    train_ids = tr.encode_documents(tok, train_docs)
    held_ids = tr.encode_documents(tok, held_docs)
    encode_s = time.perf_counter() - t0
    base = tr.ngram_baselines(train_ids, held_ids, 4096)
    torch.set_num_threads(2)
    seq = report["train_config"]["seq_len"]
    loss_mx, _ = tr.evaluate(model, held_ids, seq)
    loss_dense, load = tr.evaluate(dense, held_ids, seq)

    batch = report["train_config"]["batch_size"]
    tps = {n: throughput(train_ids, n, batch, seq) for n in (1, 2)}

    load1, load5, _ = os.getloadavg()
    lines = [
        "# Training the tiny gpt-oss on a CPU",
        "",
        f"Date {DATE}. Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} logical CPUs, Python {platform.python_version()}, torch "
        f"{torch.__version__}; load average {load1:.1f} / {load5:.1f} (1 / 5 min) during the run "
        "(a shared machine: the throughput is a lower bound).",
        "",
        "Command: `.venv/bin/python benchmarks/train_tiny.py --write`",
        "",
        f"## Training throughput (ModelConfig.tiny(), batch {batch} x {seq} tokens, AdamW step)",
        "",
        "| torch threads | tokens/s | seconds per step |",
        "|---:|---:|---:|",
    ]
    for n, v in tps.items():
        lines.append(f"| {n} | {v:,.0f} | {batch * seq / v:.2f} |")
    lines += [
        "",
        f"The shipped model's last training run (`{report['command']}`) averaged "
        f"{report['tokens_per_s']:,.0f} tokens/s with {report['threads']} thread(s) and took "
        f"{report['total_seconds']:.0f} s in all (with the tokenizer); training time summed over "
        f"every run that made it (see gptoss_edu/assets/tiny/TRAINING.md): "
        f"{report['train_seconds']:.0f} s.",
        "",
        f"## Held-out loss ({len(held_docs)} held-out stdlib files, {len(held_ids):,} tokens; "
        f"trained on {len(train_ids):,} tokens)",
        "",
        "| model | nats/token | perplexity |",
        "|---|---:|---:|",
        f"| unigram (add-one) | {base['unigram']:.3f} | {math.exp(base['unigram']):,.0f} |",
        f"| bigram (interpolated, lambda {base['bigram_lambda']}) | {base['bigram']:.3f} | "
        f"{math.exp(base['bigram']):,.0f} |",
        f"| tiny gpt-oss, float32 weights before saving (training.json) | "
        f"{report['heldout_loss']:.3f} | {math.exp(report['heldout_loss']):,.0f} |",
        f"| tiny gpt-oss as shipped, experts dequantized | {loss_dense:.3f} | "
        f"{math.exp(loss_dense):,.0f} |",
        f"| tiny gpt-oss as shipped, `load_tiny()` (MXFP4 experts) | {loss_mx:.3f} | "
        f"{math.exp(loss_mx):,.0f} |",
        "",
        "Each model window restarts its context every "
        f"{seq} tokens; the n-gram models see one previous token. The bigram's lambda is chosen "
        "on the held-out set itself, which flatters it.",
        "",
        "Expert load on the held-out text (share of top-2 assignments, uniform = 0.125):",
        "",
        "| layer | " + " | ".join(f"e{e}" for e in range(load.shape[1])) + " |",
        "|---|" + "---:|" * load.shape[1],
    ]
    for i, row in enumerate(load.tolist()):
        lines.append(f"| {i} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    lines += ["", f"(Tokenizing the corpus took {encode_s:.1f} s.)", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        out = ROOT / "benchmarks" / "results" / "train_tiny.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
