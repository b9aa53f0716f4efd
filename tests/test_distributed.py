"""Expert parallelism (chapter 17): the EP layer equals the single-process MoE block, and each
rank does only its share, on gloo with spawned processes."""

from __future__ import annotations

import json

import ep_workers
import pytest
import torch
import torch.multiprocessing as mp

from gptoss_edu import distributed as ep
from gptoss_edu.config import ModelConfig


def run_layer(tmp_path, world, experts="mxfp4", T=7, skew=False):
    port = ep_workers.free_port()
    mp.spawn(
        ep_workers.ep_layer,
        args=(world, port, str(tmp_path), experts, T, skew),
        nprocs=world,
        join=True,
    )
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def test_ranges_cover_everything_once():
    for T in range(0, 11):
        for n in (1, 2, 3, 4):
            got = [t for r in range(n) for t in ep.token_range(T, r, n)]
            assert got == list(range(T))
            sizes = [len(ep.token_range(T, r, n)) for r in range(n)]
            assert max(sizes) - min(sizes) <= 1
    assert list(ep.expert_range(32, 1, 4)) == list(range(8, 16))
    with pytest.raises(ValueError, match="not divisible"):
        ep.expert_range(32, 0, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("world", "experts", "T"),
    [(1, "mxfp4", 5), (2, "mxfp4", 7), (4, "mxfp4", 6), (4, "dequantized", 3), (2, "mxfp4", 1)],
)
def test_ep_layer_equals_single_process(tmp_path, world, experts, T):
    # T=1 with 2 ranks and T=3 with 4 ranks: some ranks route no token of their own
    res = run_layer(tmp_path, world, experts, T)
    ref = torch.tensor(res[0]["ref"])
    for r in res:
        torch.testing.assert_close(torch.tensor(r["y"]), ref, rtol=0, atol=0)
    cfg = ModelConfig.tiny()
    k, H = cfg.experts_per_token, cfg.hidden_size
    # every assignment was computed exactly once, by the rank that owns its expert
    assert sum(r["expert_rows"] for r in res) == T * k
    per = cfg.num_experts // world
    for r in res:
        lo, hi = r["local"]
        assert hi - lo == per
        assert all(lo <= int(e) < hi for e in r["per_expert_rows"])
    # bytes: dispatch rows + ids out, combine rows back; one formula, checked per rank
    # bytes: each remote assignment goes out as a row + its expert id and comes back as a row
    assert sum(r["sent_rows"] for r in res) <= T * k
    for r in res:
        assert sum(r["per_expert_rows"].values()) == r["expert_rows"]
    assert sum(r["sent_bytes"] for r in res) == sum(r["sent_rows"] for r in res) * (2 * H * 4 + 8)
    if world == 1:
        assert res[0]["sent_rows"] == 0 and res[0]["sent_bytes"] == 0


@pytest.mark.slow
def test_skewed_routing_lands_on_one_rank(tmp_path):
    # all tokens choose experts 0..k-1, all owned by rank 0: rank 1 computes nothing
    res = run_layer(tmp_path, 2, "mxfp4", T=5, skew=True)
    k = ModelConfig.tiny().experts_per_token
    assert res[0]["expert_rows"] == 5 * k
    assert res[1]["expert_rows"] == 0 and res[1]["expert_calls"] == 0
    torch.testing.assert_close(torch.tensor(res[1]["y"]), torch.tensor(res[0]["ref"]))
