"""ModelConfig: every size and constant of a gpt-oss model (chapters 0 and 7).

The field names are those of OpenAI's own `config.json` (the "original" checkpoint layout), so
that a config read from disk maps one to one onto this class. Hugging Face's `config.json` uses
other names for the same numbers; `from_dict` reads both dialects and `to_dict(dialect=...)`
writes either.

    cfg = ModelConfig.gpt_oss_20b()
    cfg.num_hidden_layers, cfg.num_experts, cfg.experts_per_token   # 24, 32, 4
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .mxfp4 import BLOCK_SIZE as MXFP4_BLOCK  # weights per MXFP4 block (defined in mxfp4.py)

# OpenAI's config.json: exactly these 16 keys.
OPENAI_KEYS = (
    "num_hidden_layers",
    "num_experts",
    "experts_per_token",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "swiglu_limit",
    "head_dim",
    "num_attention_heads",
    "num_key_value_heads",
    "sliding_window",
    "initial_context_length",
    "rope_theta",
    "rope_scaling_factor",
    "rope_ntk_alpha",
    "rope_ntk_beta",
)


_INT_FIELDS = (
    "num_hidden_layers",
    "num_experts",
    "experts_per_token",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "head_dim",
    "num_attention_heads",
    "num_key_value_heads",
    "sliding_window",
    "initial_context_length",
)
_FLOAT_FIELDS = (
    "swiglu_limit",
    "rope_theta",
    "rope_scaling_factor",
    "rope_ntk_alpha",
    "rope_ntk_beta",
    "swiglu_alpha",
    "rms_norm_eps",
)
# Generous ceilings (gpt-oss-120b: 36 layers, 128 experts, 201088 tokens, 2880 wide) that refuse
# a corrupt config before anything sized by it (a list of layers, a vocabulary) is built.
_INT_MAX = dict.fromkeys(_INT_FIELDS, 2**20) | {
    "num_hidden_layers": 4096,
    "num_experts": 65536,
    "vocab_size": 2**24,
    "initial_context_length": 2**24,
    "sliding_window": 2**24,
}


@dataclass(frozen=True)
class ModelConfig:
    num_hidden_layers: int = 24
    num_experts: int = 32
    experts_per_token: int = 4
    vocab_size: int = 201088
    hidden_size: int = 2880
    intermediate_size: int = 2880
    swiglu_limit: float = 7.0
    head_dim: int = 64
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    sliding_window: int = 128
    initial_context_length: int = 4096
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0
    rope_ntk_beta: float = 32.0
    # Not in OpenAI's config.json, but constants of the architecture:
    swiglu_alpha: float = 1.702
    rms_norm_eps: float = 1e-5

    # ---------------------------------------------------------------- presets
    @classmethod
    def gpt_oss_20b(cls) -> ModelConfig:
        return cls(num_hidden_layers=24, num_experts=32)

    @classmethod
    def gpt_oss_120b(cls) -> ModelConfig:
        return cls(num_hidden_layers=36, num_experts=128)

    @classmethod
    def tiny(cls) -> ModelConfig:
        """A gpt-oss small enough to train on a laptop CPU in minutes.

        Same architecture (alternating sliding/full layers, sinks, YaRN, 2-of-8 routing, clamped
        SwiGLU), every width shrunk; hidden_size stays a multiple of 32 so MXFP4 still applies.
        """
        return cls(
            num_hidden_layers=4,
            num_experts=8,
            experts_per_token=2,
            vocab_size=4096,
            hidden_size=128,
            intermediate_size=128,
            head_dim=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=32,
            initial_context_length=512,
        )

    # ---------------------------------------------------------------- derived sizes
    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def qkv_dim(self) -> int:
        return self.q_dim + 2 * self.kv_dim

    @property
    def max_context_length(self) -> int:
        """Positions the model was extended to with YaRN: initial context x scaling factor."""
        return int(self.initial_context_length * self.rope_scaling_factor)

    def is_sliding(self, layer: int) -> bool:
        """Even layers (0, 2, 4, ...) use the sliding window; odd layers see the whole past."""
        return layer % 2 == 0

    @property
    def layer_types(self) -> list[str]:
        return [
            "sliding_attention" if self.is_sliding(i) else "full_attention"
            for i in range(self.num_hidden_layers)
        ]

    # ---------------------------------------------------------------- validation
    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot describe a working gpt-oss.

        Types first (an int field must be an int, not a bool, a float or a string; a float
        field a finite number, not a bool or a string), then ranges, then the relations
        between fields; nothing is computed from a field before it has been checked.
        """
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"ModelConfig.{name} must be an integer; found {value!r} ({type(value).__name__})"
                )
            if value <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive; found {value}")
            if value > _INT_MAX[name]:
                raise ValueError(
                    f"ModelConfig.{name} = {value:,} is beyond any gpt-oss (at most "
                    f"{_INT_MAX[name]:,} here); is config.json corrupt?"
                )
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    f"ModelConfig.{name} must be a number; found {value!r} ({type(value).__name__})"
                )
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"ModelConfig.{name} must be a positive finite number; found {value!r}"
                )
        if self.rope_theta <= 1:
            raise ValueError(
                f"ModelConfig.rope_theta must be > 1 (RoPE's base; gpt-oss uses 150000); "
                f"found {self.rope_theta}"
            )
        if not (0 < self.rms_norm_eps < 1):
            raise ValueError(
                f"ModelConfig.rms_norm_eps must be in (0, 1); found {self.rms_norm_eps}"
            )
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"ModelConfig.experts_per_token ({self.experts_per_token}) cannot exceed "
                f"num_experts ({self.num_experts})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"ModelConfig.num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"num_key_value_heads ({self.num_key_value_heads}) for grouped-query attention"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"ModelConfig.head_dim must be even (RoPE rotates pairs); found {self.head_dim}"
            )
        for name in ("hidden_size", "intermediate_size"):
            value = getattr(self, name)
            if value % MXFP4_BLOCK:
                raise ValueError(
                    f"ModelConfig.{name} must be a multiple of {MXFP4_BLOCK} so expert weights "
                    f"pack into MXFP4 blocks; found {value}"
                )
        if self.rope_scaling_factor < 1:
            raise ValueError(
                f"ModelConfig.rope_scaling_factor must be >= 1; found {self.rope_scaling_factor}"
            )
        if self.rope_scaling_factor > 1:
            if not (0 < self.rope_ntk_alpha < self.rope_ntk_beta):
                raise ValueError(
                    "ModelConfig.rope_ntk_alpha and rope_ntk_beta must satisfy 0 < alpha < beta; "
                    f"found alpha={self.rope_ntk_alpha}, beta={self.rope_ntk_beta}"
                )
            low, high = self.yarn_bounds()
            d_half = self.head_dim // 2
            if not (0 < low < high < d_half - 1):
                raise ValueError(
                    "ModelConfig YaRN bounds must satisfy 0 < low < high < head_dim/2 - 1; found "
                    f"low={low:.4f}, high={high:.4f}, head_dim/2 - 1={d_half - 1} "
                    "(change initial_context_length, rope_theta, rope_ntk_alpha/beta or head_dim)"
                )

    def yarn_bounds(self) -> tuple[float, float]:
        """The YaRN band edges (low, high) in units of rotary-pair index (chapter 4; the reference card, book/appendix_reference_card.md)."""
        d_half = self.head_dim / 2
        ln_base = math.log(self.rope_theta)
        low = d_half * math.log(self.initial_context_length / (self.rope_ntk_beta * 2 * math.pi))
        high = d_half * math.log(self.initial_context_length / (self.rope_ntk_alpha * 2 * math.pi))
        return low / ln_base, high / ln_base

    # ---------------------------------------------------------------- config.json dialects
    def to_dict(self, dialect: str = "openai") -> dict:
        if dialect == "openai":
            return {k: getattr(self, k) for k in OPENAI_KEYS}
        if dialect == "hf":
            return {
                "architectures": ["GptOssForCausalLM"],
                "model_type": "gpt_oss",
                "num_hidden_layers": self.num_hidden_layers,
                "num_local_experts": self.num_experts,
                "num_experts_per_tok": self.experts_per_token,
                "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size,
                "swiglu_limit": self.swiglu_limit,
                "head_dim": self.head_dim,
                "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "sliding_window": self.sliding_window,
                "rope_theta": self.rope_theta,
                "rope_scaling": {
                    "rope_type": "yarn",
                    "factor": self.rope_scaling_factor,
                    "beta_fast": self.rope_ntk_beta,
                    "beta_slow": self.rope_ntk_alpha,
                    "original_max_position_embeddings": self.initial_context_length,
                    "truncate": False,
                },
                "max_position_embeddings": self.max_context_length,
                "layer_types": self.layer_types,
                "rms_norm_eps": self.rms_norm_eps,
                "attention_bias": True,
                "tie_word_embeddings": False,
                "hidden_act": "silu",
                "quantization_config": {
                    "quant_method": "mxfp4",
                    "modules_to_not_convert": [
                        "model.layers.*.self_attn",
                        "model.layers.*.mlp.router",
                        "model.embed_tokens",
                        "lm_head",
                    ],
                },
            }
        raise ValueError(
            f"ModelConfig.to_dict: dialect must be 'openai' or 'hf'; found {dialect!r}"
        )

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> ModelConfig:
        """Read either dialect; unknown keys are ignored, missing required keys are an error.

        Every error is a ValueError that starts with `source` and names the field.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object; found {type(d).__name__}")
        layer_types = None
        if "num_local_experts" in d or d.get("model_type") == "gpt_oss":
            kwargs, layer_types = _from_hf_dict(d, source)
        else:
            missing = [k for k in OPENAI_KEYS if k not in d]
            if missing:
                raise ValueError(
                    f"{source}: missing key(s) {missing} of OpenAI's gpt-oss config.json "
                    "(and it is not a Hugging Face config: no 'num_local_experts')"
                )
            kwargs = {k: d[k] for k in OPENAI_KEYS}
            for extra in ("swiglu_alpha", "rms_norm_eps"):
                if extra in d:
                    kwargs[extra] = d[extra]
        for k, v in list(kwargs.items()):
            if k in _FLOAT_FIELDS and isinstance(v, int) and not isinstance(v, bool):
                kwargs[k] = float(v)
        try:
            config = cls(**kwargs)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        if layer_types is not None:  # checked only once num_hidden_layers is known to be sane
            n = config.num_hidden_layers
            if not isinstance(layer_types, list) or len(layer_types) != n:
                found = (
                    f"{len(layer_types)} entries" if isinstance(layer_types, list) else layer_types
                )
                raise ValueError(
                    f"{source}: layer_types must be a list of num_hidden_layers = {n} entries; "
                    f"found {found!r}"
                )
            for i, kind in enumerate(layer_types):
                if kind != ("sliding_attention" if config.is_sliding(i) else "full_attention"):
                    raise ValueError(
                        f"{source}: layer_types must alternate sliding/full starting with sliding "
                        f"(as gpt-oss does); entry {i} is {kind!r}"
                    )
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"config.json not found at {path}")
        if path.stat().st_size > 10**7:
            raise ValueError(f"{path}: {path.stat().st_size:,} bytes is not a config.json")
        try:  # ValueError: bad JSON, bad UTF-8, or an int literal of more than 4300 digits
            d = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{path}: not valid JSON ({type(e).__name__}: {e})") from None
        return cls.from_dict(d, source=str(path))

    def to_json(self, path: str | Path, dialect: str = "openai") -> None:
        Path(path).write_text(json.dumps(self.to_dict(dialect), indent=2) + "\n")

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _from_hf_dict(d: dict, source: str) -> tuple[dict, object]:
    """ModelConfig keyword arguments from a Hugging Face config.json, and its layer_types.

    Nothing here computes with a value before checking it (head_dim's default divides by
    num_attention_heads; rope_scaling must be an object); ModelConfig.validate checks the rest.
    """

    def get(key):
        if key not in d:
            raise ValueError(f"{source}: missing key {key!r} of a Hugging Face gpt_oss config.json")
        return d[key]

    kwargs = {
        "num_hidden_layers": get("num_hidden_layers"),
        "num_experts": get("num_local_experts"),
        "experts_per_token": get("num_experts_per_tok"),
        "vocab_size": get("vocab_size"),
        "hidden_size": get("hidden_size"),
        "intermediate_size": get("intermediate_size"),
        "swiglu_limit": d.get("swiglu_limit", 7.0),
        "num_attention_heads": get("num_attention_heads"),
        "num_key_value_heads": get("num_key_value_heads"),
        "sliding_window": get("sliding_window"),
        "rms_norm_eps": d.get("rms_norm_eps", 1e-5),
    }
    if "head_dim" in d and d["head_dim"] is not None:
        kwargs["head_dim"] = d["head_dim"]
    else:  # transformers' default: hidden_size // num_attention_heads
        for name in ("hidden_size", "num_attention_heads"):
            v = kwargs[name]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(
                    f"{source}: {name} must be a positive integer (head_dim is computed from it); "
                    f"found {v!r}"
                )
        kwargs["head_dim"] = kwargs["hidden_size"] // kwargs["num_attention_heads"]
    rs = d.get("rope_scaling")
    if rs is None:
        rs = d.get("rope_parameters")
    if rs is None:
        rs = {}
    if not isinstance(rs, dict):
        raise ValueError(
            f'{source}: rope_scaling must be an object such as {{"rope_type": "yarn", '
            f'"factor": 32.0, ...}} or null; found {rs!r}'
        )
    if rs and rs.get("rope_type", rs.get("type", "yarn")) not in ("yarn",):
        raise ValueError(f"{source}: rope_scaling.rope_type must be 'yarn'; found {rs!r}")
    kwargs["rope_scaling_factor"] = rs.get("factor", 1.0)
    kwargs["rope_ntk_beta"] = rs.get("beta_fast", 32.0)
    kwargs["rope_ntk_alpha"] = rs.get("beta_slow", 1.0)
    kwargs["initial_context_length"] = rs.get(
        "original_max_position_embeddings", d.get("initial_context_length", 4096)
    )
    # transformers 5 moved rope_theta inside rope_parameters
    kwargs["rope_theta"] = d.get("rope_theta", rs.get("rope_theta"))
    if kwargs["rope_theta"] is None:
        raise ValueError(
            f"{source}: missing key 'rope_theta' of a Hugging Face gpt_oss config.json"
        )
    return kwargs, d.get("layer_types")
