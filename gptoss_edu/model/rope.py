"""Rotary position embeddings with YaRN scaling (chapter 4).

gpt-oss rotates the two halves of each head ("NeoX" layout, not interleaved pairs) by angles
`p * inv_freq_i`, where YaRN blends the original frequencies (fast pairs, i < low) with
frequencies slowed down by the scaling factor (slow pairs, i > high) over a linear ramp, and
multiplies cos and sin by a concentration factor `0.1 ln(factor) + 1`.

Chapter 4 develops every line of this file, cell by cell (tools/book_coverage.py checks it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig


def yarn_inv_freq(config: ModelConfig) -> tuple[torch.Tensor, float]:
    """Return (inv_freq (head_dim/2,) float64, concentration) for the config (chapter 4)."""
    i = torch.arange(config.head_dim // 2, dtype=torch.float64)  # pair index, (head_dim/2,)
    theta = config.rope_theta ** (-2.0 * i / config.head_dim)  # plain RoPE, radians per token
    factor = config.rope_scaling_factor
    if factor == 1:
        return theta, 1.0
    low, high = config.yarn_bounds()  # the pair indices where the ramp starts and ends
    ramp = ((i - low) / (high - low)).clamp(0, 1)  # 0: fast pair (kept), 1: slow pair (/ factor)
    inv_freq = (1 - ramp) * theta + ramp * (theta / factor)
    concentration = 0.1 * math.log(factor) + 1.0
    return inv_freq, concentration


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, heads, head_dim) by cos/sin (T, head_dim/2), half-split layout."""
    cos = cos[:, None, :].to(x.dtype)  # (T, 1, d_half)
    sin = sin[:, None, :].to(x.dtype)
    x1, x2 = torch.chunk(x, 2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotates queries and keys by their positions: YaRN's inv_freq (float32) and concentration."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        inv_freq, concentration = yarn_inv_freq(config)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.concentration = concentration

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (T, head_dim/2) in float32 for integer positions (T,)."""
        angles = positions.to(torch.float32)[:, None] * self.inv_freq.to(positions.device)[None, :]
        return torch.cos(angles) * self.concentration, torch.sin(angles) * self.concentration

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor):
        """q (B, T, H, D) and k (B, T, Hkv, D) rotated for their positions (T,)."""
        cos, sin = self.cos_sin(positions)  # (T, D/2) each
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
