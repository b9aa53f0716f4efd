"""Checkers for chapter 17's exercises (exercises/17_beyond_one_machine.ipynb): which rank owns an
expert, the split sizes of a dispatch, all_to_all by hand, the bytes on the wire, and the load
imbalance of a routing.

    ge.exercises.check_owner(my_owner)   # ✅ check_owner: passed

The references are `gptoss_edu.distributed` (chapter 17's final code) and hand-checkable cases.
The checkers recognise the classic mistakes: `expert % world_size` (round-robin) where the
package gives each rank a contiguous block of experts, split sizes without `minlength` (a rank
that receives nothing goes missing), all_to_all returning what a rank *sends* instead of what it
*receives*, the wire formula without the (N-1)/N share that stays local or without the combine
half, and imbalance measured against the busiest expert instead of the busiest rank.
"""

from __future__ import annotations

import torch

from ..distributed import expert_range
from ._common import Checker, ExerciseFailure, cases

__all__ = [
    "check_owner",
    "check_split_sizes",
    "check_all_to_all",
    "check_wire_bytes",
    "check_rank_imbalance",
]


def _experts(T: int, E: int, k: int, seed: int) -> torch.Tensor:
    """(T, k) distinct expert ids per token, as a router picks them."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)])
        if T
        else (torch.empty(0, k, dtype=torch.int64))
    )


def _draw(rng):
    E = rng.choice([8, 16, 32, 128])
    world = rng.choice([n for n in (1, 2, 4, 8) if E % n == 0])
    return rng.randint(0, 40), E, rng.choice([1, 2, 4]), world


def _ints(got, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if got.is_floating_point():
        raise ExerciseFailure(f"{what}: got dtype {got.dtype}; expected an integer tensor")
    if tuple(got.shape) != shape:
        raise ExerciseFailure(f"{what}: wrong shape {tuple(got.shape)}; expected {shape}")
    return got.long()


@Checker("check_owner")
def check_owner(fn, seed=None):
    """fn(experts (T, k) int64, num_experts, world_size) -> (T, k) int64: the rank that owns each
    expert, when rank r owns the contiguous block expert_range(num_experts, r, world_size)."""
    for T, E, k, world in cases(((3, 8, 2, 4), (5, 32, 4, 4), (4, 16, 2, 1)), seed, _draw):
        experts = _experts(T, E, k, seed=T + E + (seed or 0))
        want = torch.empty_like(experts)
        for r in range(world):
            for e in expert_range(E, r, world):
                want[experts == e] = r
        got = _ints(fn(experts, E, world), f"owners (E={E}, N={world})", (T, k))
        if not torch.equal(got, want):
            if world > 1 and torch.equal(got, experts % world):
                raise ExerciseFailure(
                    "you dealt experts round-robin (expert % world_size); here each rank owns "
                    "a contiguous block: rank r has experts r*E/N .. (r+1)*E/N - 1"
                )
            raise ExerciseFailure(
                f"E={E}, N={world}: experts {experts[0].tolist()} -> got {got[0].tolist()}, "
                f"expected {want[0].tolist()}"
            )
    return "contiguous blocks of experts per rank"


@Checker("check_split_sizes")
def check_split_sizes(fn, seed=None):
    """fn(experts (T, k), num_experts, world_size) -> (world_size,) int64: how many assignments
    this rank sends to each rank (the input split sizes of all_to_all_single)."""
    for T, E, k, world in cases(((3, 8, 2, 4), (1, 8, 2, 4), (6, 32, 4, 2)), seed, _draw):
        experts = _experts(T, E, k, seed=2 * T + E + (seed or 0))
        per = E // world
        want = torch.zeros(world, dtype=torch.int64)
        for e in experts.reshape(-1).tolist():
            want[e // per] += 1
        got = fn(experts, E, world)
        if isinstance(got, torch.Tensor) and got.dim() == 1 and got.shape[0] < world:
            raise ExerciseFailure(
                f"got {got.shape[0]} sizes for {world} ranks: ranks that receive nothing are "
                "missing (torch.bincount needs minlength=world_size); all_to_all needs one size "
                "per rank, zeros included"
            )
        got = _ints(got, f"split sizes (N={world})", (world,))
        if not torch.equal(got, want):
            raise ExerciseFailure(
                f"T={T}, E={E}, N={world}: got {got.tolist()}, expected {want.tolist()}"
            )
    return "one size per rank, zeros included"


@Checker("check_all_to_all")
def check_all_to_all(fn, seed=None):
    """fn(send) -> recv, with send[r][d] the list rank r sends to rank d and recv[d][r] the list
    rank d receives from rank r."""
    import random

    def draw(rng: random.Random):
        n = rng.randint(1, 5)
        return [
            [[rng.randint(0, 99) for _ in range(rng.randint(0, 3))] for _ in range(n)]
            for _ in range(n)
        ]

    visible = [
        [[["a"], ["b"]], [["c"], ["d"]]],
        [[[1], [2, 3], []], [[4], [], [5]], [[6, 7], [8], [9]]],
    ]
    for send in cases(visible, seed, draw):
        n = len(send)
        want = [[send[r][d] for r in range(n)] for d in range(n)]
        got = fn([[list(p) for p in row] for row in send])
        if got == send and want != send:
            raise ExerciseFailure(
                "you returned what each rank sends; after the exchange rank d holds what every "
                "rank r sent *to d*: recv[d][r] = send[r][d]"
            )
        if got != want:
            raise ExerciseFailure(f"send = {send}: got {got}, expected {want}")
    return "recv[d][r] = send[r][d]"


@Checker("check_wire_bytes")
def check_wire_bytes(fn, seed=None):
    """fn(tokens, k, hidden, world_size, bytes_per_number) -> bytes one MoE layer sends for
    dispatch + combine with uniform routing: 2 * tokens * k * (N-1)/N * hidden * bytes."""

    def draw(rng):
        return (rng.randint(1, 4096), rng.choice([1, 2, 4, 8]), rng.choice([64, 2880, 7168]),
                rng.choice([1, 2, 4, 8, 64]), rng.choice([2, 4]))  # fmt: skip

    for T, k, H, N, b in cases(
        ((1, 4, 2880, 8, 2), (64, 4, 2880, 2, 4), (10, 2, 128, 1, 4)), seed, draw
    ):
        want = 2 * T * k * (N - 1) / N * H * b
        got = fn(T, k, H, N, b)
        if not isinstance(got, (int, float)):
            raise ExerciseFailure(f"expected a number, got {type(got).__name__}")
        if abs(got - want) <= 1e-6 * max(1.0, want):
            continue
        if N > 1 and abs(got - 2 * T * k * H * b) < 1e-6 * max(1.0, want):
            raise ExerciseFailure(
                "you counted every assignment; the (N-1)/N whose expert is on another rank "
                "travel, the rest stay on their own rank"
            )
        if abs(got - want / 2) < 1e-6 * max(1.0, want):
            raise ExerciseFailure("that is dispatch only: the results travel back too (combine)")
        raise ExerciseFailure(f"T={T}, k={k}, H={H}, N={N}, b={b}: got {got}, expected {want:.0f}")
    return "dispatch + combine, only the remote share"


@Checker("check_rank_imbalance")
def check_rank_imbalance(fn, seed=None):
    """fn(experts (T, k), num_experts, world_size) -> float: rows of the busiest rank divided by
    the even share T*k/N (1.0 = perfect balance)."""
    for T, E, k, world in cases(((8, 8, 2, 4), (6, 32, 4, 2), (5, 16, 2, 4)), seed, _draw):
        T = max(T, 1)
        experts = _experts(T, E, k, seed=3 * T + E + (seed or 0))
        per = E // world
        rows = torch.bincount(experts.reshape(-1) // per, minlength=world)
        want = rows.max().item() / (T * k / world)
        got = fn(experts, E, world)
        if not isinstance(got, (int, float)) and not (
            isinstance(got, torch.Tensor) and got.numel() == 1
        ):
            raise ExerciseFailure(f"expected a number, got {type(got).__name__}")
        got = float(got)
        by_expert = torch.bincount(experts.reshape(-1), minlength=E).max().item() / (T * k / E)
        if abs(got - want) > 1e-6:
            if abs(got - by_expert) < 1e-6 and abs(by_expert - want) > 1e-6:
                raise ExerciseFailure(
                    "that is the busiest *expert* against an even share per expert; the ranks "
                    "wait for the busiest *rank*, whose experts' rows add up"
                )
            raise ExerciseFailure(f"T={T}, E={E}, N={world}: got {got:.4f}, expected {want:.4f}")
    return "busiest rank over the even share"
