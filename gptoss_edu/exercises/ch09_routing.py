"""Checkers for chapter 9's exercises (exercises/09_routing_kernels.ipynb): top-k with a softmax
over the chosen experts, the histogram, the exclusive prefix sum, the stable scatter, the inverse
permutation, and the whole counting-sort router.

    ge.exercises.check_histogram(my_histogram)   # ✅ check_histogram: passed

The reference is `gptoss_edu.kernels.reference.route` (chapter 9's final code). Each checker also
recognises the classic mistakes: a softmax over all E experts instead of the k chosen ones, an
inclusive prefix sum where an exclusive one is needed, a scatter that is not stable (assignments
of one expert out of order), a histogram without `minlength` (experts nobody chose go missing),
and `order` returned where its inverse was asked for.
"""

from __future__ import annotations

import torch

from ..kernels.reference import route as reference_route
from ._common import Checker, ExerciseFailure, cases, expect_close

__all__ = [
    "check_topk_softmax",
    "check_histogram",
    "check_exclusive_prefix_sum",
    "check_stable_scatter",
    "check_inverse_permutation",
    "check_route",
    "check_parallel_histogram",
    "check_counting_sort_numba",
]


def _logits(T: int, E: int, seed: int) -> torch.Tensor:
    return torch.randn(T, E, generator=torch.Generator().manual_seed(seed))


def _ints(got, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The reader's integer tensor as int64, after checking it is one, of the right shape."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if got.is_floating_point():
        raise ExerciseFailure(f"{what}: got dtype {got.dtype}; expected an integer tensor (int64)")
    if tuple(got.shape) != shape:
        raise ExerciseFailure(f"{what}: wrong shape {tuple(got.shape)}; expected {shape}")
    return got.long()


def _sizes(rng) -> tuple[int, int, int]:
    """A hidden (T, E, k): any number of tokens, E a power of two, k <= E/2."""
    E = rng.choice([4, 8, 16, 32, 64])
    return rng.randint(1, 80), E, rng.choice([k for k in (1, 2, 4) if k <= E // 2])


def _salt(seed) -> int:
    return 0 if seed is None else 1000 * (seed + 1)


def _flat_experts(T: int, E: int, k: int, seed: int) -> torch.Tensor:
    """(T*k,) expert ids of a real routing, with expert E-1 never chosen."""
    logits = _logits(T, E, seed)
    logits[:, E - 1] -= 100
    return reference_route(logits, k).experts.reshape(-1).long()


@Checker("check_topk_softmax")
def check_topk_softmax(fn, seed=None):
    """fn(logits (T, E), k) -> (weights (T, k) float32, experts (T, k) integer), best first,
    softmax over the k chosen logits only."""
    for T, E, k in cases(((1, 4, 2), (5, 8, 2), (16, 32, 4)), seed, _sizes):
        logits = _logits(T, E, seed=T + E + _salt(seed))
        want = reference_route(logits, k)
        got = fn(logits, k)
        if not isinstance(got, tuple) or len(got) != 2:
            raise ExerciseFailure("expected a tuple (weights, experts)")
        weights, experts = got
        experts = _ints(experts, f"experts (T={T}, E={E}, k={k})", (T, k))
        if not torch.equal(experts, want.experts.long()):
            if torch.equal(experts.sort(dim=1).values, want.experts.long().sort(dim=1).values):
                raise ExerciseFailure(
                    "the right experts, in the wrong order: list them best first (descending logit)"
                )
            raise ExerciseFailure(
                f"experts for T={T}, E={E}, k={k}: got {experts[0].tolist()} for token 0, "
                f"expected {want.experts[0].tolist()} (the k largest logits)"
            )
        if isinstance(weights, torch.Tensor) and weights.shape == (T, k):
            all_soft = torch.softmax(logits.float(), dim=-1).gather(1, want.experts.long())
            if torch.allclose(weights.float(), all_soft, atol=1e-6):
                raise ExerciseFailure(
                    "the weights are a softmax over all E experts, then the top k picked: they "
                    "do not sum to 1. gpt-oss takes the softmax over the k chosen logits only"
                )
        expect_close(weights, want.weights, f"weights (T={T}, E={E}, k={k})", rtol=1e-5, atol=1e-6)
    return "softmax over the k chosen experts, best first"


@Checker("check_histogram")
def check_histogram(fn, seed=None):
    """fn(experts_flat (n,) int64, E) -> counts (E,) int64: how many assignments chose each expert."""
    for T, E, k in cases(((1, 4, 2), (7, 8, 2), (50, 32, 4)), seed, _sizes):
        flat = _flat_experts(T, E, k, seed=T * E + _salt(seed))
        want = torch.zeros(E, dtype=torch.int64)
        for e in flat.tolist():
            want[e] += 1
        got = fn(flat, E)
        if isinstance(got, torch.Tensor) and got.dim() == 1 and got.shape[0] < E:
            raise ExerciseFailure(
                f"got {got.shape[0]} counts for E = {E} experts: the last expert(s), chosen by no "
                "token, are missing. Pass minlength=E to torch.bincount (or start from zeros(E))"
            )
        got = _ints(got, f"counts (E={E})", (E,))
        if not torch.equal(got, want):
            raise ExerciseFailure(f"counts for E={E}: got {got.tolist()}, expected {want.tolist()}")
    return "including experts that receive no token"


@Checker("check_exclusive_prefix_sum")
def check_exclusive_prefix_sum(fn, seed=None):
    """fn(counts (E,) int64) -> offsets (E+1,) int64: offsets[0] = 0, offsets[e+1] = offsets[e] +
    counts[e]."""

    def draw(rng):
        return [rng.choice([0, 0, 1, 2, 5, 17]) for _ in range(rng.randint(1, 40))]

    for counts in cases(([3], [2, 0, 3, 1], [0, 0, 5, 1, 0, 7, 2, 0]), seed, draw):
        c = torch.tensor(counts, dtype=torch.int64)
        want = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(c, 0)])
        got = fn(c.clone())
        if isinstance(got, torch.Tensor) and got.shape == c.shape:
            if torch.equal(got.long(), torch.cumsum(c, 0)):
                raise ExerciseFailure(
                    f"for counts {counts} you returned {got.tolist()}: the inclusive prefix sum "
                    "(where each expert ends). We need the exclusive one (where each starts): put "
                    "a 0 in front, giving E+1 offsets"
                )
            if torch.equal(got.long(), want[:-1]):
                raise ExerciseFailure(
                    f"for counts {counts} you returned {got.tolist()}: the exclusive sum, but "
                    f"without the final total; offsets has E+1 entries, the last = {int(c.sum())}"
                )
        got = _ints(got, f"offsets for counts {counts}", (len(counts) + 1,))
        if not torch.equal(got, want):
            raise ExerciseFailure(
                f"offsets for counts {counts}: got {got.tolist()}, expected {want.tolist()}"
            )
    return "E+1 offsets starting at 0"


@Checker("check_stable_scatter")
def check_stable_scatter(fn, seed=None):
    """fn(experts_flat (n,) int64, offsets (E+1,) int64) -> order (n,) int64: assignment ids
    grouped by expert, ascending within each expert."""
    for T, E, k in cases(((3, 4, 2), (9, 8, 2), (64, 32, 4)), seed, _sizes):
        flat = _flat_experts(T, E, k, seed=T + 7 * E + _salt(seed))
        counts = torch.bincount(flat, minlength=E)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
        want = torch.cat([torch.nonzero(flat == e).flatten() for e in range(E)])  # stable by def.
        got = _ints(fn(flat.clone(), offsets.clone()), f"order (T={T}, k={k})", (T * k,))
        if torch.equal(got, want):
            continue
        if sorted(got.tolist()) != list(range(T * k)):
            raise ExerciseFailure(
                f"order (T={T}, k={k}) is not a permutation of 0..{T * k - 1}: some assignment ids "
                "are missing or repeated (did each expert's next free slot move on after a write?)"
            )
        if torch.equal(flat[got], flat[want]):
            raise ExerciseFailure(
                "assignments are grouped by the right experts but not in ascending order within "
                "an expert: the scatter is not stable. Walk the assignments a = 0, 1, 2, ... in "
                "order and give each the next free slot of its expert"
            )
        raise ExerciseFailure(
            f"order (T={T}, k={k}): got {got[:12].tolist()}..., expected {want[:12].tolist()}... "
            "(expert e's assignments belong at order[offsets[e]:offsets[e+1]])"
        )
    return "grouped by expert, stable"


@Checker("check_inverse_permutation")
def check_inverse_permutation(fn, seed=None):
    """fn(order (n,) int64) -> inverse (n,) int64 with inverse[order[p]] = p."""
    for n in cases((1, 6, 40), seed, lambda rng: rng.randint(3, 300)):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(n + _salt(seed)))
        want = torch.empty_like(order)
        want[order] = torch.arange(n)
        got = _ints(fn(order.clone()), f"inverse (n={n})", (n,))
        if n > 2 and not torch.equal(want, order) and torch.equal(got, order):
            raise ExerciseFailure(
                "you returned `order` itself; the inverse satisfies inverse[order[p]] = p"
            )
        if not torch.equal(got, want):
            raise ExerciseFailure(
                f"inverse of {order.tolist()[:8]}...: got {got.tolist()[:8]}..., expected {want.tolist()[:8]}..."
            )
    return "inverse[order[p]] = p"


@Checker("check_route")
def check_route(fn, seed=None):
    """fn(logits (T, E), k) -> (weights, experts, order, offsets): the whole router."""
    for T, E, k in cases(((1, 4, 2), (9, 8, 2), (100, 32, 4)), seed, _sizes):
        logits = _logits(T, E, seed=3 * T + E + _salt(seed))
        logits[:, 1] -= 100  # expert 1: no token
        want = reference_route(logits, k)
        got = fn(logits, k)
        if not isinstance(got, tuple) or len(got) != 4:
            raise ExerciseFailure("expected a tuple (weights, experts, order, offsets)")
        weights, experts, order, offsets = got
        experts = _ints(experts, "experts", (T, k))
        if not torch.equal(experts, want.experts.long()):
            raise ExerciseFailure(
                f"experts (T={T}, E={E}, k={k}) differ from the top-k, best first"
            )
        expect_close(weights, want.weights, f"weights (T={T}, E={E})", rtol=1e-5, atol=1e-6)
        offsets = _ints(offsets, "offsets", (E + 1,))
        if not torch.equal(offsets, want.offsets):
            raise ExerciseFailure(
                f"offsets (E={E}): got {offsets.tolist()}, expected {want.offsets.tolist()}"
            )
        order = _ints(order, "order", (T * k,))
        if not torch.equal(order, want.order):
            raise ExerciseFailure(f"order (T={T}, k={k}) differs from the stable counting sort")
    return "same routing as gptoss_edu.kernels.route"


# ---- extension: a parallel histogram (numba) ------------------------------------------------------


@Checker("check_parallel_histogram")
def check_parallel_histogram(fn, seed=None):
    """fn(experts_flat (n,) numpy int64, E, n_chunks) -> (E,) numpy int64 counts, computed as
    n_chunks private histograms (one per chunk of the input, in parallel) summed at the end."""
    import numpy as np

    def draw(rng):
        return rng.randint(0, 5000), rng.choice([4, 32, 128]), rng.choice([1, 2, 3, 7, 16])

    for n, E, n_chunks in cases([(10, 4, 2), (1000, 32, 4), (7, 8, 16), (0, 4, 2)], seed, draw):
        g = np.random.default_rng(n * 31 + E + _salt(seed))
        flat = g.integers(0, E - 1, size=n).astype(np.int64)  # expert E-1 never chosen
        want = np.bincount(flat, minlength=E)
        got = fn(flat.copy(), E, n_chunks)
        where = f"n={n}, E={E}, n_chunks={n_chunks}"
        if isinstance(got, torch.Tensor):
            got = got.numpy()
        if not isinstance(got, np.ndarray):
            raise ExerciseFailure(f"{where}: expected a numpy array, got {type(got).__name__}")
        if got.shape != (E,):
            raise ExerciseFailure(
                f"{where}: shape {got.shape}; expected ({E},). If it is (n_chunks, E), the "
                "private histograms still need summing"
            )
        if np.array_equal(got, want):
            continue
        if n_chunks > 1 and got.sum() < want.sum():
            raise ExerciseFailure(
                f"{where}: {int(got.sum())} assignments counted of {n}: some are lost. Do all "
                "chunks write one shared array (a race)? Or does the last chunk stop short when "
                "n_chunks does not divide n?"
            )
        raise ExerciseFailure(f"{where}: got {got.tolist()}, expected {want.tolist()}")
    return "private histograms per chunk, summed; any n, any number of chunks"


@Checker("check_counting_sort_numba")
def check_counting_sort_numba(fn, seed=None):
    """fn(experts_flat (n,) numpy int64, E) -> (offsets (E+1,), order (n,)) numpy int64: the
    whole counting sort (histogram, exclusive prefix sum, stable scatter) as one numba function."""
    import numpy as np

    if not hasattr(fn, "py_func"):
        raise ExerciseFailure(
            "this exercise asks for a numba function: decorate it with @numba.njit (the point is "
            "to write the counting sort as loops that numba compiles)"
        )
    for T, E, k in cases(((1, 4, 2), (9, 8, 2), (64, 32, 4)), seed, _sizes):
        flat = _flat_experts(T, E, k, seed=5 * T + E + _salt(seed)).numpy()
        counts = np.bincount(flat, minlength=E)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        order = np.concatenate([np.nonzero(flat == e)[0] for e in range(E)]).astype(np.int64)
        got = fn(flat.copy(), E)
        where = f"T={T}, E={E}, k={k}"
        if not isinstance(got, tuple) or len(got) != 2:
            raise ExerciseFailure(f"{where}: expected a tuple (offsets, order)")
        got_off, got_order = (np.asarray(x) for x in got)
        if got_off.shape != (E + 1,) or not np.array_equal(got_off, offsets):
            if got_off.shape == (E,) and np.array_equal(got_off, offsets[1:]):
                raise ExerciseFailure(
                    f"{where}: offsets is the inclusive prefix sum; put a 0 in front (E+1 values)"
                )
            raise ExerciseFailure(
                f"{where}: offsets {got_off.tolist()}; expected {offsets.tolist()}"
            )
        if got_order.shape != order.shape or not np.array_equal(got_order, order):
            if sorted(got_order.tolist()) == list(range(len(order))) and np.array_equal(
                flat[got_order], flat[order]
            ):
                raise ExerciseFailure(
                    f"{where}: grouped by expert but not in ascending order within an expert: "
                    "the scatter must walk the assignments in order (a prange here breaks it)"
                )
            raise ExerciseFailure(
                f"{where}: order {got_order[:12].tolist()}...; expected {order[:12].tolist()}..."
            )
    return "histogram, prefix sum and stable scatter, compiled by numba"
