"""RMSNorm, the normalisation before every attention and MoE block (chapter 3).

    y = x / sqrt(mean(x^2) + eps) * scale

computed in float32 whatever the input dtype, then cast back: bf16 has too few mantissa bits to
sum 2880 squares accurately. Chapter 3 develops every line of this file.
"""

import torch
from torch import nn


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension, with a learned `scale` (the checkpoint's `*.norm.scale`)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(num_features, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"RMSNorm: last dimension of the input is {x.shape[-1]}; expected {self.num_features}"
            )
        t = x.float()  # (..., H): all arithmetic in float32
        t = t * torch.rsqrt(torch.mean(t * t, dim=-1, keepdim=True) + self.eps)
        return (t * self.scale.float()).to(x.dtype)  # one rounding, at the end
