"""The kernel contract, written as plain torch: the specification every back end must match
(chapters 9 and 10).

Three functions, the same in every back end (numba_cpu.py, numba_cuda.py, cuda/):

    route(router_logits, k) -> Routing              top-k + softmax + counting sort by expert
    mxfp4_linear(x, blocks, scales, bias) -> y      y = x @ dequantize(W).T + bias
    moe_forward(x, routing, experts) -> y           the mixture-of-experts layer (after the router)

Routing groups the T*k (token, expert) assignments by expert so that each expert's weights are
read once for all its tokens, instead of once per token. Worked example, T = 3 tokens, k = 2,
E = 4 experts:

    experts = [[2, 0],      flat assignment ids a = t*k + j:   0 1 | 2 3 | 4 5
               [2, 3],      flat expert ids:                   2 0 | 2 3 | 0 2
               [0, 2]]
    histogram (per expert):  [2, 0, 3, 1]
    offsets (exclusive sum): [0, 2, 2, 5, 6]        expert e owns order[offsets[e]:offsets[e+1]]
    order:                   [1, 4, 0, 2, 5, 3]     expert 0: a=1,4; expert 1: none; expert 2: 0,2,5
    inverse:                 [2, 0, 3, 5, 1, 4]     inverse[order[p]] = p
"""

from __future__ import annotations

import numbers
import operator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gptoss_edu.model.moe import MLPBlock, swiglu  # the one swiglu and per-expert loop (chapter 6)
from gptoss_edu.mxfp4 import dequantize


class Routing(NamedTuple):
    weights: Tensor  # (T, k) float32, softmax over the k chosen logits
    experts: Tensor  # (T, k) int32, expert ids by descending logit; ties -> lower expert id first
    order: Tensor  # (T*k,) int64: assignment ids t*k+j sorted by expert, stable
    offsets: Tensor  # (E+1,) int64: expert e's assignments are order[offsets[e]:offsets[e+1]]
    inverse: Tensor  # (T*k,) int64: inverse[order[p]] = p


class MoEWeights(NamedTuple):
    mlp1_blocks: Tensor  # (E, 2I, H//32, 16) uint8
    mlp1_scales: Tensor  # (E, 2I, H//32) uint8
    mlp1_bias: Tensor  # (E, 2I) float32 or bf16
    mlp2_blocks: Tensor  # (E, H, I//32, 16) uint8
    mlp2_scales: Tensor  # (E, H, I//32) uint8
    mlp2_bias: Tensor  # (E, H)
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702


# ----------------------------------------------------------------------------- argument checks
# Shared by every back end and called by the dispatcher (kernels/__init__.py) before any back end
# runs, so that all of them reject bad input with the same message. The compiled kernels index
# memory without bounds checks: an index out of range there is a segfault or silently wrong
# numbers, so everything a kernel indexes with is checked here, in torch, first.

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _is_int(t: Tensor) -> bool:
    return t.dtype in _INT_DTYPES


def _check_tensor(fn: str, name: str, t, device: torch.device | None = None) -> None:
    """`t` must be a torch.Tensor, on `device` when given."""
    if not isinstance(t, Tensor):
        raise TypeError(
            f"{fn}: {name} is a {type(t).__name__}; expected a torch.Tensor "
            "(convert with torch.as_tensor)"
        )
    if device is not None and t.device != device:
        raise ValueError(
            f"{fn}: {name} is on {t.device}; expected {device} like the activations; "
            f"move it with .to({str(device)!r})"
        )


def _check_float(fn: str, name: str, t: Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(
            f"{fn}: {name} has dtype {t.dtype}; expected a floating dtype (float32, bfloat16, "
            f"float16 or float64); convert with {name}.float()"
        )


def _check_uint8(fn: str, name: str, t: Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(t.shape) != shape or t.dtype != torch.uint8:
        raise ValueError(
            f"{fn}: {name} has shape {tuple(t.shape)} dtype {t.dtype}; "
            f"expected {shape} uint8 {what}"
        )


def _check_k(fn: str, k) -> int:
    # numpy integers are fine; floats, strings and bools are not
    if isinstance(k, bool) or not hasattr(k, "__index__"):
        raise TypeError(f"{fn}: k = {k!r} ({type(k).__name__}); expected an int")
    return operator.index(k)


def check_route_args(router_logits: Tensor, k: int) -> None:
    _check_tensor("route", "router_logits", router_logits)
    if router_logits.dim() != 2:
        raise ValueError(
            f"route: router_logits has shape {tuple(router_logits.shape)}; expected (T, E)"
        )
    _check_float("route", "router_logits", router_logits)
    E = router_logits.shape[1]
    k = _check_k("route", k)
    if not 1 <= k <= E:
        raise ValueError(f"route: k = {k}; expected 1 <= k <= E = {E} (number of experts)")


def check_linear_args(x: Tensor, blocks: Tensor, scales: Tensor, bias: Tensor | None) -> None:
    """x (T, K) floating, blocks (N, K//32, 16) uint8, scales (N, K//32) uint8, bias (N,) or None.

    Integer activations are refused, not promoted: the result is returned in x.dtype, and an
    integer result of an MXFP4 product would be silently truncated.
    """
    fn = "mxfp4_linear"
    _check_tensor(fn, "x", x)
    if x.dim() != 2:
        raise ValueError(f"mxfp4_linear: x has shape {tuple(x.shape)}; expected (T, K)")
    _check_float(fn, "x", x)
    _check_tensor(fn, "blocks", blocks, x.device)
    if blocks.dim() != 3 or blocks.shape[-1] != 16 or blocks.dtype != torch.uint8:
        raise ValueError(
            f"mxfp4_linear: blocks has shape {tuple(blocks.shape)} dtype {blocks.dtype}; "
            "expected (N, K//32, 16) uint8"
        )
    N, G, _ = blocks.shape
    if x.shape[1] != G * 32:
        raise ValueError(
            f"mxfp4_linear: x has K = {x.shape[1]}; the weight has K = {G * 32} "
            f"(blocks {tuple(blocks.shape)})"
        )
    _check_tensor(fn, "scales", scales, x.device)
    if tuple(scales.shape) != (N, G) or scales.dtype != torch.uint8:
        raise ValueError(
            f"mxfp4_linear: scales has shape {tuple(scales.shape)} dtype {scales.dtype}; "
            f"expected ({N}, {G}) uint8"
        )
    if bias is not None:
        _check_tensor(fn, "bias", bias, x.device)
        if tuple(bias.shape) != (N,):
            raise ValueError(f"mxfp4_linear: bias has shape {tuple(bias.shape)}; expected ({N},)")
        _check_float(fn, "bias", bias)


def check_moe_args(x: Tensor, routing: Routing, experts: MoEWeights) -> None:
    """Every shape, dtype, device and index range that any moe_forward back end relies on.

    Shapes: x (T, H); routing for T tokens, k choices, E experts (see Routing); the weights of
    E experts with hidden size H and intermediate size I (see MoEWeights). Index ranges (one
    pass over the T*k assignments, one host sync): experts in [0, E); offsets from 0 up to T*k,
    non-decreasing; order a permutation of range(T*k) with each expert's slice holding that
    expert's assignments; inverse[order[p]] = p.
    """
    fn = "moe_forward"
    _check_tensor(fn, "x", x)
    if x.dim() != 2:
        raise ValueError(f"moe_forward: x has shape {tuple(x.shape)}; expected (T, H)")
    _check_float(fn, "x", x)
    T, H = x.shape
    dev = x.device

    # --- the weights: E experts, hidden size H, intermediate size I
    if not isinstance(experts, MoEWeights):
        raise TypeError(
            f"moe_forward: experts is a {type(experts).__name__}; expected kernels.MoEWeights"
        )
    for name in MoEWeights._fields[:6]:
        _check_tensor(fn, f"experts.{name}", getattr(experts, name), dev)
    b1 = experts.mlp1_blocks
    if b1.dim() != 4 or b1.shape[2] * 32 != H or b1.shape[1] % 2 or b1.shape[1] < 2:
        raise ValueError(
            f"moe_forward: experts.mlp1_blocks has shape {tuple(b1.shape)}; "
            f"expected (E, 2I, {H // 32}, 16) for hidden size H = {H} (H a multiple of 32, "
            "2I even)"
        )
    E, two_i, G1 = b1.shape[:3]
    inter = two_i // 2
    if inter % 32:
        raise ValueError(
            f"moe_forward: experts.mlp1_blocks has 2I = {two_i} rows per expert; the "
            f"intermediate size I = {inter} must be a multiple of 32 (the MXFP4 block size)"
        )
    _check_uint8(fn, "experts.mlp1_blocks", b1, (E, two_i, G1, 16), "(E, 2I, H//32, 16)")
    _check_uint8(fn, "experts.mlp1_scales", experts.mlp1_scales, (E, two_i, G1), "(E, 2I, H//32)")
    G2 = inter // 32
    _check_uint8(
        fn, "experts.mlp2_blocks", experts.mlp2_blocks, (E, H, G2, 16), "(E, H, I//32, 16)"
    )
    _check_uint8(fn, "experts.mlp2_scales", experts.mlp2_scales, (E, H, G2), "(E, H, I//32)")
    for name, shape in (("mlp1_bias", (E, two_i)), ("mlp2_bias", (E, H))):
        bias = getattr(experts, name)
        if tuple(bias.shape) != shape:
            raise ValueError(
                f"moe_forward: experts.{name} has shape {tuple(bias.shape)}; expected {shape}"
            )
        _check_float(fn, f"experts.{name}", bias)
    for name in ("swiglu_limit", "swiglu_alpha"):
        value = getattr(experts, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"moe_forward: experts.{name} = {value!r}; expected a float")
        if value != value:
            raise ValueError(f"moe_forward: experts.{name} is NaN; expected a float")

    # --- the routing: T tokens, k choices each, E experts
    if not isinstance(routing, Routing):
        raise TypeError(
            f"moe_forward: routing is a {type(routing).__name__}; expected kernels.Routing "
            "(from kernels.route)"
        )
    for name in Routing._fields:
        _check_tensor(fn, f"routing.{name}", getattr(routing, name), dev)
    r = routing
    if r.experts.dim() != 2 or r.experts.shape[0] != T or r.experts.shape[1] < 1:
        raise ValueError(
            f"moe_forward: routing.experts has shape {tuple(r.experts.shape)}; expected (T, k) "
            f"with T = {T} tokens (as x) and k >= 1"
        )
    k = r.experts.shape[1]
    n = T * k
    expected = {
        "weights": (T, k),
        "order": (n,),
        "offsets": (E + 1,),
        "inverse": (n,),
    }
    for name, shape in expected.items():
        t = getattr(r, name)
        if tuple(t.shape) != shape:
            raise ValueError(
                f"moe_forward: routing.{name} has shape {tuple(t.shape)}; expected {shape} "
                f"for T = {T} tokens, k = {k}, E = {E} experts"
            )
    _check_float(fn, "routing.weights", r.weights)
    for name in ("experts", "order", "offsets", "inverse"):
        t = getattr(r, name)
        if not _is_int(t):
            raise TypeError(
                f"moe_forward: routing.{name} has dtype {t.dtype}; expected an integer dtype "
                "(int64, as kernels.route returns)"
            )
    _check_routing_indices(r, T, k, E)


def _check_routing_indices(r: Routing, T: int, k: int, E: int) -> None:
    """The index rules of a well-shaped routing, checked in numpy on the host: the index arrays
    are small (T*k entries; a copy from the GPU is the one sync the check costs) and numpy's
    small-array operations are a few microseconds, torch's tens: this runs at every MoE call."""
    n = T * k
    pre = "moe_forward: routing"
    fix = "; build it with kernels.route(router_logits, k), or keep its fields consistent"

    # one copy to the host (one sync on a GPU) for the four index arrays, then split
    fields = (r.experts.reshape(-1), r.order, r.offsets, r.inverse)
    packed = torch.cat([t.detach().long() for t in fields]).cpu().numpy()  # (3n + E + 1,)
    flat, order, offsets, inverse = np.split(packed, np.cumsum([n, n, E + 1]))
    for name, a, hi in (("experts", flat, E), ("order", order, n), ("inverse", inverse, n)):
        bad = np.flatnonzero((a < 0) | (a >= hi))
        if len(bad):
            i = int(bad[0])
            shown = f"experts[{i // k}, {i % k}]" if name == "experts" else f"{name}[{i}]"
            raise ValueError(f"{pre}.{shown} = {int(a[i])}; expected 0 <= value < {hi}{fix}")
    if offsets[0] != 0 or offsets[-1] != n:
        raise ValueError(
            f"{pre}.offsets runs from {int(offsets[0])} to {int(offsets[-1])}; expected 0 to "
            f"T*k = {n}{fix}"
        )
    sizes = np.diff(offsets)  # (E,) assignments per expert
    if (sizes < 0).any():
        e = int(np.flatnonzero(sizes < 0)[0])
        raise ValueError(
            f"{pre}.offsets decreases at expert {e}: offsets[{e}] = {int(offsets[e])} > "
            f"offsets[{e + 1}] = {int(offsets[e + 1])}; expected non-decreasing{fix}"
        )
    back = inverse[order]  # (n,) must be 0, 1, ..., n-1: order a permutation, inverse its inverse
    wrong = np.flatnonzero(back != np.arange(n))
    if len(wrong):
        p = int(wrong[0])
        raise ValueError(
            f"{pre}: inverse[order[{p}]] = {int(back[p])}; expected {p} (order must be a "
            f"permutation of range(T*k) = range({n}) and inverse its inverse){fix}"
        )
    slice_expert = np.repeat(np.arange(E), sizes)  # (n,) whose slice each position is in
    wrong = np.flatnonzero(flat[order] != slice_expert)
    if len(wrong):
        p = int(wrong[0])
        a = int(order[p])
        raise ValueError(
            f"{pre}.order[{p}] = {a} sits in expert {int(slice_expert[p])}'s slice of offsets, "
            f"but routing.experts[{a // k}, {a % k}] = {int(flat[a])}{fix}"
        )


# ----------------------------------------------------------------------------- routing


def route(router_logits: Tensor, k: int) -> Routing:
    """Top-k experts per token, softmax over their logits, then a counting sort by expert."""
    check_route_args(router_logits, k)
    T, E = router_logits.shape
    # top-k: a stable descending sort keeps equal logits in index order -> lower expert id first
    vals, ids = torch.sort(router_logits.float(), dim=-1, descending=True, stable=True)
    weights = torch.softmax(vals[:, :k], dim=-1)  # (T, k)
    experts = ids[:, :k].to(torch.int32)  # (T, k)

    # counting sort of the T*k flat assignments a = t*k + j by expert id
    flat = experts.reshape(-1).long()  # (T*k,)
    dev = router_logits.device  # the reference runs on any device (the fallback of "auto")
    counts = torch.zeros(E, dtype=torch.int64, device=dev).index_add_(
        0, flat, torch.ones_like(flat)
    )
    offsets = torch.zeros(E + 1, dtype=torch.int64, device=dev)
    offsets[1:] = torch.cumsum(counts, 0)  # exclusive prefix sum: where each expert starts
    # stable scatter: assignment a goes to offsets[e] + (how many earlier assignments chose e).
    # As a loop:  for a in range(T*k): pos[a] = next_free[e]; next_free[e] += 1   (e = flat[a])
    # Here the "how many earlier" is a running count per expert (a cumsum over a one-hot matrix).
    one_hot = torch.nn.functional.one_hot(flat, E)  # (T*k, E)
    rank = (torch.cumsum(one_hot, 0) - 1).gather(1, flat[:, None]).squeeze(1)  # (T*k,)
    pos = offsets[flat] + rank  # (T*k,) final position of each assignment
    order = torch.empty_like(pos)
    order[pos] = torch.arange(T * k, dtype=torch.int64, device=dev)
    inverse = pos  # inverse[a] = position of a, i.e. inverse[order[p]] = p
    return Routing(weights, experts, order, offsets, inverse)


# ----------------------------------------------------------------------------- MXFP4 linear


def mxfp4_linear(x: Tensor, blocks: Tensor, scales: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W.T + bias with W = dequantize(blocks, scales): the obvious way, (N, K) in float32."""
    check_linear_args(x, blocks, scales, bias)
    w = dequantize(blocks, scales, torch.float32)  # (N, K): the whole matrix, 8x the packed bytes
    y = x.float() @ w.T  # (T, N)
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


# ----------------------------------------------------------------------------- MoE


class _PackedExperts:
    """MoEWeights as the MoE block's per-expert loop sees them: `expert(e, rows)` runs expert e
    (mlp1 -> SwiGLU -> mlp2) with a back end's `linear` (its MXFP4 matmul); `mix` IS
    `MLPBlock.mix`, the package's one per-expert loop (chapter 6)."""

    mix = MLPBlock.mix

    def __init__(self, experts: MoEWeights, linear):
        self.w, self.linear = experts, linear

    def expert(self, e: int, t: Tensor) -> Tensor:
        w = self.w
        h = self.linear(t, w.mlp1_blocks[e], w.mlp1_scales[e], w.mlp1_bias[e])  # (n, 2I)
        act = swiglu(h, w.swiglu_limit, w.swiglu_alpha)  # (n, I)
        return self.linear(act, w.mlp2_blocks[e], w.mlp2_scales[e], w.mlp2_bias[e])  # (n, H)


def mix_packed(x: Tensor, routing: Routing, experts: MoEWeights, linear) -> Tensor:
    """The MoE experts through the block's one per-expert loop, with `linear` as the MXFP4
    matmul: what a back end supplies is only its kernel. (T, H) in x.dtype."""
    check_moe_args(x, routing, experts)
    w = _PackedExperts(experts, linear)
    return w.mix(x.float(), routing.experts.long(), routing.weights.float()).to(x.dtype)


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights) -> Tensor:
    """sum_j routing.weights[:, j] * expert_{routing.experts[:, j]}(x) -> (T, H): each expert's
    weights decoded once for all the tokens routed to it, on this file's torch matmul. The
    numba CPU back end runs the same loop with its kernel; the GPU back ends fuse it on the
    device and are tested against this one."""
    return mix_packed(x, routing, experts, mxfp4_linear)


def moe_forward_per_token(
    x: Tensor, routing: Routing, experts: MoEWeights, dense: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """The per-token gather of OpenAI's reference `gpt_oss/torch/model.py` MLPBlock: each token
    gathers its k experts' dense weights, then two batched einsums.

        mlp1_weight = W1[expert_indices]                   # (T, k, 2I, H): a copy per token!
        h = einsum("beck,bk->bec", mlp1_weight, t) + b1[expert_indices]
        ...
        y = einsum("beck,bek->bec", W2[expert_indices], swiglu(h)) + b2[expert_indices]
        out = einsum("bec,be->bc", y, expert_weights)

    `dense` = (W1 (E, 2I, H), W2 (E, H, I)) dequantized weights, as OpenAI's loader keeps them
    (decoded once at load time); if None they are dequantized here to bf16. The gather copies
    k experts' weights for every token, so tokens are processed one at a time to bound memory.
    """
    check_moe_args(x, routing, experts)
    if dense is None:
        dense = (
            dequantize(experts.mlp1_blocks, experts.mlp1_scales, torch.bfloat16),
            dequantize(experts.mlp2_blocks, experts.mlp2_scales, torch.bfloat16),
        )
    W1, W2 = dense  # (E, 2I, H), (E, H, I)
    b1, b2 = experts.mlp1_bias.float(), experts.mlp2_bias.float()
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)  # (T, H)
    for t in range(x.shape[0]):
        ids = routing.experts[t].long()  # (k,)
        xt = x[t].float()  # (H,)
        h = torch.einsum("eck,k->ec", W1[ids].float(), xt) + b1[ids]  # (k, 2I)
        act = swiglu(h, experts.swiglu_limit, experts.swiglu_alpha)  # (k, I)
        y = torch.einsum("eck,ek->ec", W2[ids].float(), act) + b2[ids]  # (k, H)
        out[t] = torch.einsum("ec,e->c", y, routing.weights[t].float())
    return out.to(x.dtype)
