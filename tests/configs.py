"""Small model configs shared by the tests (import: `from configs import micro_config`)."""

import gptoss_edu as ge


def micro_config(**changes) -> ge.ModelConfig:
    """A gpt-oss small enough that a forward pass or a training step takes milliseconds: 2 layers
    (one sliding, one full), 4 experts, top-2, hidden 32; `changes` override any field."""
    base = ge.ModelConfig.tiny().replace(
        num_hidden_layers=2,
        num_experts=4,
        experts_per_token=2,
        hidden_size=32,
        intermediate_size=32,
        head_dim=8,
        num_attention_heads=2,
        num_key_value_heads=1,
        sliding_window=4,
    )
    return base.replace(**changes) if changes else base
