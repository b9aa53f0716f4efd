"""Expert parallelism on this CPU (chapter 17): where one MoE layer's time goes with N processes.

One MoE layer of gpt-oss-20b's shape (hidden 2880, intermediate 2880, 32 experts, top-4, MXFP4
experts with random bytes: the timing does not depend on the values), spread over N gloo
processes with `gptoss_edu.distributed.ExpertParallelMLP`. Each rank builds only its own experts.
For T tokens per step (T = 1 is a decode step, T = 64 a short prefill) it reports the time in
dispatch/combine/all_gather against the time in the experts, and the bytes each token sends per
layer, measured by the layer's counters and by the formula of gptoss_edu/distributed.py.

    python benchmarks/expert_parallel.py            # print the table
    python benchmarks/expert_parallel.py --write    # and write benchmarks/results/expert_parallel.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

H, I, E, K = 2880, 2880, 32, 4  # gpt-oss-20b's MoE layer


def _block(rank: int, world: int):
    from gptoss_edu.config import ModelConfig
    from gptoss_edu.distributed import ExpertParallelMLP, expert_range
    from gptoss_edu.model.moe import MLPBlock

    cfg = ModelConfig.gpt_oss_20b()
    local = expert_range(E, rank, world)
    # Build on the meta device (nothing allocated), then give this rank's experts real bytes.
    with torch.device("meta"):
        block = MLPBlock(cfg, experts="mxfp4")
    g = torch.Generator().manual_seed(0)
    n = len(local)
    block.norm.scale = torch.nn.Parameter(torch.ones(H))
    block.gate = torch.nn.Linear(H, E)
    torch.nn.init.normal_(block.gate.weight, std=0.02, generator=g)
    torch.nn.init.zeros_(block.gate.bias)
    for name, N, Kin in (("mlp1", 2 * I, H), ("mlp2", H, I)):
        w = getattr(block, f"{name}_weight")
        w.blocks = torch.randint(0, 256, (n, N, Kin // 32, 16), dtype=torch.uint8, generator=g)
        w.scales = torch.randint(118, 124, (n, N, Kin // 32), dtype=torch.uint8, generator=g)
        setattr(block, f"{name}_bias", torch.nn.Parameter(torch.zeros(n, N)))
    layer = ExpertParallelMLP(block, rank, world)
    return layer


def worker(rank: int, world: int, port: int, out: str, tokens: list[int], repeats: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    layer = _block(rank, world)
    results = []
    with torch.no_grad():
        for T in tokens:
            x = torch.randn(T, H, generator=torch.Generator().manual_seed(T))
            layer(x)  # warm-up: JIT compile, first-touch of the weights
            dist.barrier()
            from gptoss_edu.distributed import EPStats

            layer.stats = EPStats()
            t0 = time.perf_counter()
            for _ in range(repeats):
                layer(x)
            wall = (time.perf_counter() - t0) / repeats
            s = layer.stats
            results.append(
                {
                    "T": T,
                    "wall": wall,
                    "exchange": s.seconds_exchange / repeats,
                    "compute": s.seconds_compute / repeats,
                    "sent_rows": s.sent_rows / repeats,
                    "sent_bytes": s.sent_bytes / repeats,
                    "expert_rows": s.expert_rows / repeats,
                }
            )
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def run(world: int, tokens: list[int], repeats: int) -> list[list[dict]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(worker, args=(world, port, out, tokens, repeats), nprocs=world, join=True)
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    for world in args.worlds:
        per_rank = run(world, args.tokens, args.repeats)
        for i, T in enumerate(args.tokens):
            rs = [r[i] for r in per_rank]
            sent = sum(r["sent_bytes"] for r in rs)
            remote = sum(r["sent_rows"] for r in rs)
            # the formula: each remote assignment goes out as a row + an 8-byte id, and comes
            # back as a row; for uniform routing a share (N-1)/N of the T*K assignments is remote
            formula_measured_routing = remote * (2 * H * 4 + 8)
            formula_uniform = (world - 1) / world * T * K * (2 * H * 4 + 8)
            gather = world * (world - 1) * -(-T // world) * H * 4  # padded slices
            rows.append(
                {
                    "world": world,
                    "T": T,
                    "wall_ms": 1e3 * max(r["wall"] for r in rs),
                    "exchange_ms": 1e3 * max(r["exchange"] for r in rs),
                    "compute_ms": 1e3 * max(r["compute"] for r in rs),
                    "bytes_per_token": sent / T,
                    "formula_per_token": formula_measured_routing / T,
                    "uniform_per_token": formula_uniform / T,
                    "gather_per_token": gather / T,
                    "rows_per_rank": [int(r["expert_rows"]) for r in rs],
                }
            )
            print(rows[-1], flush=True)

    load = os.getloadavg()
    lines = [
        "# Expert parallelism on a CPU (gloo)",
        "",
        f"Date {datetime.date.today()}. Machine: {platform.machine()}, {os.cpu_count()} logical "
        f"CPUs, Python {platform.python_version()}, torch {torch.__version__}; load average "
        f"{load[0]:.1f} / {load[1]:.1f} (1 / 5 min) at the end of the run. One torch thread per "
        "process; with more processes than cores the processes take turns, so wall times "
        "above 2 processes measure the machine, not the method.",
        "",
        f"Command: `python benchmarks/expert_parallel.py --write` (repeats {args.repeats})",
        "",
        "One MoE layer of gpt-oss-20b's shape (H = 2880, 32 MXFP4 experts, top-4), random "
        "bytes, numba back end. Times are the slowest rank's, per layer call; bytes are what "
        "all ranks send to other ranks in dispatch + combine, per token (the all_gather that "
        "gives every rank the whole output again is listed separately).",
        "",
        "| processes | tokens | wall ms | exchange ms | experts ms | bytes/token measured "
        "| formula (this routing) | formula (uniform) | all_gather bytes/token | rows per rank |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['T']} | {r['wall_ms']:.1f} | {r['exchange_ms']:.1f} | "
            f"{r['compute_ms']:.1f} | {r['bytes_per_token']:,.0f} | "
            f"{r['formula_per_token']:,.0f} | {r['uniform_per_token']:,.0f} | "
            f"{r['gather_per_token']:,.0f} | {r['rows_per_rank']} |"
        )
    lines += [
        "",
        '"Formula (this routing)" applies the formula to the remote assignments the layer '
        "counted (tests/test_distributed.py checks that count against an independent routing "
        "of the same tokens); the uniform-routing formula (N-1)/N x T x k x (2 x 4H + 8) "
        "differs from it by how unevenly the router spread the tokens. On 2 cores, 4 processes "
        "take turns (and share one memory bus), so the times say where time goes, not how fast "
        "expert parallelism can be.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (HERE / "results" / "expert_parallel.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
