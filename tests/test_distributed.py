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
    ep.spawnable_main()  # pytest-xdist's worker __main__ has no __spec__
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
    for r in res:  # the rows a rank sent are exactly its tokens' assignments owned elsewhere
        assert r["sent_rows"] == r["expected_remote"]
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


def _cli(*args, torchrun_n=None):
    import subprocess
    import sys
    from pathlib import Path

    gen = ["-m", "gptoss_edu", "generate", "--tiny", "--prompt", "def ", "--max-new-tokens", "12"]
    gen += ["--temperature", "0", *args]
    if torchrun_n is None:
        cmd = [sys.executable, *gen]
    else:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd = [*torchrun, f"--nproc-per-node={torchrun_n}", *gen]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=root)


@pytest.mark.slow
def test_torchrun_cli_prints_what_one_process_prints():
    plain = _cli()
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("def ") and len(plain.stdout) > len("def ")
    for n in (1, 2, 4):
        ep_run = _cli("--expert-parallel", torchrun_n=n)
        assert ep_run.returncode == 0, ep_run.stderr[-2000:]
        assert ep_run.stdout == plain.stdout, f"{n} processes"  # once, from rank 0


@pytest.mark.slow
def test_cli_expert_parallel_errors():
    no_torchrun = _cli("--expert-parallel")
    assert no_torchrun.returncode == 2
    assert "torchrun" in no_torchrun.stderr and "Traceback" not in no_torchrun.stderr
    three = _cli("--expert-parallel", torchrun_n=3)  # 8 experts over 3 processes
    assert three.returncode != 0
    assert "num_experts = 8 is not divisible by the number of processes 3" in three.stderr


def test_shard_keeps_views_of_own_experts_only(tmp_path):
    """Packed experts stay views of the mapped checkpoint: a rank's weights point at its own
    experts' bytes only (the other experts' pages are never read)."""
    import gptoss_edu as ge

    for rank, world in ((0, 2), (1, 2), (3, 4)):
        model, _ = ge.load_tiny()
        mlp = model.block[1].mlp
        full = mlp.mlp1_weight.blocks
        base, storage, per_expert = (
            full.data_ptr(),
            full.untyped_storage().data_ptr(),
            full[0].numel(),
        )
        local = ep.expert_range(full.shape[0], rank, world)
        ep._keep_experts(mlp, local)
        kept = mlp.mlp1_weight.blocks
        assert kept.untyped_storage().data_ptr() == storage  # a view, not a copy
        assert kept.data_ptr() == base + local.start * per_expert  # starting at its first expert
        assert kept.shape[0] == len(local)
        assert mlp.mlp1_bias.shape[0] == len(local)
