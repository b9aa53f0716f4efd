"""The gpt-oss model, one file per component in the order the book builds them (chapters 3-7)."""

from .attention import AttentionBlock, KVCache, sdpa_with_sinks
from .moe import MLPBlock, expert_linear, route, swiglu
from .norm import RMSNorm
from .recorder import Recorder
from .rope import RotaryEmbedding, apply_rotary, yarn_inv_freq
from .transformer import GptOss, TransformerBlock

__all__ = [
    "AttentionBlock",
    "GptOss",
    "KVCache",
    "MLPBlock",
    "RMSNorm",
    "Recorder",
    "RotaryEmbedding",
    "TransformerBlock",
    "apply_rotary",
    "expert_linear",
    "route",
    "sdpa_with_sinks",
    "swiglu",
    "yarn_inv_freq",
]
