"""The gpt-oss model, one file per component in the order the book builds them (chapters 3-7)."""

from .attention import AttentionBlock, KVCache, sdpa_with_sinks
from .moe import MLPBlock, swiglu
from .norm import RMSNorm
from .rope import RotaryEmbedding, apply_rotary, yarn_inv_freq
from .transformer import GptOss, TransformerBlock

__all__ = [
    "AttentionBlock",
    "GptOss",
    "KVCache",
    "MLPBlock",
    "RMSNorm",
    "RotaryEmbedding",
    "TransformerBlock",
    "apply_rotary",
    "sdpa_with_sinks",
    "swiglu",
    "yarn_inv_freq",
]
