"""Attention with grouped-query heads, sliding windows, sinks and a KV cache (chapter 5).

Every query head h reads key/value head h // G (G query heads per KV head). Even layers only see
the last `sliding_window` tokens (the query's own included); odd layers see the whole past. Each
head has one learned "sink" logit that joins the softmax as an extra column, a virtual key whose
value is zero, so that a head can put its attention nowhere:

    p_j = exp(s_j) / (sum_j' exp(s_j') + exp(sink_h))

Chapter 5 develops every line of this file, cell by cell (tools/book_coverage.py checks it).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..config import ModelConfig
from .norm import RMSNorm
from .rope import RotaryEmbedding

# The float32 scores of one block of queries (B x heads x rows x (S + 1) x 4 bytes) stay under
# this: a 4,096-token prompt of gpt-oss (64 heads) would otherwise build (T, S) scores of 4.3 GB,
# three times over (scores, the sink column joined, the softmax). Each query's row is computed
# on its own, so the blocks give the same numbers as one pass.
SCORES_BYTES = 2**28  # 256 MiB


def attention_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, sliding_window: int | None
) -> torch.Tensor:
    """Boolean (T, S) mask, True where query at q_positions[t] may read key at k_positions[s].

    Causal: k <= q. Sliding: also q - window < k (window keys, the query's own included).
    The keys may come in any order (a ring buffer's): only their positions matter.
    """
    q = q_positions[:, None]  # (T, 1)
    k = k_positions[None, :]  # (1, S)
    allowed = k <= q
    if sliding_window is not None:
        allowed = allowed & (k > q - sliding_window)
    return allowed  # (T, S)


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, sinks: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Softmax weights with the sink as an extra, last column, in float32.

    q: (B, T, Hkv, G, D) queries grouped by the KV head they read; k: (B, S, Hkv, D);
    sinks: (Hkv * G,); mask: (T, S) bool. Returns (B, Hkv, G, T, S + 1); each row sums to 1.
    """
    B, T, Hkv, G, D = q.shape
    scores = torch.einsum("bthgd,bshd->bhgts", q.float(), k.float()) * scale  # (B, Hkv, G, T, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    sink = sinks.float().reshape(1, Hkv, G, 1, 1).expand(B, Hkv, G, T, 1)
    return torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)  # (B, Hkv, G, T, S + 1)


def attend(weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Weighted sum of the values: weights (B, Hkv, G, T, S + 1), v (B, S, Hkv, D) ->
    (B, T, Hkv * G * D) in v's dtype. The sink's value is zero, so its column is dropped."""
    B, Hkv, G, T, _ = weights.shape
    out = torch.einsum("bhgts,bshd->bthgd", weights[..., :-1], v.float())  # (B, T, Hkv, G, D)
    return out.reshape(B, T, -1).to(v.dtype)


def sdpa_with_sinks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sinks: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    return_weights: bool = False,
):
    """Scaled dot-product attention with one sink logit per query head: shapes as in
    `attention_weights`; returns (B, T, Hkv * G * D). Scores and softmax run in float32.

    `return_weights=True` is deprecated (it changes the return type); use `attention_weights`,
    or pass a `Recorder("attention")` to the model.
    """
    weights = attention_weights(q, k, sinks, mask, scale)  # (B, Hkv, G, T, S + 1)
    out = attend(weights, v).to(q.dtype)  # (B, T, Hkv * G * D)
    if return_weights:
        deprecated("sdpa_with_sinks(return_weights=True)", "attention_weights(q, k, ...)")
        return out, weights[..., :-1].flatten(1, 2)  # (B, H, T, S), the sink's column dropped
    return out


def deprecated(old: str, new: str) -> None:
    """Warn once per call site that `old` goes away in the next release; `new` replaces it."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new} instead",
        DeprecationWarning,
        stacklevel=3,
    )


class KVCache:
    """Keys and values of the tokens seen so far, one buffer per layer (chapter 5).

    Full layers keep every key in a buffer in position order; when it is full it is reallocated
    twice as large, so a long generation copies each key O(1) times (not once per step).
    Sliding layers keep a ring buffer of `sliding_window` slots: the key of position p lives in
    slot p % window and overwrites the key that no later query can read. Memory of a sliding
    layer is capped whatever the context.

    `update(layer, k, v)` returns the keys and values a new chunk of queries attends to, with
    their positions (S,), which for a sliding layer are not in order: `attention_mask` uses
    the positions, so the order does not matter. `offset` is the number of tokens the model has
    processed (the position of the next token); `GptOss.forward` advances it.

    `trim_sliding=False` keeps every key in the sliding layers too (as full layers do).
    """

    def __init__(self, config: ModelConfig, trim_sliding: bool = True):
        self.config = config
        self.trim_sliding = trim_sliding
        self.offset = 0
        n = config.num_hidden_layers
        self.keys: list[torch.Tensor | None] = [None] * n  # (B, capacity, Hkv, D) per layer
        self.values: list[torch.Tensor | None] = [None] * n
        self.slot_positions: list[torch.Tensor | None] = [None] * n  # (capacity,) position per slot
        self.length = [0] * n  # tokens written to each layer so far

    def window(self, layer: int) -> int | None:
        """The ring size of a sliding layer, or None for a layer that keeps everything."""
        if self.trim_sliding and self.config.is_sliding(layer):
            return self.config.sliding_window
        return None

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this chunk's k, v (B, T, Hkv, D); return (keys, values, positions) to attend to."""
        B, T, Hkv, D = k.shape
        if self.keys[layer] is not None and self.keys[layer].shape[0] != B:
            raise ValueError(
                f"KVCache: batch size changed from {self.keys[layer].shape[0]} to {B} at layer "
                f"{layer}; start a new cache (model.new_cache()) for a new batch"
            )
        start = self.length[layer]  # position of k[:, 0]
        new_positions = torch.arange(start, start + T, device=k.device)  # (T,)
        self.length[layer] += T
        window = self.window(layer)
        if window is None:
            return self._append(layer, k, v, new_positions)
        return self._ring(layer, k, v, new_positions, window)

    def _append(self, layer, k, v, new_positions):
        start, end = int(new_positions[0]), int(new_positions[-1]) + 1
        if self.keys[layer] is None or self.keys[layer].shape[1] < end:
            capacity = max(end, 2 * (0 if self.keys[layer] is None else self.keys[layer].shape[1]))
            keys = k.new_zeros(k.shape[0], capacity, *k.shape[2:])  # (B, capacity, Hkv, D)
            values = v.new_zeros(v.shape[0], capacity, *v.shape[2:])
            if self.keys[layer] is not None:  # move what is there to the larger buffer
                keys[:, :start] = self.keys[layer][:, :start]
                values[:, :start] = self.values[layer][:, :start]
            self.keys[layer], self.values[layer] = keys, values
            self.slot_positions[layer] = torch.arange(capacity, device=k.device)
        self.keys[layer][:, start:end] = k
        self.values[layer][:, start:end] = v
        positions = self.slot_positions[layer][:end]  # (S,) = 0, 1, ..., end - 1
        return self.keys[layer][:, :end], self.values[layer][:, :end], positions

    def _ring(self, layer, k, v, new_positions, window):
        if self.keys[layer] is None:
            self.keys[layer] = k.new_zeros(k.shape[0], window, *k.shape[2:])  # (B, W, Hkv, D)
            self.values[layer] = v.new_zeros(v.shape[0], window, *v.shape[2:])
            self.slot_positions[layer] = torch.full((window,), -1, device=k.device)  # -1: empty
        filled = self.slot_positions[layer] >= 0  # (W,) slots holding a key
        # attend to what the ring holds (the mask drops keys out of a query's window), then to
        # the new chunk: a chunk longer than one token needs keys the ring is about to overwrite
        keys = torch.cat([self.keys[layer][:, filled], k], dim=1)  # (B, S, Hkv, D)
        values = torch.cat([self.values[layer][:, filled], v], dim=1)
        positions = torch.cat([self.slot_positions[layer][filled], new_positions])  # (S,)
        keep = new_positions[-window:]  # only the last `window` new keys can be read again
        slots = keep % window
        self.keys[layer][:, slots] = k[:, -window:]
        self.values[layer][:, slots] = v[:, -window:]
        self.slot_positions[layer][slots] = keep
        return keys, values, positions

    def nbytes(self) -> int:
        """Bytes held by the buffers (full layers may hold up to twice what they use)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


class AttentionBlock(nn.Module):
    """One attention layer: RMSNorm -> qkv -> RoPE -> attention with sinks -> out.

    Returns the residual update (B, T, hidden) (the caller adds it to x). Attribute names match
    the checkpoint's keys: block.N.attn.{norm.scale, qkv.weight, qkv.bias, sinks, out.*}.

    With a `Recorder` that wants "attention", records this layer's softmax weights as
    (B, heads, T, S + 1) float32: the input is always batched (B, T, hidden); column s < S is
    the key at the s-th attended position (in position order without a cache), and the LAST
    column is the sink's share, so every row sums to 1.
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

    def project(self, x: torch.Tensor, positions: torch.Tensor):
        """x (B, T, hidden) -> q (B, T, Hkv, G, D) and k (B, T, Hkv, D), rotated; v (B, T, Hkv, D)."""
        B, T, _ = x.shape
        H, Hkv, D = self.num_attention_heads, self.num_key_value_heads, self.head_dim
        qkv = self.qkv(self.norm(x))  # (B, T, H*D + 2*Hkv*D): q, then k, then v
        q, k, v = qkv.split([H * D, Hkv * D, Hkv * D], dim=-1)
        q, k = self.rope(q.reshape(B, T, H, D), k.reshape(B, T, Hkv, D), positions)
        q = q.reshape(B, T, Hkv, H // Hkv, D)  # query head h = kv * G + g reads KV head kv
        return q, k, v.reshape(B, T, Hkv, D)

    def forward(self, x, positions, cache=None, return_weights=False, recorder=None):
        """x (B, T, hidden) at positions (T,) -> the residual update (B, T, hidden)."""
        q, k, v = self.project(x, positions)
        if cache is not None:
            k, v, k_positions = cache.update(self.layer_idx, k, v)  # (B, S, Hkv, D), (S,)
        else:
            k_positions = positions
        mask = attention_mask(positions, k_positions, self.sliding_window)  # (T, S)
        recording = recorder is not None and recorder.wants("attention")
        if not (recording or return_weights):  # nobody keeps the weights: queries in blocks
            B, T, Hkv, G, _ = q.shape
            rows = max(1, SCORES_BYTES // (4 * B * Hkv * G * (k.shape[1] + 1)))  # per block
            parts = []
            for t in range(0, T, rows):
                m, kb, vb = mask[t : t + rows], k, v  # (rows, S)
                if self.sliding_window is not None:  # only keys a query of the block may read
                    cols = m.any(0).nonzero().squeeze(1)  # rows + window - 1 of them at most
                    if len(cols) < m.shape[1]:
                        m, kb, vb = m[:, cols], k[:, cols], v[:, cols]
                w = attention_weights(q[:, t : t + rows], kb, self.sinks, m, self.sm_scale)
                parts.append(attend(w, vb))  # (B, rows, Hkv * G * D)
            return self.out(torch.cat(parts, dim=1))  # (B, T, hidden)
        weights = attention_weights(q, k, self.sinks, mask, self.sm_scale)  # (B, Hkv, G, T, S+1)
        if recording:
            recorder.record("attention", self.layer_idx, weights.flatten(1, 2))  # (B, H, T, S+1)
        update = self.out(attend(weights, v))  # (B, T, hidden)
        if return_weights:
            deprecated("AttentionBlock(return_weights=True)", "recorder=Recorder('attention')")
            return update, weights[..., :-1].flatten(1, 2)  # (B, H, T, S), no sink column
        return update
