"""The mixture-of-experts block (chapter 6), with its experts dense or packed in MXFP4 (chapter 12).

A router scores every expert for every token; the top `experts_per_token` scores are
softmaxed among themselves into weights; each chosen expert is a SwiGLU MLP

    h = W1_e t + b1_e                       (2 * intermediate values, gate and linear interleaved)
    gate, lin = h[0::2], h[1::2]
    a = min(gate, 7) * sigmoid(1.702 * min(gate, 7)) * (clamp(lin, -7, 7) + 1)
    y_e = W2_e a + b2_e

and the block's output is the weighted sum of the chosen experts' outputs.

The expert weights W1, W2 are 90% of gpt-oss's parameters, so how they are stored decides
whether the model fits in memory:

- experts="dequantized": `mlp1_weight`, `mlp2_weight` are ordinary float nn.Parameters
  (E, 2I, H) and (E, H, I). For training and for reading the code (chapter 6).
- experts="mxfp4": they stay as the checkpoint stores them, `MXFP4Weight` modules holding the
  uint8 buffers `blocks` (E, N, K//32, 16) and `scales` (E, N, K//32): 4.25 bits per weight
  instead of 16. The forward pass calls the kernels of chapters 9-10 (`gptoss_edu.kernels.route`
  and `moe_forward`), which decode tiles of weights on the fly and never materialise W.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..config import ModelConfig
from .norm import RMSNorm

EXPERT_MODES = ("dequantized", "mxfp4")


def swiglu(h: torch.Tensor, limit: float = 7.0, alpha: float = 1.702) -> torch.Tensor:
    """Clamped SwiGLU on interleaved (gate, linear) pairs: (..., 2I) -> (..., I)."""
    gate, lin = h[..., 0::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    lin = lin.clamp(min=-limit, max=limit)
    return gate * torch.sigmoid(alpha * gate) * (lin + 1)


class MXFP4Weight(nn.Module):
    """An expert weight of logical shape (E, N, K) kept packed, as in the checkpoint.

    Buffers (in the state dict, so keys read `...mlp1_weight.blocks` / `...mlp1_weight.scales`,
    the checkpoint's own names): blocks (E, N, K//32, 16) uint8, scales (E, N, K//32) uint8.

    For reading and teaching it behaves like the float tensor it encodes: `w[e]` is expert e's
    (N, K) weight decoded to `w.dtype`, `w.dequantize()` is all of it, and any other tensor
    attribute (`w.data`, `w.T`, `w.transpose(1, 2)`, ...) acts on a freshly decoded copy.
    Writing goes the other way: `w.copy_(t)` quantizes t into the packed bytes.
    `w.dtype` is the float type it decodes to; it follows `model.to(dtype)` like a float tensor.
    """

    def __init__(self, E: int, N: int, K: int, dtype: torch.dtype | None = None):
        super().__init__()
        if K % 32:
            raise ValueError(f"MXFP4Weight: input size K = {K} must be a multiple of 32")
        self.register_buffer("blocks", torch.zeros(E, N, K // 32, 16, dtype=torch.uint8))
        self.register_buffer("scales", torch.full((E, N, K // 32), 127, dtype=torch.uint8))
        self.dtype = dtype or torch.get_default_dtype()

    @property
    def shape(self) -> torch.Size:
        E, N, G, _ = self.blocks.shape
        return torch.Size((E, N, G * 32))

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    @property
    def nbytes(self) -> int:
        return self.blocks.numel() + self.scales.numel()  # uint8: 17 bytes per 32 weights

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """All experts decoded, (E, N, K). Expert by expert, so the temporaries stay small."""
        from ..mxfp4 import dequantize

        out = torch.empty(self.shape, dtype=dtype or self.dtype, device=self.device)
        for e in range(out.shape[0]):
            out[e] = dequantize(self.blocks[e], self.scales[e], out.dtype)
        return out

    def __getitem__(self, e) -> torch.Tensor:
        """Expert e's weight (N, K), decoded to self.dtype."""
        from ..mxfp4 import dequantize

        return dequantize(self.blocks[e], self.scales[e], self.dtype)

    @torch.no_grad()
    def copy_(self, w: torch.Tensor) -> MXFP4Weight:
        """Quantize the float weight w (E, N, K) into the packed bytes (round to MXFP4)."""
        from ..mxfp4 import quantize

        if tuple(w.shape) != tuple(self.shape):
            raise ValueError(
                f"MXFP4Weight.copy_: w has shape {tuple(w.shape)}; expected {tuple(self.shape)}"
            )
        for e in range(w.shape[0]):  # expert by expert: quantize works in float32
            blocks, scales = quantize(w[e].detach().to(self.device))
            self.blocks[e].copy_(blocks)
            self.scales[e].copy_(scales)
        return self

    def _apply(self, fn, recurse=True):
        # The buffers are uint8 and do not change type under .to(dtype) / .float(); record what
        # such a call does to a float tensor, so that decoded reads follow the model's dtype.
        probe = fn(torch.empty(0, dtype=self.dtype, device=self.blocks.device))
        if probe.is_floating_point():
            self.dtype = probe.dtype
        return super()._apply(fn, recurse)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # blocks, scales (nn.Module keeps buffers here)
        except AttributeError:
            if name.startswith("_") or not hasattr(torch.Tensor, name):
                raise
        return getattr(self.dequantize(), name)  # read-only view: acts on a decoded copy

    def extra_repr(self) -> str:
        E, N, K = self.shape
        return f"experts={E}, out={N}, in={K}, {self.nbytes / 2**20:.1f} MiB packed, decodes to {self.dtype}"


_said: set[tuple[str, str]] = set()


def _backend_name(backend: str, device_type: str) -> str:
    """Resolve "auto" to the back end that will run, and say once per process which one it is."""
    from .. import kernels

    module = kernels.get_backend(backend, device_type)
    name = module.__name__.rsplit(".", 1)[-1]
    name = {"reference": "torch", "numba_cpu": "numba"}.get(name, name)
    if (name, device_type) not in _said:
        _said.add((name, device_type))
        warnings.warn(
            f"gptoss_edu: MXFP4 experts on {device_type} run on the {name!r} kernel back end "
            f"(backend={backend!r}; pass backend=... to GptOss or load_checkpoint to choose)",
            stacklevel=3,
        )
    return name


class MLPBlock(nn.Module):
    """RMSNorm -> router -> top-k -> experts -> weighted sum. Returns the residual update.

    Attribute names match the checkpoint: block.N.mlp.{norm.scale, gate.weight, gate.bias,
    mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias}. Expert weights are stored out x in:
    mlp1_weight (E, 2I, H), mlp2_weight (E, H, I); with experts="mxfp4" these two are
    `MXFP4Weight`s (state-dict keys mlp1_weight.blocks / .scales) and the forward pass runs on
    `gptoss_edu.kernels` with the given `backend` ("auto": the fastest one for the device).
    """

    def __init__(self, config: ModelConfig, experts: str = "dequantized", backend: str = "auto"):
        super().__init__()
        from ..kernels import BACKENDS

        if experts not in EXPERT_MODES:
            raise ValueError(f"MLPBlock: experts must be one of {EXPERT_MODES}; found {experts!r}")
        if backend not in BACKENDS:
            raise ValueError(f"MLPBlock: backend must be one of {BACKENDS}; found {backend!r}")
        self.config = config
        self.experts = experts
        self.backend = backend
        E, H, I = config.num_experts, config.hidden_size, config.intermediate_size
        self.num_experts = E
        self.experts_per_token = config.experts_per_token
        self.swiglu_limit = config.swiglu_limit
        self.swiglu_alpha = config.swiglu_alpha
        self.norm = RMSNorm(H, eps=config.rms_norm_eps)
        self.gate = nn.Linear(H, E, bias=True)
        if experts == "mxfp4":
            self.mlp1_weight = MXFP4Weight(E, 2 * I, H)
            self.mlp2_weight = MXFP4Weight(E, H, I)
        else:
            self.mlp1_weight = nn.Parameter(torch.empty(E, 2 * I, H))
            self.mlp2_weight = nn.Parameter(torch.empty(E, H, I))
        self.mlp1_bias = nn.Parameter(torch.zeros(E, 2 * I))
        self.mlp2_bias = nn.Parameter(torch.zeros(E, H))
        self.reset_experts()

    @torch.no_grad()
    def reset_experts(self, std: float = 0.02) -> None:
        """Random expert weights N(0, std) (quantized to MXFP4 when packed); no-op on meta."""
        if self.mlp1_bias.is_meta:
            return  # built on the meta device to be filled from a checkpoint
        for w in (self.mlp1_weight, self.mlp2_weight):
            if isinstance(w, MXFP4Weight):
                w.copy_(torch.randn(w.shape) * std)
            else:
                nn.init.normal_(w, std=std)

    def route(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router logits (N, E), expert weights (N, k) float32 and expert ids (N, k), best first."""
        logits = self.gate(t)  # (N, E)
        top = torch.topk(logits, k=self.experts_per_token, dim=-1, sorted=True)
        weights = torch.softmax(top.values.float(), dim=-1)  # softmax over the k chosen only
        return logits, weights, top.indices

    def expert(self, e: int, t: torch.Tensor) -> torch.Tensor:
        """Expert e applied to tokens t (n, H) -> (n, H)."""
        if self.experts == "mxfp4":
            from .. import kernels

            w1, w2, be = self.mlp1_weight, self.mlp2_weight, self.backend
            h = kernels.mxfp4_linear(t, w1.blocks[e], w1.scales[e], self.mlp1_bias[e], be)
            a = swiglu(h, self.swiglu_limit, self.swiglu_alpha)  # (n, I)
            return kernels.mxfp4_linear(a, w2.blocks[e], w2.scales[e], self.mlp2_bias[e], be)
        h = t @ self.mlp1_weight[e].T + self.mlp1_bias[e]  # (n, 2I)
        a = swiglu(h, self.swiglu_limit, self.swiglu_alpha)  # (n, I)
        return a @ self.mlp2_weight[e].T + self.mlp2_bias[e]  # (n, H)

    def forward(self, x: torch.Tensor, return_routing: bool = False):
        shape = x.shape
        t = self.norm(x).reshape(-1, shape[-1])  # (N, H)
        if self.experts == "mxfp4":
            out, routing = self._forward_packed(t)
        else:
            out, routing = self._forward_dense(t)
        out = out.to(x.dtype).reshape(shape)
        if return_routing:
            return out, routing
        return out

    def _forward_dense(self, t: torch.Tensor):
        logits, weights, ids = self.route(t)
        out = torch.zeros(t.shape, dtype=torch.float32, device=t.device)
        # Sort by expert: each expert runs once over all the tokens routed to it.
        for e in torch.unique(ids).tolist():
            token, slot = torch.nonzero(ids == e, as_tuple=True)
            y = self.expert(e, t[token])  # (n, H)
            out.index_add_(0, token, y.float() * weights[token, slot, None])
        return out, (logits, weights, ids)

    def _forward_packed(self, t: torch.Tensor):
        from .. import kernels

        backend = _backend_name(self.backend, t.device.type)
        logits = self.gate(t)  # (N, E)
        # Same routing as route(): top-k by a stable descending sort, softmax over the k.
        routing = kernels.route(logits, self.experts_per_token, backend=backend)
        w1, w2 = self.mlp1_weight, self.mlp2_weight
        weights = kernels.MoEWeights(
            w1.blocks, w1.scales, self.mlp1_bias, w2.blocks, w2.scales, self.mlp2_bias,
            self.swiglu_limit, self.swiglu_alpha,
        )  # fmt: skip
        out = kernels.moe_forward(t, routing, weights, backend=backend)  # (N, H)
        return out, (logits, routing.weights, routing.experts.long())
