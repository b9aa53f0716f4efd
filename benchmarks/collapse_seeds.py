"""Expert collapse without the load-balancing loss, over several seeds (chapter 14).

Chapter 14 trains its small byte-level gpt-oss twice in the notebook (seed 0, with and without
the load-balancing loss) because two runs fit the chapter's two minutes. One run per arm is an
anecdote; this script repeats the same comparison for several seeds (each seed sets both the
initial weights and the batches) and records, per run, the held-out loss, the load-balancing
loss over the last 50 steps, and the expert load per layer on the held-out bytes. The chapter
loads `benchmarks/results/collapse_seeds.json` and plots it.

    .venv/bin/python benchmarks/collapse_seeds.py                 # prints the Markdown report
    .venv/bin/python benchmarks/collapse_seeds.py --write         # also writes results/collapse_seeds.{md,json}
    .venv/bin/python benchmarks/collapse_seeds.py --seeds 0 1 2 3 # more seeds

The settings are chapter 14's (`chapter_setup()` is imported by the chapter's own check, so the
two cannot drift apart silently).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu import train as tr  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def small_config() -> ge.ModelConfig:
    """Chapter 14's live model: 2 layers, hidden 64, 8 experts (top-2), 256 byte values."""
    return ge.ModelConfig.tiny().replace(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=64,
        head_dim=16,
        num_attention_heads=4,
        vocab_size=256,
    )


def run_config(seed: int, aux_loss_coef: float) -> tr.TrainConfig:
    """Chapter 14's training settings, with the batch seed and the aux coefficient varied."""
    return tr.TrainConfig(
        steps=300,
        batch_size=8,
        seq_len=64,
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=15,
        eval_every=100,
        eval_batches=250,
        seed=seed,
        aux_loss_coef=aux_loss_coef,
    )


def chapter_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 60 standard-library files as bytes, split as in chapter 14."""
    docs = tr.read_documents(tr.stdlib_corpus_files()[:60])
    train_docs, held_docs = tr.split_heldout(docs)

    def as_bytes(d):
        return torch.tensor(list(b"".join(t.encode("utf-8") for _, t in d)), dtype=torch.long)

    return as_bytes(train_docs), as_bytes(held_docs)


def load_entropy_bits(load: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of each layer's load (L, E) -> (L,); log2(E) is perfectly balanced."""
    return -(load * load.clamp(min=1e-12).log2()).sum(-1)


def one_run(seed: int, aux: float, train_ids, held_ids) -> dict:
    torch.manual_seed(seed)
    model = ge.GptOss(small_config())
    hist = tr.train(model, train_ids, held_ids, run_config(seed, aux), progress=False)
    loss, load = tr.evaluate(model, held_ids, 64, max_windows=400)  # load: (L, E)
    return {
        "seed": seed,
        "aux_loss_coef": aux,
        "heldout_loss": hist.eval_loss[-1],
        "heldout_loss_400": loss,
        "aux_loss_last50": sum(hist.aux_loss[-50:]) / 50,
        "load": [[round(v, 5) for v in row] for row in load.tolist()],
        "load_entropy_bits": [round(v, 4) for v in load_entropy_bits(load).tolist()],
        "experts_under_2pct": [int((row < 0.02).sum()) for row in load],
        "seconds": hist.seconds,
    }


def report(runs: list[dict], meta: dict) -> str:
    lines = [
        "# Expert collapse without the load-balancing loss, several seeds",
        "",
        f"Date {meta['date']}. Machine: {meta['machine']}; Python {meta['python']}, torch "
        f"{meta['torch']}, {meta['threads']} torch thread(s); load average {meta['load']} at the "
        "start.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "Chapter 14's small byte-level gpt-oss (2 layers, hidden 64, 8 experts, top-2), 300 steps "
        "x 8 x 64 bytes on the first 60 stdlib files; each seed sets the initial weights and the "
        "batches. Load: share of top-2 assignments on the first 400 held-out windows (uniform "
        "0.125); load entropy in bits (3 = balanced).",
        "",
        "| seed | aux loss | held-out loss | aux loss, last 50 steps | load entropy L0 / L1 "
        "(bits) | experts under 2% L0 / L1 | busiest share L0 / L1 |",
        "|---:|---|---:|---:|---|---|---|",
    ]
    for r in runs:
        busiest = " / ".join(f"{max(row):.2f}" for row in r["load"])
        lines.append(
            f"| {r['seed']} | {'on (0.01)' if r['aux_loss_coef'] else 'off'} | "
            f"{r['heldout_loss']:.3f} | {r['aux_loss_last50']:.2f} | "
            f"{' / '.join(f'{v:.2f}' for v in r['load_entropy_bits'])} | "
            f"{' / '.join(str(v) for v in r['experts_under_2pct'])} | {busiest} |"
        )
    for aux in (True, False):
        sel = [r for r in runs if bool(r["aux_loss_coef"]) == aux]
        ent = [v for r in sel for v in r["load_entropy_bits"]]
        lines.append("")
        lines.append(
            f"{'With' if aux else 'Without'} the aux loss, over {len(sel)} seeds: load entropy "
            f"{min(ent):.2f} to {max(ent):.2f} bits; aux loss (last 50 steps) "
            f"{min(r['aux_loss_last50'] for r in sel):.2f} to "
            f"{max(r['aux_loss_last50'] for r in sel):.2f}; held-out loss "
            f"{min(r['heldout_loss'] for r in sel):.3f} to "
            f"{max(r['heldout_loss'] for r in sel):.3f}."
        )
    lines += ["", f"Total wall time {meta['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the chapter uses 1)")
    ap.add_argument(
        "--write", action="store_true", help="write benchmarks/results/collapse_seeds.*"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()[:2])
    train_ids, held_ids = chapter_data()
    runs = []
    for seed in args.seeds:
        for aux in (0.01, 0.0):
            runs.append(one_run(seed, aux, train_ids, held_ids))
            print(f"seed {seed} aux {aux}: {runs[-1]['heldout_loss']:.3f}", file=sys.stderr)
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": args.threads,
        "load": load,
        "command": "python benchmarks/collapse_seeds.py "
        + " ".join(a for a in (argv if argv is not None else sys.argv[1:])),
        "seconds": time.perf_counter() - t0,
    }
    text = report(runs, meta)
    print(text)
    if args.write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "collapse_seeds.md").write_text(text)
        payload = {"meta": meta, "runs": runs, "uniform_bits": math.log2(8)}
        (RESULTS / "collapse_seeds.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
