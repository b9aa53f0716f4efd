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

from typing import NamedTuple

import torch
from torch import Tensor

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
# Shared by every back end, so that all of them reject bad input with the same message.


def check_route_args(router_logits: Tensor, k: int) -> None:
    if router_logits.dim() != 2:
        raise ValueError(
            f"route: router_logits has shape {tuple(router_logits.shape)}; expected (T, E)"
        )
    E = router_logits.shape[1]
    if not 1 <= k <= E:
        raise ValueError(f"route: k = {k}; expected 1 <= k <= E = {E} (number of experts)")


def check_linear_args(x: Tensor, blocks: Tensor, scales: Tensor, bias: Tensor | None) -> None:
    if x.dim() != 2:
        raise ValueError(f"mxfp4_linear: x has shape {tuple(x.shape)}; expected (T, K)")
    if blocks.dim() != 3 or blocks.shape[-1] != 16 or blocks.dtype != torch.uint8:
        raise ValueError(
            f"mxfp4_linear: blocks has shape {tuple(blocks.shape)} dtype {blocks.dtype}; "
            "expected (N, K//32, 16) uint8"
        )
    N, G, _ = blocks.shape
    if x.shape[1] != G * 32:
        raise ValueError(
            f"mxfp4_linear: x has K = {x.shape[1]}; the weight has K = {G * 32} (blocks {tuple(blocks.shape)})"
        )
    if scales.shape != (N, G) or scales.dtype != torch.uint8:
        raise ValueError(
            f"mxfp4_linear: scales has shape {tuple(scales.shape)} dtype {scales.dtype}; "
            f"expected ({N}, {G}) uint8"
        )
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"mxfp4_linear: bias has shape {tuple(bias.shape)}; expected ({N},)")


def check_moe_args(x: Tensor, routing: Routing, experts: MoEWeights) -> None:
    if x.dim() != 2:
        raise ValueError(f"moe_forward: x has shape {tuple(x.shape)}; expected (T, H)")
    T, H = x.shape
    E, two_i, G1, _ = experts.mlp1_blocks.shape
    if G1 * 32 != H:
        raise ValueError(
            f"moe_forward: mlp1_blocks has shape {tuple(experts.mlp1_blocks.shape)}; "
            f"expected (E, 2I, {H // 32}, 16) for hidden size H = {H}"
        )
    if experts.mlp2_blocks.shape[:3] != (E, H, two_i // 2 // 32):
        raise ValueError(
            f"moe_forward: mlp2_blocks has shape {tuple(experts.mlp2_blocks.shape)}; "
            f"expected ({E}, {H}, {two_i // 2 // 32}, 16)"
        )
    if routing.experts.shape[0] != T or routing.offsets.shape != (E + 1,):
        raise ValueError(
            f"moe_forward: routing is for {routing.experts.shape[0]} tokens and "
            f"{routing.offsets.shape[0] - 1} experts; x has T = {T}, the weights E = {E}"
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


def swiglu(h: Tensor, limit: float = 7.0, alpha: float = 1.702) -> Tensor:
    """gpt-oss's clamped SwiGLU on interleaved (gate, linear) pairs: (..., 2I) -> (..., I)."""
    gate, lin = h[..., 0::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    lin = lin.clamp(-limit, limit)
    return gate * torch.sigmoid(alpha * gate) * (lin + 1)


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights) -> Tensor:
    """Grouped MoE: for each expert, its tokens together: gather -> mlp1 -> SwiGLU -> mlp2 -> scatter.

    Each expert's weights are decoded once for all the tokens routed to it (the point of the
    counting sort), and results land in a (T*k, H) buffer, one row per assignment, summed per
    token at the end in j order: no two experts write the same row, so there is no race.
    """
    check_moe_args(x, routing, experts)
    T, H = x.shape
    k = routing.experts.shape[1]
    E = experts.mlp1_blocks.shape[0]
    xf = x.float()
    w_flat = routing.weights.reshape(-1).float()  # (T*k,)
    y_assign = torch.zeros(
        T * k, H, dtype=torch.float32, device=x.device
    )  # (T*k, H) per assignment
    offsets = routing.offsets.tolist()
    for e in range(E):
        lo, hi = offsets[e], offsets[e + 1]
        if lo == hi:
            continue  # no token chose this expert: its weights are never read
        a = routing.order[lo:hi]  # (n,) assignment ids of expert e
        t = a // k  # (n,) their tokens
        h = mxfp4_linear(
            xf[t], experts.mlp1_blocks[e], experts.mlp1_scales[e], experts.mlp1_bias[e]
        )
        act = swiglu(h, experts.swiglu_limit, experts.swiglu_alpha)  # (n, I)
        y = mxfp4_linear(act, experts.mlp2_blocks[e], experts.mlp2_scales[e], experts.mlp2_bias[e])
        y_assign[a] = y * w_flat[a, None]  # (n, H) weighted, bias included
    return y_assign.reshape(T, k, H).sum(dim=1).to(x.dtype)  # (T, H)


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
