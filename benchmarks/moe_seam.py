"""What the model's seam for speed costs: one gpt-oss-20b-shaped MoE layer with packed MXFP4
experts, run (a) as the model runs it, the textbook per-expert loop of `MLPBlock.mix` calling
`MXFP4Weight.linear` (kernels.mxfp4_linear) once per chosen expert and matrix, and (b) as one
fused `kernels.moe_forward` call of the same back end, which loops over the experts inside
compiled code (chapters 6, 9 and 10; issue 10 item 2).

    nice .venv/bin/python benchmarks/moe_seam.py              # about a minute
    nice .venv/bin/python benchmarks/moe_seam.py --threads 1  # on a machine shared with others

Random weights (MXFP4 codes uniform, N(0, 0.02) router scaled so that routing spreads), bf16
activations, numba back end. Both ways give the same output up to bf16 rounding (checked).
Runs are interleaved, a median of --repeats after a warm-up. Writes benchmarks/results/moe_seam.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import gptoss_edu as ge  # noqa: E402
from gptoss_edu import kernels  # noqa: E402
from gptoss_edu.model.moe import MLPBlock, route  # noqa: E402


def fused(mlp: MLPBlock, x: torch.Tensor) -> torch.Tensor:
    """The same layer through one kernels.moe_forward call (no Python loop over experts)."""
    t = mlp.norm(x)
    r = kernels.route(mlp.gate(t), mlp.experts_per_token, backend="numba")
    w1, w2 = mlp.mlp1_weight, mlp.mlp2_weight
    moe_weights = kernels.MoEWeights(
        w1.blocks, w1.scales, mlp.mlp1_bias, w2.blocks, w2.scales, mlp.mlp2_bias,
        mlp.config.swiglu_limit, mlp.config.swiglu_alpha,
    )  # fmt: skip
    return kernels.moe_forward(t, r, moe_weights, backend="numba")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch and numba threads")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    warnings.simplefilter("ignore")
    load = os.getloadavg()
    torch.manual_seed(0)
    cfg = ge.ModelConfig.gpt_oss_20b()
    mlp = MLPBlock(cfg, experts="mxfp4", backend="numba").to(torch.bfloat16).eval()
    with torch.no_grad():
        mlp.gate.weight.mul_(20)
    kernels.warmup("numba")
    rows = []
    for T in (1, 16, 128):
        x = torch.randn(T, cfg.hidden_size).bfloat16()
        with torch.no_grad():
            a, b = mlp(x).float(), fused(mlp, x).float()
            logits = mlp.gate(mlp.norm(x))
            r = kernels.route(logits, mlp.experts_per_token, backend="numba")
            assert torch.equal(r.experts.long(), route(logits, mlp.experts_per_token)[0])
            same = torch.allclose(a, b, rtol=2e-2, atol=2e-2 * float(b.abs().max()))
            times = {"seam": [], "fused": []}
            for _ in range(args.repeats):
                for name, fn in (("seam", mlp), ("fused", lambda x: fused(mlp, x))):
                    start = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - start)
        seam, fus = statistics.median(times["seam"]), statistics.median(times["fused"])
        rows.append((T, seam, fus, same))
        print(f"T={T:>4}: seam loop {seam * 1e3:8.1f} ms, fused {fus * 1e3:8.1f} ms, same: {same}")

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    threads = "" if args.threads is None else f" --threads {args.threads}"
    lines = [
        "# The seam for speed: the model's per-expert loop vs one fused MoE kernel call",
        "",
        f"Date: {date}. Command: `.venv/bin/python benchmarks/moe_seam.py{threads}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads. Load average at the start: {load[0]:.1f} (1 min), "
        f"{load[1]:.1f} (5 min).",
        "",
        "One gpt-oss-20b MoE layer (32 experts, 4 per token, hidden 2880), MXFP4 experts, bf16, "
        f"numba back end; medians of {args.repeats} interleaved runs after a warm-up.",
        "",
        "| tokens T | model (MLPBlock.mix -> MXFP4Weight.linear) ms | fused kernels.moe_forward ms "
        "| model / fused | same output |",
        "|---:|---:|---:|---:|---|",
    ]
    for T, seam, fus, same in rows:
        lines.append(f"| {T} | {seam * 1e3:.1f} | {fus * 1e3:.1f} | {seam / fus:.2f} | {same} |")
    lines += [
        "",
        "The model's MoE block runs the textbook loop of chapter 6 (each chosen expert once, two "
        "kernel calls per expert) and reaches the packed weights only through "
        "`expert_linear(weight, e, x)`; the fused call is what the block ran before the seam.",
    ]
    (HERE / "results" / "moe_seam.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
