"""The mixture-of-experts block (chapter 6): router, top-k, clamped SwiGLU experts, weighted sum.

    t = RMSNorm(x)                                         (N, H) tokens
    logits = gate(t)                                       (N, E) one score per expert
    experts, weights = route(logits, k)                    (N, k) best first, softmax over the k
    y_e(t) = W2_e swiglu(W1_e t + b1_e) + b2_e             each expert a SwiGLU MLP
    out = sum_j weights[:, j] * y_{experts[:, j]}(t)       the residual update

`route` is the one routing rule of the package: the k largest logits, ties broken by the lower
expert id (a stable sort), then a softmax over the k chosen logits only. Training (chapter 14)
and every kernel back end (chapters 9-10) follow the same rule.

The seam for speed (chapters 8-10)
----------------------------------
The expert weights are 90% of gpt-oss's parameters. The block never multiplies them itself; the
per-expert loop asks

    expert_linear(weight, e, x)     # x (n, K) -> (n, N): x @ W_e.T for expert e's (N, K) matrix

which is the whole interface between the textbook block and fast storage:

- a plain float tensor `weight` (E, N, K) (an nn.Parameter, experts="dequantized") does
  `x @ weight[e].T`: the math, for reading and training;
- any other object supplies its own `weight.linear(e, x)` with that meaning. The package's one
  such object is `gptoss_edu.mxfp4.MXFP4Weight` (experts="mxfp4"): the checkpoint's packed bytes
  (state-dict keys `mlp1_weight.blocks` / `mlp1_weight.scales`), multiplied by a kernel back end
  of `gptoss_edu.kernels`. Choosing the back end and saying once which one runs live there, on
  the packed side, not in this file.

Biases, SwiGLU, routing and the weighted sum are the same code for every storage.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..config import ModelConfig
from .norm import RMSNorm
from .recorder import Recorder

EXPERT_MODES = ("dequantized", "mxfp4")


def swiglu(h: torch.Tensor, limit: float = 7.0, alpha: float = 1.702) -> torch.Tensor:
    """Clamped SwiGLU on interleaved (gate, linear) pairs: (..., 2I) -> (..., I).

    gate * sigmoid(alpha * gate) is Swish with beta = alpha = 1.702 (the sigmoid approximation of
    GELU); the linear half gets + 1; both halves are clamped to `limit`.
    """
    gate, lin = h[..., 0::2], h[..., 1::2]  # (..., I) each
    gate = gate.clamp(max=limit)
    lin = lin.clamp(min=-limit, max=limit)
    return gate * torch.sigmoid(alpha * gate) * (lin + 1)


def route(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The routing rule: (N, E) logits -> experts (N, k) int64 and weights (N, k) float32.

    The k largest logits, best first; equal logits go to the lower expert id first (a stable
    descending sort; torch.topk does not promise this). Weights: softmax over the k chosen.
    """
    if router_logits.dim() != 2 or not 1 <= k <= router_logits.shape[-1]:
        raise ValueError(
            f"route: router_logits has shape {tuple(router_logits.shape)} and k = {k}; "
            "expected (N, E) logits and 1 <= k <= E"
        )
    values, experts = torch.sort(router_logits.float(), dim=-1, descending=True, stable=True)
    weights = torch.softmax(values[:, :k], dim=-1)  # (N, k) softmax over the k chosen only
    return experts[:, :k], weights


def expert_linear(weight, e: int, x: torch.Tensor) -> torch.Tensor:
    """x (n, K) @ W_e.T -> (n, N): the seam between the block and the experts' storage."""
    if isinstance(weight, torch.Tensor):
        return x @ weight[e].T  # dense (E, N, K): the math itself
    return weight.linear(e, x)  # packed storage brings its own matmul (chapters 8-10)


def new_expert_weight(E: int, N: int, K: int, experts: str, backend: str):
    """E experts' (N, K) weights: a float nn.Parameter, or packed MXFP4 bytes (chapter 12)."""
    if experts == "mxfp4":
        from ..mxfp4 import MXFP4Weight

        return MXFP4Weight(E, N, K, backend=backend)
    return nn.Parameter(torch.empty(E, N, K))


class MLPBlock(nn.Module):
    """RMSNorm -> router -> route -> per-expert SwiGLU MLP, weighted sum. Returns the update.

    Attribute names match the checkpoint: block.N.mlp.{norm.scale, gate.weight, gate.bias,
    mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias}. Expert weights are stored out x in:
    mlp1_weight (E, 2I, H), mlp2_weight (E, H, I). experts="mxfp4" keeps them packed
    (`gptoss_edu.mxfp4.MXFP4Weight`, multiplied on the kernel back end `backend`).
    """

    def __init__(self, config: ModelConfig, experts: str = "dequantized", backend: str = "auto"):
        super().__init__()
        if experts not in EXPERT_MODES:
            raise ValueError(f"MLPBlock: experts must be one of {EXPERT_MODES}; found {experts!r}")
        self.config, self.experts = config, experts
        self.layer_idx = 0  # set by TransformerBlock; names this layer in a Recorder
        E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
        self.num_experts, self.experts_per_token = E, config.experts_per_token
        self.norm = RMSNorm(H, eps=config.rms_norm_eps)
        self.gate = nn.Linear(H, E, bias=True)  # the router
        self.mlp1_weight = new_expert_weight(E, 2 * I, H, experts, backend)  # (E, 2I, H)
        self.mlp1_bias = nn.Parameter(torch.zeros(E, 2 * I))
        self.mlp2_weight = new_expert_weight(E, H, I, experts, backend)  # (E, H, I)
        self.mlp2_bias = nn.Parameter(torch.zeros(E, H))
        self.reset_experts()

    @property
    def backend(self) -> str | None:
        """The kernel back end of packed experts (None for dense ones)."""
        return getattr(self.mlp1_weight, "backend", None)

    @torch.no_grad()
    def reset_experts(self, std: float = 0.02) -> None:
        """Random expert weights N(0, std) (quantized to MXFP4 when packed); no-op on meta."""
        if self.mlp1_bias.is_meta:
            return  # built on the meta device to be filled from a checkpoint
        for w in (self.mlp1_weight, self.mlp2_weight):
            if isinstance(w, torch.Tensor):
                nn.init.normal_(w, std=std)
            else:
                w.copy_(torch.randn(w.shape) * std)

    def expert(self, e: int, t: torch.Tensor) -> torch.Tensor:
        """Expert e applied to tokens t (n, H) -> (n, H)."""
        h = expert_linear(self.mlp1_weight, e, t) + self.mlp1_bias[e]  # (n, 2I)
        a = swiglu(h, self.config.swiglu_limit, self.config.swiglu_alpha)  # (n, I)
        return expert_linear(self.mlp2_weight, e, a) + self.mlp2_bias[e]  # (n, H)

    def mix(self, t: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_j weights[:, j] * expert_{experts[:, j]}(t): each expert runs once, on its tokens."""
        out = torch.zeros(t.shape, dtype=torch.float32, device=t.device)  # (N, H)
        for e in torch.unique(experts).tolist():
            token, slot = torch.nonzero(experts == e, as_tuple=True)  # (n,), (n,)
            y = self.expert(e, t[token])  # (n, H)
            out.index_add_(0, token, y.float() * weights[token, slot, None])
        return out

    def forward(
        self, x: torch.Tensor, recorder: Recorder | None = None, return_routing: bool = False
    ) -> torch.Tensor:
        t = self.norm(x).reshape(-1, x.shape[-1])  # (N, H)
        logits = self.gate(t)  # (N, E)
        experts, weights = route(logits, self.experts_per_token)  # (N, k), (N, k)
        if recorder is not None:
            recorder.record("router_logits", self.layer_idx, logits)
            recorder.record("routing", self.layer_idx, (experts, weights))
        out = self.mix(t, experts, weights).to(x.dtype).reshape(x.shape)
        if return_routing:  # deprecated: the return type changes with a flag
            return self.deprecated_routing(out, logits, weights, experts)
        return out

    def deprecated_routing(self, out, logits, weights, experts):
        """What `forward(x, return_routing=True)` returned before the Recorder (one more release)."""
        warnings.warn(
            "MLPBlock(..., return_routing=True) is deprecated and will be removed in the "
            "next release; pass recorder=Recorder('router_logits', 'routing') instead",
            DeprecationWarning,
            stacklevel=3,
        )
        return out, (logits, weights, experts)


def __getattr__(name: str):
    if name == "MXFP4Weight":  # moved to gptoss_edu.mxfp4 (the packed side of the seam)
        from ..mxfp4 import MXFP4Weight

        warnings.warn(
            "gptoss_edu.model.moe.MXFP4Weight moved to gptoss_edu.mxfp4.MXFP4Weight",
            DeprecationWarning,
            stacklevel=2,
        )
        return MXFP4Weight
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
