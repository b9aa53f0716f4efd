"""Workers for tests/test_distributed.py: spawned processes import this module by name
(spawn cannot pickle functions defined in a test file's closure)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_block(experts: str, seed: int = 0):
    """A small MoE block with random weights, identical in every process (seeded)."""
    from gptoss_edu.config import ModelConfig
    from gptoss_edu.model.moe import MLPBlock

    cfg = ModelConfig.tiny()
    torch.manual_seed(seed)
    block = MLPBlock(cfg, experts=experts, backend="torch" if experts == "mxfp4" else "auto")
    with torch.no_grad():
        block.gate.weight.normal_(std=0.5)
        block.gate.bias.normal_(std=0.5)
        block.mlp1_bias.normal_(std=0.1)
        block.mlp2_bias.normal_(std=0.1)
        block.norm.scale.uniform_(0.5, 1.5)
    return block.eval()


def ep_layer(rank: int, world: int, port: int, out_dir: str, experts: str, T: int, skew: bool):
    """One EP layer on rank `rank`: writes its output and its stats to out_dir."""
    import torch.distributed as dist

    from gptoss_edu import distributed as ep

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        block = make_block(experts)
        torch.manual_seed(1)
        x = torch.randn(T, block.norm.scale.shape[0])
        if skew:  # every token prefers expert 0: all assignments land on rank 0
            with torch.no_grad():
                block.gate.bias.zero_()
                block.gate.bias[: block.experts_per_token] = 100.0
        ref = block(x) if rank == 0 else None
        layer = ep.ExpertParallelMLP(block, rank, world)
        ep._keep_experts(block, layer.local)
        with torch.no_grad():
            y = layer(x)
        s = layer.stats
        # independent count of what this rank must send: its tokens' assignments owned elsewhere
        from gptoss_edu.model.moe import route

        with torch.no_grad():
            experts, _ = route(block.gate(block.norm(x)), block.experts_per_token)
        mine = ep.token_range(T, rank, world)
        owners = experts[mine.start : mine.stop] // (block.num_experts // world)
        expected_remote = int((owners != rank).sum())
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "y": y.tolist(),
                    "ref": ref.tolist() if ref is not None else None,
                    "expert_rows": s.expert_rows,
                    "expert_calls": s.expert_calls,
                    "sent_rows": s.sent_rows,
                    "expected_remote": expected_remote,
                    "sent_bytes": s.sent_bytes,
                    "per_expert_rows": {str(k): v for k, v in s.per_expert_rows.items()},
                    "local": [layer.local.start, layer.local.stop],
                }
            )
        )
    finally:
        dist.destroy_process_group()
