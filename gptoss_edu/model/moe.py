"""The mixture-of-experts block (chapter 6).

A router scores every expert for every token; the top `experts_per_token` scores are
softmaxed among themselves into weights; each chosen expert is a SwiGLU MLP

    h = W1_e t + b1_e                       (2 * intermediate values, gate and linear interleaved)
    gate, lin = h[0::2], h[1::2]
    a = min(gate, 7) * sigmoid(1.702 * min(gate, 7)) * (clamp(lin, -7, 7) + 1)
    y_e = W2_e a + b2_e

and the block's output is the weighted sum of the chosen experts' outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .norm import RMSNorm


def swiglu(h: torch.Tensor, limit: float = 7.0, alpha: float = 1.702) -> torch.Tensor:
    """Clamped SwiGLU on interleaved (gate, linear) pairs: (..., 2I) -> (..., I)."""
    gate, lin = h[..., 0::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    lin = lin.clamp(min=-limit, max=limit)
    return gate * torch.sigmoid(alpha * gate) * (lin + 1)


class MLPBlock(nn.Module):
    """RMSNorm -> router -> top-k -> experts -> weighted sum. Returns the residual update.

    Attribute names match the checkpoint: block.N.mlp.{norm.scale, gate.weight, gate.bias,
    mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias}. Expert weights are stored out x in:
    mlp1_weight (E, 2I, H), mlp2_weight (E, H, I).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
        self.num_experts = E
        self.experts_per_token = config.experts_per_token
        self.swiglu_limit = config.swiglu_limit
        self.swiglu_alpha = config.swiglu_alpha
        self.norm = RMSNorm(H, eps=config.rms_norm_eps)
        self.gate = nn.Linear(H, E, bias=True)
        self.mlp1_weight = nn.Parameter(torch.empty(E, 2 * I, H))
        self.mlp1_bias = nn.Parameter(torch.zeros(E, 2 * I))
        self.mlp2_weight = nn.Parameter(torch.empty(E, H, I))
        self.mlp2_bias = nn.Parameter(torch.zeros(E, H))
        nn.init.normal_(self.mlp1_weight, std=0.02)
        nn.init.normal_(self.mlp2_weight, std=0.02)

    def route(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router logits (N, E), expert weights (N, k) float32 and expert ids (N, k), best first."""
        logits = self.gate(t)  # (N, E)
        top = torch.topk(logits, k=self.experts_per_token, dim=-1, sorted=True)
        weights = torch.softmax(top.values.float(), dim=-1)  # softmax over the k chosen only
        return logits, weights, top.indices

    def expert(self, e: int, t: torch.Tensor) -> torch.Tensor:
        """Expert e applied to tokens t (n, H) -> (n, H)."""
        h = t @ self.mlp1_weight[e].T + self.mlp1_bias[e]  # (n, 2I)
        a = swiglu(h, self.swiglu_limit, self.swiglu_alpha)  # (n, I)
        return a @ self.mlp2_weight[e].T + self.mlp2_bias[e]  # (n, H)

    def forward(self, x: torch.Tensor, return_routing: bool = False):
        shape = x.shape
        t = self.norm(x).reshape(-1, shape[-1])  # (N, H)
        logits, weights, ids = self.route(t)
        out = torch.zeros(t.shape, dtype=torch.float32, device=t.device)
        # Sort by expert: each expert runs once over all the tokens routed to it.
        for e in torch.unique(ids).tolist():
            token, slot = torch.nonzero(ids == e, as_tuple=True)
            y = self.expert(e, t[token])  # (n, H)
            out.index_add_(0, token, y.float() * weights[token, slot, None])
        out = out.to(x.dtype).reshape(shape)
        if return_routing:
            return out, (logits, weights, ids)
        return out
