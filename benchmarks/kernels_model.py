"""Prefill and decode of a 2-layer slice of gpt-oss-20b: the numba kernels now vs the old one
(chapter 10; issue 15 goal 2).

    nice .venv/bin/python benchmarks/kernels_model.py              # about 2 minutes
    nice .venv/bin/python benchmarks/kernels_model.py --threads 1  # on a machine shared with others

The model is built in memory, not read from a checkpoint: gpt-oss-20b's shapes (hidden 2880,
32 experts, 4 per token, 64 heads, ...) with 2 of its 24 layers and the vocabulary cut to 4096
rows, so that the embedding and unembedding (1.2 GB of bf16 in the real model) do not hide the
layers. Random weights: MXFP4 experts with random codes and scales 118..121, the rest N(0, 0.02).
The same model runs a 16-token prompt (prefill) and then decodes 4 tokens greedily with the KV
cache, twice: with the current numba kernels (numba_cpu._linear_np chooses a kernel by the
number of tokens of each expert) and with the first numba kernel (a table look-up per weight,
`old_linear_np` of benchmarks/kernels.py) put in its place. Medians of 3 runs after a warm-up.
Writes benchmarks/results/kernels_model.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numba
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from kernels import old_linear_np  # noqa: E402

import gptoss_edu as ge  # noqa: E402
from gptoss_edu.kernels import numba_cpu  # noqa: E402
from gptoss_edu.model.transformer import GptOss  # noqa: E402

PROMPT, DECODE, LAYERS, VOCAB = 16, 4, 2, 4096
RESULTS = HERE / "results" / "kernels_model.md"


def build(cfg) -> GptOss:
    """The model with random weights, built on the meta device and filled (no quantize pass)."""
    with torch.device("meta"):
        model = GptOss(cfg, experts="mxfp4", backend="numba")
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.scale"):
                p.fill_(1.0)
            elif name.endswith(("bias", "sinks")):
                p.zero_()
            else:
                p.normal_(0, 0.02, generator=g)
        for name, b in model.named_buffers():
            if name.endswith("blocks"):
                b.random_(0, 256, generator=g)
            elif name.endswith("scales"):
                b.random_(118, 122, generator=g)
    return model.eval()


def run(model, tokens) -> tuple[float, float, torch.Tensor]:
    """(prefill seconds, decode tokens/s, the generated ids) for one prompt."""
    cache = model.new_cache()
    out = []
    with torch.no_grad():
        t0 = time.perf_counter()
        logits = model(tokens, cache)  # (T, V)
        t1 = time.perf_counter()
        nxt = logits[-1].argmax()
        for _ in range(DECODE):
            out.append(int(nxt))
            logits = model(nxt[None], cache)
            nxt = logits[-1].argmax()
        t2 = time.perf_counter()
    return t1 - t0, DECODE / (t2 - t1), torch.tensor(out)


def measure(model, tokens, reps: int = 3):
    run(model, tokens)  # warm-up: JIT cache load, page faults
    runs = [run(model, tokens) for _ in range(reps)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="numba and torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # the "which back end runs" notice
    load = os.getloadavg()
    cfg = dataclasses.replace(
        ge.ModelConfig.gpt_oss_20b(), num_hidden_layers=LAYERS, vocab_size=VOCAB
    )
    t0 = time.perf_counter()
    model = build(cfg)
    t_build = time.perf_counter() - t0
    tokens = torch.randint(0, VOCAB, (PROMPT,), generator=torch.Generator().manual_seed(1))
    new = measure(model, tokens)
    current = numba_cpu._linear_np
    numba_cpu._linear_np = old_linear_np
    try:
        old = measure(model, tokens)
    finally:
        numba_cpu._linear_np = current
    same = torch.equal(new[2], old[2])
    command = ".venv/bin/python benchmarks/kernels_model.py" + (
        f" --threads {args.threads}" if args.threads else ""
    )
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# A 2-layer slice of gpt-oss-20b: prefill and decode, numba kernels now vs the old one",
        "",
        f"Date: {date}. Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, numba {numba.__version__} with "
        f"{numba.get_num_threads()} threads. Load average at the start: {load[0]:.1f} (1 min), "
        f"{load[1]:.1f} (5 min) on {os.cpu_count()} cores.",
        "",
        f"gpt-oss-20b shapes, {LAYERS} layers, vocabulary cut to {VOCAB} rows, float32 dense "
        f"weights, MXFP4 experts (random, built in {t_build:.0f} s). Prompt of {PROMPT} tokens, "
        f"then {DECODE} greedy tokens with the KV cache; medians of 3 runs after a warm-up.",
        "",
        "| kernels | prefill (16 tokens) s | decode tok/s |",
        "|---|---:|---:|",
        f"| numba now (GEMV / few-tokens / decode + BLAS by tokens per expert) | {new[0]:.2f} "
        f"| {new[1]:.2f} |",
        f"| numba old (table look-up per weight) | {old[0]:.2f} | {old[1]:.2f} |",
        f"| **now vs old** | **{old[0] / new[0]:.1f}x faster** | **{new[1] / old[1]:.1f}x** |",
        "",
        f"Both generate the same tokens: {same}. In a 16-token prompt each of the 32 experts gets "
        "about 16 x 4 / 32 = 2 tokens, so prefill runs mostly the GEMV path.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
