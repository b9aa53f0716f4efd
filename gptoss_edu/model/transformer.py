"""The whole gpt-oss: embedding, N pre-norm blocks, final norm, unembedding (chapter 7).

x = embedding[tokens]                       # no scaling, no absolute positions
for each block: x = x + attn(x); x = x + mlp(x)
logits = unembedding(norm(x))

`model(tokens, cache=None, recorder=None)` always returns logits; a `Recorder` passed to it
collects what the layers were asked to keep (attention weights, router logits, routing).
`model(tokens, logits_at=mask)` computes the logits only where the bool mask (shaped like
tokens) is True, as (N, V) in row-major order: training on a few positions of long sequences
(chapter 15) need not pay for the vocabulary projection of all the others.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .attention import AttentionBlock, KVCache
from .moe import MLPBlock
from .norm import RMSNorm


class TransformerBlock(nn.Module):
    """One layer: x + attention(x), then + MoE; each block has its own RMSNorm in front."""

    def __init__(
        self, config: ModelConfig, layer_idx: int, experts: str = "dequantized", backend="auto"
    ):
        super().__init__()
        self.layer_idx = layer_idx
        self.attn = AttentionBlock(config, layer_idx)  # sliding window on even layers
        self.mlp = MLPBlock(config, experts=experts, backend=backend)
        self.mlp.layer_idx = layer_idx

    def forward(self, x, positions, cache=None, recorder=None):
        x = x + self.attn(x, positions, cache, recorder=recorder)  # (B, T, H)
        return x + self.mlp(x, recorder=recorder)


class GptOss(nn.Module):
    """gpt-oss as a torch.nn.Module; `model(tokens)` maps (T,) or (B, T) ids to logits.

    Parameter names are the OpenAI "original" checkpoint's keys (embedding.weight,
    block.N.attn.qkv.weight, ..., unembedding.weight).

    experts="dequantized" (default here, for training and teaching): expert weights are float
    nn.Parameters. experts="mxfp4" (the default of `load_checkpoint`): they stay packed as in the
    checkpoint, 4.25 bits per weight, and run on `gptoss_edu.kernels` with `backend`
    ("auto": the fastest back end for the device, said once; or "torch", "numba", ...).
    """

    def __init__(self, config: ModelConfig, experts: str = "dequantized", backend: str = "auto"):
        super().__init__()
        self.config = config
        self.experts = experts
        self.embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.block = nn.ModuleList(
            TransformerBlock(config, i, experts=experts, backend=backend)
            for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.unembedding = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Small random weights for teaching and training (checkpoints overwrite them)."""
        for name, p in self.named_parameters():
            if name.endswith("norm.scale"):
                nn.init.ones_(p)
            elif name.endswith(("bias", "sinks")):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=std)
        if self.experts == "mxfp4":  # packed experts are buffers, not parameters
            for block in self.block:
                block.mlp.reset_experts(std)

    def new_cache(self, trim_sliding: bool = True) -> KVCache:
        return KVCache(self.config, trim_sliding=trim_sliding)

    def check_tokens(self, tokens: torch.Tensor, offset: int = 0) -> None:
        """Raise a clear error for ids a user can get wrong: type, dtype, rank, emptiness."""
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(
                f"GptOss: tokens must be a torch.LongTensor of shape (T,) or (B, T); "
                f"found {type(tokens).__name__} (wrap it: torch.tensor(ids))"
            )
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"GptOss: tokens must be integer ids; found dtype {tokens.dtype}")
        if tokens.dim() not in (1, 2):
            raise ValueError(
                f"GptOss: tokens must have shape (T,) or (B, T); found {tuple(tokens.shape)}"
            )
        if tokens.numel() == 0:
            raise ValueError("GptOss: tokens is empty; give at least one token")
        self.check_range(tokens, offset)

    def check_range(self, tokens: torch.Tensor, offset: int = 0) -> None:
        """Ids inside the vocabulary, positions inside the context."""
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(
                f"GptOss: token id {lo if lo < 0 else hi} is out of range "
                f"[0, {self.config.vocab_size}) for vocab_size {self.config.vocab_size}"
            )
        end = offset + tokens.shape[-1]
        if end > self.config.max_context_length:
            raise ValueError(
                f"GptOss: sequence reaches position {end} but the context is "
                f"{self.config.max_context_length} tokens (initial_context_length x rope_scaling_factor)"
            )

    def check_logits_at(self, tokens: torch.Tensor, logits_at: torch.Tensor) -> None:
        """logits_at must be a bool tensor of the same shape as tokens."""
        if not isinstance(logits_at, torch.Tensor) or logits_at.dtype != torch.bool:
            raise TypeError(
                "GptOss: logits_at must be a bool tensor shaped like tokens (True where a logit "
                f"is wanted); found {type(logits_at).__name__} "
                f"{getattr(logits_at, 'dtype', '')}".rstrip()
            )
        if logits_at.shape != tokens.shape:
            raise ValueError(
                f"GptOss: logits_at has shape {tuple(logits_at.shape)} but tokens "
                f"{tuple(tokens.shape)}; they must match"
            )

    # recorder: a Recorder (model/recorder.py) that the layers record into, or None
    # logits_at: None (every position), or a bool mask shaped like tokens (see the docstring)
    def forward(
        self, tokens: torch.Tensor, cache: KVCache | None = None, recorder=None, logits_at=None
    ):
        offset = cache.offset if cache is not None else 0
        self.check_tokens(tokens, offset)
        if logits_at is not None:
            self.check_logits_at(tokens, logits_at)
        batched = tokens if tokens.dim() == 2 else tokens[None]  # (B, T)
        T = batched.shape[1]
        positions = torch.arange(offset, offset + T, device=tokens.device)
        x = self.embedding(batched.long())  # (B, T, H)
        for block in self.block:
            x = block(x, positions, cache, recorder)
        if cache is not None:
            cache.offset += T
        if logits_at is not None:  # only the positions asked for: (N, V)
            return self.unembedding(self.norm(x[logits_at.reshape(batched.shape)]))
        logits = self.unembedding(self.norm(x))  # (B, T, V)
        return logits if tokens.dim() == 2 else logits[0]
