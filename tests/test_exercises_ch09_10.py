"""The chapter 9-10 checkers accept a correct answer and name each classic mistake.

Correct answers are written here independently (plain loops, not the package's kernels)."""

import contextlib
import io

import torch

from gptoss_edu.exercises import ch09_routing as c9
from gptoss_edu.exercises import ch10_matmul as c10

FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]


def run(check, fn) -> tuple[bool, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = check(fn)
    return ok, out.getvalue()


def assert_fails(check, fn, *words):
    ok, text = run(check, fn)
    assert not ok, text
    assert text.startswith("❌"), text
    for w in words:
        assert w in text, (w, text)


# ----------------------------------------------------------------------------- chapter 9


def topk_softmax(logits, k, all_experts=False):
    vals, ids = torch.sort(logits.float(), dim=-1, descending=True, stable=True)
    if all_experts:
        return torch.softmax(logits.float(), -1).gather(1, ids[:, :k]), ids[:, :k]
    return torch.softmax(vals[:, :k], -1), ids[:, :k]


def histogram(flat, E):
    counts = torch.zeros(E, dtype=torch.int64)
    for e in flat.tolist():
        counts[e] += 1
    return counts


def exclusive(counts):
    out = [0]
    for c in counts.tolist():
        out.append(out[-1] + c)
    return torch.tensor(out)


def scatter(flat, offsets, stable=True):
    nxt = offsets[:-1].clone()
    order = torch.empty(len(flat), dtype=torch.int64)
    ids = range(len(flat)) if stable else reversed(range(len(flat)))
    for a in ids:
        e = int(flat[a])
        order[nxt[e]] = a
        nxt[e] += 1
    return order


def inverse(order):
    inv = torch.empty_like(order)
    for p, a in enumerate(order.tolist()):
        inv[a] = p
    return inv


def route(logits, k):
    w, ids = topk_softmax(logits, k)
    flat = ids.reshape(-1)
    offsets = exclusive(histogram(flat, logits.shape[1]))
    return w, ids, scatter(flat, offsets), offsets


def test_ch09_correct_answers_pass():
    for check, fn in (
        (c9.check_topk_softmax, topk_softmax),
        (c9.check_histogram, histogram),
        (c9.check_exclusive_prefix_sum, exclusive),
        (c9.check_stable_scatter, scatter),
        (c9.check_inverse_permutation, inverse),
        (c9.check_route, route),
    ):
        ok, text = run(check, fn)
        assert ok and text.startswith("✅"), text


def test_ch09_mistakes_are_named():
    assert_fails(
        c9.check_topk_softmax, lambda lg, k: topk_softmax(lg, k, all_experts=True), "all E experts"
    )
    assert_fails(c9.check_topk_softmax, lambda lg, k: topk_softmax(lg, k)[::-1], "expected")
    assert_fails(c9.check_histogram, lambda f, E: torch.bincount(f), "minlength")
    assert_fails(c9.check_exclusive_prefix_sum, lambda c: torch.cumsum(c, 0), "inclusive")
    assert_fails(c9.check_exclusive_prefix_sum, lambda c: exclusive(c)[:-1], "final total")
    assert_fails(c9.check_stable_scatter, lambda f, o: scatter(f, o, stable=False), "not stable")
    assert_fails(c9.check_stable_scatter, lambda f, o: torch.zeros_like(f), "not a permutation")
    assert_fails(c9.check_inverse_permutation, lambda o: o.clone(), "`order` itself")
    assert_fails(c9.check_route, lambda lg, k: (*route(lg, k)[:3], route(lg, k)[3][1:]), "offsets")


def test_ch09_unfinished_is_not_done_yet():
    def todo(*args):
        raise NotImplementedError("count")

    ok, text = run(c9.check_histogram, todo)
    assert not ok and text.startswith("⏳")


# ----------------------------------------------------------------------------- chapter 10


def gemv(x, blocks, scales, swap=False, bias=127, unsigned=False):
    N, G, _ = blocks.shape
    y = torch.zeros(N, dtype=torch.float64)
    for n in range(N):
        for g in range(G):
            s = 2.0 ** (int(scales[n, g]) - bias)
            for j in range(16):
                b = int(blocks[n, g, j])
                lo, hi = (b >> 4, b & 15) if swap else (b & 15, b >> 4)
                v0, v1 = FP4[lo], FP4[hi]
                if unsigned:
                    v0, v1 = abs(v0), abs(v1)
                y[n] += float(x[32 * g + 2 * j]) * v0 * s + float(x[32 * g + 2 * j + 1]) * v1 * s
    return y.float()


def test_ch10_correct_answers_pass():
    for check, fn in (
        (c10.check_mxfp4_gemv, gemv),
        (c10.check_packed_bytes, lambda N, K: N * K // 2 + N * K // 32),
        (c10.check_arithmetic_intensity, lambda T, N, K: 2 * T * N * K / (N * K * 17 / 32)),
        (c10.check_roofline_seconds, lambda f, b, pf, bw: max(f / pf, b / bw)),
        (
            c10.check_effective_gbs,
            lambda T, N, K, s: (N * K * 17 // 32 + 4 * T * (N + K)) / s / 1e9,
        ),
    ):
        ok, text = run(check, fn)
        assert ok and text.startswith("✅"), text


def test_ch10_mistakes_are_named():
    assert_fails(c10.check_mxfp4_gemv, lambda x, b, s: gemv(x, b, s, swap=True), "swapped")
    assert_fails(c10.check_mxfp4_gemv, lambda x, b, s: gemv(x, b, s, bias=0), "bias of 127")
    assert_fails(c10.check_mxfp4_gemv, lambda x, b, s: gemv(x, b, s, unsigned=True), "sign")
    assert_fails(c10.check_packed_bytes, lambda N, K: N * K // 2, "scale bytes")
    assert_fails(c10.check_packed_bytes, lambda N, K: 2 * N * K, "bf16")
    assert_fails(
        c10.check_arithmetic_intensity, lambda T, N, K: T * N * K / (N * K * 17 / 32), "2 FLOPs"
    )
    assert_fails(c10.check_roofline_seconds, lambda f, b, pf, bw: f / pf + b / bw, "max")
    assert_fails(c10.check_roofline_seconds, lambda f, b, pf, bw: min(f / pf, b / bw), "min")
    assert_fails(
        c10.check_effective_gbs,
        lambda T, N, K, s: (N * K // 2 + 4 * T * (N + K)) / s / 1e9,
        "scale",
    )


def parallel_histogram(flat, E, n_chunks, drop_tail=False):
    import numpy as np

    counts = np.zeros(E, dtype=np.int64)
    step = len(flat) // n_chunks if drop_tail else -(-len(flat) // n_chunks)
    for c in range(n_chunks):
        for e in flat[c * step : (c + 1) * step]:
            counts[e] += 1
    return counts


def test_ch09_parallel_histogram():
    ok, text = run(c9.check_parallel_histogram, parallel_histogram)
    assert ok, text
    ok, text = run(lambda f: c9.check_parallel_histogram(f, seed=9), parallel_histogram)
    assert ok, text
    assert_fails(
        c9.check_parallel_histogram,
        lambda f, E, n: parallel_histogram(f, E, n, drop_tail=True),
        "assignments counted",
    )
    assert_fails(c9.check_parallel_histogram, lambda f, E, n: [0] * E, "numpy array")


def roofline_point(gemv, N, K, repeats, total=False, warmup=True):
    import statistics
    import time

    blocks = torch.zeros(N, K // 32, 16, dtype=torch.uint8)
    scales = torch.full((N, K // 32), 127, dtype=torch.uint8)
    x = torch.zeros(K)
    if warmup:
        gemv(x, blocks, scales)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        gemv(x, blocks, scales)
        times.append(time.perf_counter() - t)
    sec = sum(times) if total else statistics.median(times)
    nbytes = N * K * 17 / 32  # 4.25 bits a weight
    return {
        "seconds": sec,
        "intensity": 2 * N * K / nbytes,
        "gflops": 2 * N * K / sec / 1e9,
        "gbs": (nbytes + 4 * (N + K)) / sec / 1e9,
    }


def test_ch10_roofline_point():
    ok, text = run(c10.check_roofline_point, roofline_point)
    assert ok, text
    ok, text = run(lambda f: c10.check_roofline_point(f, seed=2), roofline_point)
    assert ok, text
    assert_fails(
        c10.check_roofline_point,
        lambda *a: roofline_point(*a, total=True),
        "total of all",
    )
    assert_fails(
        c10.check_roofline_point,
        lambda *a: roofline_point(*a, warmup=False),
        "one warm-up",
    )


def test_every_ch09_ch10_checker_has_hidden_cases():
    for module in (c9, c10):
        assert all(getattr(module, name).hidden for name in module.__all__)


def test_ch09_counting_sort_numba():
    import numpy as np

    def sort(flat, E, stable=True):
        counts = np.bincount(flat, minlength=E)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        order = np.argsort(flat, kind="stable" if stable else "quicksort").astype(np.int64)
        if not stable:  # reverse each expert's run: grouped, not ascending
            order = np.concatenate([order[offsets[e] : offsets[e + 1]][::-1] for e in range(E)])
        return offsets, order

    class Fake:  # stands for a numba dispatcher (the checker looks for .py_func)
        py_func = None

        def __init__(self, fn):
            self.fn = fn

        def __call__(self, *a):
            return self.fn(*a)

    ok, text = run(c9.check_counting_sort_numba, Fake(sort))
    assert ok, text
    ok, text = run(lambda f: c9.check_counting_sort_numba(f, seed=4), Fake(sort))
    assert ok, text
    assert_fails(
        c9.check_counting_sort_numba, Fake(lambda f, E: sort(f, E, stable=False)), "ascending"
    )
    assert_fails(
        c9.check_counting_sort_numba,
        Fake(lambda f, E: (sort(f, E)[0][1:], sort(f, E)[1])),
        "inclusive prefix sum",
    )
    assert_fails(c9.check_counting_sort_numba, sort, "@numba.njit")


def vpermps(table, index):
    return table[(index & 15).long()]


E2M1_X2 = 2 * torch.tensor(FP4, dtype=torch.float32)


def decode_block(block, s, scale_factor=0.5, order="own", swap=False):
    codes = block.to(torch.int32)
    even, odd = vpermps(E2M1_X2, codes), vpermps(E2M1_X2, codes >> 4)
    if swap:
        even, odd = odd, even
    w = torch.stack([even, odd], 1).flatten() if order == "own" else torch.cat([even, odd])
    return w * (2.0 ** (s - 127) * scale_factor)


def test_ch10_version_5_decode():
    for check, fn in ((c10.check_vpermps, vpermps), (c10.check_decode_block_vpermps, decode_block)):
        for seed in (None, 3):
            ok, text = run(lambda f, check=check, seed=seed: check(f, seed=seed), fn)
            assert ok and text.startswith("✅"), text
    assert_fails(c10.check_vpermps, lambda t, i: t[i.long()], "low 4 bits")
    assert_fails(c10.check_vpermps, lambda t, i: t[(i & 7).long()], "vpermps(table")
    assert_fails(c10.check_decode_block_vpermps, lambda b, s: decode_block(b, s, 1.0), "twice")
    assert_fails(
        c10.check_decode_block_vpermps, lambda b, s: decode_block(b, s, order="split"), "split"
    )
    assert_fails(
        c10.check_decode_block_vpermps, lambda b, s: decode_block(b, s, swap=True), "swapped"
    )
