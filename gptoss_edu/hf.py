"""A bridge to Hugging Face `transformers`' GptOss, the independent implementation that chapter 7
(The whole model) compares ours with.

    from gptoss_edu.hf import hf_config
    from transformers import GptOssForCausalLM

    reference = GptOssForCausalLM(hf_config(cfg)).float().eval()   # cfg: a ModelConfig
    transformers_problem()    # None, or why transformers cannot be used here (missing, too old)

`transformers` is optional (the `[test]` extra installs it); importing this module does not
import it. Every version from `MIN_TRANSFORMERS` on is supported, and the two families spell
RoPE differently:

- transformers 4.55-4.57 read `rope_theta=` and `rope_scaling={"rope_type": "yarn", ...}`, and
  hard-code the clamped SwiGLU's alpha = 1.702 and limit = 7.0 (gpt-oss's values);
- transformers 5 reads `rope_parameters={"rope_type": "yarn", "rope_theta": ..., ...}` and
  takes `swiglu_limit` / `swiglu_alpha` from the config. It silently ignores a `rope_scaling=`
  keyword and 4.x silently ignores `rope_parameters=`, which is how a config built for one
  family gives wrong logits (40% off) on the other without any error.

`hf_config` picks the spelling by version and then reads the RoPE settings back from the config it
built, so a future rename fails loudly here instead of quietly changing the comparison.
"""

from __future__ import annotations

import math

from gptoss_edu.config import ModelConfig

MIN_TRANSFORMERS = (4, 55)  # the first release with GptOss; pyproject.toml's bound says the same


def transformers_version() -> tuple[int, int]:
    """(major, minor) of the installed transformers; ImportError with advice if it is missing."""
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "gptoss_edu.hf needs Hugging Face transformers (>= "
            f"{MIN_TRANSFORMERS[0]}.{MIN_TRANSFORMERS[1]}), which is not installed: "
            "pip install 'transformers>=4.55' (or the package's [test] extra)"
        ) from e
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    if (major, minor) < MIN_TRANSFORMERS:
        raise ImportError(
            f"gptoss_edu.hf: transformers {transformers.__version__} has no GptOss model; "
            f"expected >= {MIN_TRANSFORMERS[0]}.{MIN_TRANSFORMERS[1]} (pip install -U transformers)"
        )
    return major, minor


def transformers_problem() -> str | None:
    """None if transformers can build the reference model here; else why not, in one line.

    Chapter 7 prints it and skips its comparison instead of failing where transformers is
    missing or too old (e.g. an old Colab image)."""
    try:
        transformers_version()
    except ImportError as e:
        return str(e)
    return None


def _yarn(cfg: ModelConfig) -> dict:
    return {
        "rope_type": "yarn",
        "factor": cfg.rope_scaling_factor,
        "beta_fast": cfg.rope_ntk_beta,
        "beta_slow": cfg.rope_ntk_alpha,
        "original_max_position_embeddings": cfg.initial_context_length,
        "truncate": False,  # gpt-oss keeps the band edges fractional (chapter 4)
    }


def hf_config(cfg: ModelConfig, attn_implementation: str = "eager"):
    """A `transformers.GptOssConfig` describing the same model as `cfg`, on transformers 4.55+.

    attn_implementation="eager" is the reference path that implements attention sinks on every
    version (chapter 5); other values are passed through to transformers.
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(
            f"hf_config: expected a gptoss_edu.ModelConfig; found {type(cfg).__name__} "
            "(a config.json dict? use ModelConfig.from_dict(d) first)"
        )
    major, _ = transformers_version()
    from transformers import GptOssConfig

    common = dict(
        num_hidden_layers=cfg.num_hidden_layers,
        num_local_experts=cfg.num_experts,
        num_experts_per_tok=cfg.experts_per_token,
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        head_dim=cfg.head_dim,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        sliding_window=cfg.sliding_window,
        max_position_embeddings=cfg.max_context_length,
        layer_types=cfg.layer_types,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=False,
    )
    if major >= 5:
        hc = GptOssConfig(
            **common,
            swiglu_limit=cfg.swiglu_limit,
            swiglu_alpha=cfg.swiglu_alpha,
            rope_parameters=_yarn(cfg) | {"rope_theta": cfg.rope_theta},
        )
        rope, theta = hc.rope_parameters, hc.rope_parameters.get("rope_theta")
    else:
        fixed = {"swiglu_limit": 7.0, "swiglu_alpha": 1.702}  # modeling_gpt_oss.py, 4.55-4.57
        for name, value in fixed.items():
            if not math.isclose(getattr(cfg, name), value):
                raise ValueError(
                    f"hf_config: {name}={getattr(cfg, name)}, but transformers 4.x hard-codes "
                    f"{name}={value} in GptOssExperts, so its model would differ from ours; "
                    "use transformers >= 5, or a config with gpt-oss's value"
                )
        hc = GptOssConfig(**common, rope_theta=cfg.rope_theta, rope_scaling=_yarn(cfg))
        rope, theta = hc.rope_scaling, hc.rope_theta
    # read back what transformers kept: a renamed keyword would otherwise be silently dropped
    want = _yarn(cfg) | {"rope_theta": cfg.rope_theta}
    got = dict(rope or {}) | {"rope_theta": theta}
    wrong = {k: (v, got.get(k)) for k, v in want.items() if got.get(k) != v}
    if wrong or hc.max_position_embeddings != cfg.max_context_length:
        raise RuntimeError(
            "hf_config: transformers did not keep the RoPE settings it was given "
            f"(name: (expected, found)) {wrong}; max_position_embeddings "
            f"{hc.max_position_embeddings} vs {cfg.max_context_length}. This transformers "
            "version spells RoPE differently: please report it."
        )
    hc._attn_implementation = attn_implementation
    return hc
