"""Expert-parallel loading (chapter 17, issue 14): a rank reads and checks only its own experts'
bytes (`load_checkpoint(..., expert_range=...)`, `distributed.load_expert_parallel`), and its
model gives the same logits as the whole model, and as the whole model sharded."""

from __future__ import annotations

import pytest
import torch
from independent import write_hf_sharded, write_original

import gptoss_edu as ge
from gptoss_edu import distributed as ep
from gptoss_edu.checkpoint import CheckpointError
from gptoss_edu.checkpoint import safetensors as st

EXPERT_PARTS = ("mlp1_weight.blocks", "mlp1_weight.scales", "mlp1_bias", "mlp2_weight.blocks",
                "mlp2_weight.scales", "mlp2_bias")  # fmt: skip
WRITERS = {"original": write_original, "hf": write_hf_sharded}


def _kept(mlp, part: str) -> torch.Tensor:
    obj = mlp
    for attr in part.split("."):
        obj = getattr(obj, attr)
    return obj


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_rank_holds_exactly_its_experts(ckpt, layout):
    path, cfg, tensors = ckpt
    path = WRITERS[layout](path, cfg, tensors)
    E = cfg["num_experts"]
    lo, hi = E // 2, E
    model = ge.load_checkpoint(path, dtype=torch.float32, expert_range=(lo, hi))
    for n, blk in enumerate(model.block):
        assert blk.mlp.local_experts == range(lo, hi)
        for part in EXPERT_PARTS:
            got = _kept(blk.mlp, part)
            want = tensors[f"block.{n}.mlp.{part}"][lo:hi]  # what the writer wrote, independently
            assert got.shape == want.shape, part
            assert torch.equal(got, want.to(got.dtype)), part
    # everything else is the whole model's
    full = ge.load_checkpoint(path, dtype=torch.float32)
    assert torch.equal(model.embedding.weight, full.embedding.weight)
    assert torch.equal(model.block[0].mlp.gate.weight, full.block[0].mlp.gate.weight)
    # alone, a rank's model cannot run: it says what to do instead of failing on an index
    with pytest.raises(RuntimeError, match=r"holds experts .*shard_experts"):
        model(torch.arange(3))


def test_dequantized_rank_equals_the_slice_of_the_whole(original_ckpt):
    path, cfg, _ = original_ckpt
    E = cfg["num_experts"]
    full = ge.load_checkpoint(path, dtype=torch.float32, experts="dequantized")
    part = ge.load_checkpoint(path, dtype=torch.float32, experts="dequantized", expert_range=(0, 2))
    for a, b in zip(full.block, part.block):
        assert b.mlp.mlp1_weight.shape[0] == 2 and E > 2
        assert torch.equal(b.mlp.mlp1_weight, a.mlp.mlp1_weight[:2])
        assert torch.equal(b.mlp.mlp2_weight, a.mlp.mlp2_weight[:2])
        assert torch.equal(b.mlp.mlp2_bias, a.mlp.mlp2_bias[:2])


def test_only_the_ranks_expert_bytes_are_read(original_ckpt, monkeypatch):
    """Every read of an expert tensor asks the mapping for the rank's rows only."""
    path, cfg, _ = original_ckpt
    E = cfg["num_experts"]
    calls = []
    real = st.MappedFile.tensor

    def spy(self, key, rows=None):
        calls.append((key, rows))
        return real(self, key, rows)

    monkeypatch.setattr(st.MappedFile, "tensor", spy)
    ge.load_checkpoint(path, dtype=torch.bfloat16, expert_range=range(E // 2, E))
    expert_calls = [(k, r) for k, r in calls if ".mlp.mlp1_" in k or ".mlp.mlp2_" in k]
    assert len(expert_calls) == 6 * cfg["num_hidden_layers"]
    assert all(r == range(E // 2, E) for _, r in expert_calls), expert_calls
    assert all(r is None for k, r in calls if (k, r) not in expert_calls)  # the rest, whole


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_other_ranks_corrupt_experts_do_not_stop_a_rank(ckpt, layout):
    """Expert 0's scales hold the NaN byte 255 and expert 1's bias a NaN: the whole model and
    rank 0 refuse the file; rank 1, whose experts are intact, loads, since those bytes are never
    read. (Proof that they are not checked, so not read.)"""
    path, cfg, tensors = ckpt
    E, L = cfg["num_experts"], cfg["num_hidden_layers"]
    tensors[f"block.{L - 1}.mlp.mlp1_weight.scales"][0, 3, 0] = 255
    tensors["block.0.mlp.mlp2_bias"][1, 5] = float("nan")
    path = WRITERS[layout](path, cfg, tensors)
    with pytest.raises(CheckpointError, match=r"non-finite|255"):
        ge.load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"non-finite .* index \(1, 5\).*|255"):
        ge.load_checkpoint(path, expert_range=(0, E // 2))
    # the scale error names the expert by its global id: corrupt only the scale and see
    tensors["block.0.mlp.mlp2_bias"][1, 5] = 0.0
    path = WRITERS[layout](path.parent / "again", cfg, tensors)
    with pytest.raises(CheckpointError, match=r"255 .* first at index \(0, 3, 0\)"):
        ge.load_checkpoint(path, expert_range=(0, E // 2))
    model = ge.load_checkpoint(path, expert_range=(E // 2, E))
    assert model.block[L - 1].mlp.mlp1_weight.scales.max() < 255


def test_a_rank_slice_error_says_which_experts(ckpt):
    path, cfg, tensors = ckpt
    E = cfg["num_experts"]
    tensors["block.0.mlp.mlp2_bias"][E - 1, 2] = float("inf")
    path = write_original(path, cfg, tensors)
    with pytest.raises(CheckpointError, match=rf"experts {E // 2}\.\.{E - 1}, indexed from 0"):
        ge.load_checkpoint(path, expert_range=(E // 2, E))


@pytest.mark.parametrize(
    "bad", [(2, 1), (0, 99), (-1, 2), (1, 1), "0:2", range(0, 4, 2), (True, 2), (0.0, 2), (0,)]
)
def test_bad_expert_range_is_refused(original_ckpt, bad):
    path, cfg, _ = original_ckpt
    with pytest.raises(ValueError, match=rf"expert_range must be .*<= {cfg['num_experts']}"):
        ge.load_checkpoint(path, expert_range=bad)


def test_load_expert_parallel_needs_a_process_group(original_ckpt):
    with pytest.raises(RuntimeError, match=r"init\(\) first"):
        ep.load_expert_parallel(original_ckpt[0])


# ----------------------------------------------------------------------------- 2 processes


def _rank_logits(rank: int, world: int, path: str, ids: list[int]) -> dict:
    """On each spawned rank: this rank's model read from the file vs the whole model sharded."""
    from gptoss_edu.checkpoint import read_config

    E = read_config(path).num_experts
    tokens = torch.tensor(ids)
    model = ep.load_expert_parallel(path, dtype=torch.float32)
    whole = ge.load_checkpoint(path, dtype=torch.float32)
    with torch.no_grad():
        one_process = whole(tokens)  # the whole model, unsharded, with this process's threads
    ep.shard_experts(whole)
    wrong = ge.load_checkpoint(
        path, dtype=torch.float32, expert_range=ep.expert_range(E, (rank + 1) % world, world)
    )
    try:
        ep.shard_experts(wrong)
        message = ""
    except ValueError as e:
        message = str(e)
    with torch.no_grad():
        return {
            "mine": model(tokens),
            "sharded": whole(tokens),
            "one_process": one_process,
            "held": [blk.mlp.block.mlp1_weight.blocks.shape[0] for blk in model.block],
            "wrong": message,
        }


@pytest.mark.slow
def test_rank_models_read_from_the_file_equal_the_whole_model(original_ckpt):
    path, cfg, _ = original_ckpt
    E = cfg["num_experts"]
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    single = ge.load_checkpoint(path, dtype=torch.float32)
    with torch.no_grad():
        ref = single(torch.tensor(ids))
    results = ep.spawn(_rank_logits, 2, str(path), ids)
    for rank, r in enumerate(results):
        assert r["held"] == [E // 2] * cfg["num_hidden_layers"]
        torch.testing.assert_close(r["mine"], r["sharded"], rtol=0, atol=0)
        torch.testing.assert_close(r["mine"], r["one_process"], rtol=0, atol=0)
        # the parent runs torch on more threads (the ranks on one): float32 round-off apart
        torch.testing.assert_close(r["mine"], ref, rtol=1e-5, atol=1e-5)
        other = ep.expert_range(E, 1 - rank, 2)
        assert f"loaded with experts {other.start}...{other.stop - 1}" in r["wrong"]
