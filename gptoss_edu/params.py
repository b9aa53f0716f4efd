"""Counting parameters and bytes of any gpt-oss config (chapter 7).

    count_parameters(ModelConfig.gpt_oss_20b()).total    # 20,914,757,184
    count_parameters(ModelConfig.gpt_oss_20b()).active   #  3,608,304,384

"Active" is what one token touches: every attention weight, the router, only
`experts_per_token` of the experts, and the unembedding; the embedding is a table look-up
(one row read), so it is not counted, following OpenAI's model card; neither is the final
norm's scale vector (2,880 values), which is what makes the published figures come out exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig


@dataclass(frozen=True)
class ParameterCount:
    embedding: int
    unembedding: int
    attention: int  # all layers: norms, qkv, sinks, out
    router: int  # all layers: mlp norm, gate weight and bias
    experts: int  # all layers, all experts: mlp1, mlp2 and their biases
    experts_active: int  # all layers, experts_per_token experts
    final_norm: int
    checkpoint_bytes: int  # published layout: MXFP4 experts (blocks + scales), the rest bf16
    bf16_bytes: int  # everything upcast to bf16
    fp32_bytes: int

    @property
    def total(self) -> int:
        return (
            self.embedding
            + self.unembedding
            + self.attention
            + self.router
            + self.experts
            + self.final_norm
        )

    @property
    def active(self) -> int:
        # The final norm's 2,880 scales are left out too, which reproduces OpenAI's published figures.
        return self.unembedding + self.attention + self.router + self.experts_active

    @property
    def expert_weights(self) -> int:
        return self.experts


def count_parameters(config: ModelConfig) -> ParameterCount:
    c = config
    E, k, H, I, V = (
        c.num_experts,
        c.experts_per_token,
        c.hidden_size,
        c.intermediate_size,
        c.vocab_size,
    )
    L = c.num_hidden_layers
    attn = H + (c.qkv_dim * H + c.qkv_dim) + c.num_attention_heads + (H * c.q_dim + H)
    router = H + (E * H + E)
    expert_matrix = 2 * I * H + I * H  # mlp1 (2I, H) + mlp2 (H, I)
    expert_bias = 2 * I + H
    experts = E * (expert_matrix + expert_bias)
    experts_active = k * (expert_matrix + expert_bias)
    total_dense = V * H * 2 + L * (attn + router) + H
    # MXFP4: 32 weights in 16 bytes of codes + 1 scale byte = 17 bytes per block.
    mxfp4_bytes = L * E * (expert_matrix // 32) * 17
    bf16_rest = 2 * (total_dense + L * E * expert_bias)
    n_total = total_dense + L * experts
    return ParameterCount(
        embedding=V * H,
        unembedding=V * H,
        attention=L * attn,
        router=L * router,
        experts=L * experts,
        experts_active=L * experts_active,
        final_norm=H,
        checkpoint_bytes=mxfp4_bytes + bf16_rest,
        bf16_bytes=2 * n_total,
        fp32_bytes=4 * n_total,
    )


def kv_cache_bytes_per_token(config: ModelConfig, bytes_per_value: int = 2) -> int:
    """Keys and values of one token in every layer (full-attention layers; sliding layers cap at
    `sliding_window` tokens)."""
    return config.num_hidden_layers * 2 * config.kv_dim * bytes_per_value


def kv_cache_bytes(config: ModelConfig, tokens: int, bytes_per_value: int = 2) -> int:
    """KV-cache size for a context of `tokens`, with sliding layers keeping only their window."""
    per_layer_token = 2 * config.kv_dim * bytes_per_value
    total = 0
    for layer in range(config.num_hidden_layers):
        kept = min(tokens, config.sliding_window) if config.is_sliding(layer) else tokens
        total += kept * per_layer_token
    return total


def format_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
