"""Attention with grouped-query heads, sliding windows, sinks and a KV cache (chapter 5).

Every query head h reads key/value head h // (heads per KV head). Even layers only see the last
`sliding_window` tokens (the query's own included); odd layers see the whole past. Each head
has one learned "sink" logit that joins the softmax as an extra column and is then dropped, a
virtual key whose value is zero, so that a head can put its attention nowhere:

    p_j = exp(s_j) / (sum_j' exp(s_j') + exp(sink_h))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .norm import RMSNorm
from .rope import RotaryEmbedding


def attention_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, sliding_window: int | None
) -> torch.Tensor:
    """Boolean (T, S) mask, True where query at q_positions[t] may read key at k_positions[s].

    Causal: k <= q. Sliding: also q - window < k (window keys, the query's own included).
    """
    q = q_positions[:, None]
    k = k_positions[None, :]
    allowed = k <= q
    if sliding_window is not None:
        allowed = allowed & (k > q - sliding_window)
    return allowed


def sdpa_with_sinks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sinks: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    return_weights: bool = False,
):
    """Scaled dot-product attention with one sink logit per query head.

    q: (B, T, Hkv, G, D) queries grouped by the KV head they read; k, v: (B, S, Hkv, D);
    sinks: (Hkv * G,); mask: (T, S) bool. Returns (B, T, Hkv * G * D), and the (B, H, T, S)
    attention weights (the sink's share is 1 - their row sum) when return_weights is set.
    Scores and softmax are computed in float32 whatever the input dtype.
    """
    B, T, Hkv, G, D = q.shape
    scores = torch.einsum("bthgd,bshd->bhgts", q.float(), k.float()) * scale  # (B, Hkv, G, T, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    sink = sinks.float().reshape(1, Hkv, G, 1, 1).expand(B, Hkv, G, T, 1)
    weights = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]  # drop the sink
    out = torch.einsum("bhgts,bshd->bthgd", weights, v.float()).to(q.dtype)
    out = out.reshape(B, T, Hkv * G * D)
    if return_weights:
        return out, weights.reshape(B, Hkv * G, T, -1)
    return out


class KVCache:
    """Keys and values of the tokens seen so far, one entry per layer.

    `offset` is the number of tokens already processed (the position of the next token).
    Sliding-window layers keep only their last `sliding_window` keys: older ones can never be
    read again, which caps their memory whatever the context length.
    """

    def __init__(self, config: ModelConfig, trim_sliding: bool = True):
        self.config = config
        self.trim_sliding = trim_sliding
        self.offset = 0
        self.keys: list[torch.Tensor | None] = [None] * config.num_hidden_layers
        self.values: list[torch.Tensor | None] = [None] * config.num_hidden_layers
        self.start: list[int] = [0] * config.num_hidden_layers  # position of keys[layer][:, 0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append this step's k, v (B, T, Hkv, D); return all keys/values to attend to and
        their positions (S,)."""
        if self.keys[layer] is None:
            k_all, v_all = k, v
        else:
            if self.keys[layer].shape[0] != k.shape[0]:
                raise ValueError(
                    f"KVCache: batch size changed from {self.keys[layer].shape[0]} to {k.shape[0]}; "
                    "start a new cache for a new batch"
                )
            k_all = torch.cat([self.keys[layer], k], dim=1)
            v_all = torch.cat([self.values[layer], v], dim=1)
        positions = torch.arange(
            self.start[layer], self.start[layer] + k_all.shape[1], device=k.device
        )
        window = self.config.sliding_window
        if self.trim_sliding and self.config.is_sliding(layer) and k_all.shape[1] > window:
            drop = k_all.shape[1] - window
            self.keys[layer], self.values[layer] = k_all[:, drop:], v_all[:, drop:]
            self.start[layer] += drop
        else:
            self.keys[layer], self.values[layer] = k_all, v_all
        return k_all, v_all, positions

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


class AttentionBlock(nn.Module):
    """One attention layer: RMSNorm -> qkv -> RoPE -> attention with sinks -> out.

    Returns the residual update (the caller adds it to x). Attribute names match the
    checkpoint's keys: block.N.attn.{norm.scale, qkv.weight, qkv.bias, sinks, out.weight, out.bias}.
    """

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_attention_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.sliding_window = config.sliding_window if config.is_sliding(layer_idx) else None
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.qkv = nn.Linear(config.hidden_size, config.qkv_dim, bias=True)
        self.sinks = nn.Parameter(torch.zeros(config.num_attention_heads))
        self.out = nn.Linear(config.q_dim, config.hidden_size, bias=True)
        self.sm_scale = 1 / math.sqrt(config.head_dim)
        self.rope = RotaryEmbedding(config)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ):
        B, T, _ = x.shape  # (B, T, H)
        Hkv, D = self.num_key_value_heads, self.head_dim
        G = self.num_attention_heads // Hkv
        qkv = self.qkv(self.norm(x))  # (B, T, q_dim + 2 kv_dim), q then k then v
        q, k, v = qkv.split([self.config.q_dim, self.config.kv_dim, self.config.kv_dim], dim=-1)
        q = q.reshape(B, T, Hkv * G, D)
        k = k.reshape(B, T, Hkv, D)
        v = v.reshape(B, T, Hkv, D)
        q, k = self.rope(q, k, positions)
        q = q.reshape(B, T, Hkv, G, D)  # query head h = kv * G + g reads KV head kv
        if cache is not None:
            k, v, k_positions = cache.update(self.layer_idx, k, v)
        else:
            k_positions = positions
        mask = attention_mask(positions, k_positions, self.sliding_window)
        result = sdpa_with_sinks(q, k, v, self.sinks, mask, self.sm_scale, return_weights)
        if return_weights:
            attn, weights = result
            return self.out(attn), weights
        return self.out(result)
