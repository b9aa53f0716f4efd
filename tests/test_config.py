import json

import pytest

import gptoss_edu as ge
from gptoss_edu.config import OPENAI_KEYS


def test_presets():
    a, b = ge.ModelConfig.gpt_oss_20b(), ge.ModelConfig.gpt_oss_120b()
    assert (a.num_hidden_layers, a.num_experts, b.num_hidden_layers, b.num_experts) == (
        24,
        32,
        36,
        128,
    )
    assert a.max_context_length == 131072 and a.qkv_dim == 5120
    assert a.layer_types[:2] == ["sliding_attention", "full_attention"]
    ge.ModelConfig.tiny()


@pytest.mark.parametrize("dialect", ["openai", "hf"])
def test_both_dialects_round_trip(tmp_path, dialect):
    cfg = ge.ModelConfig.gpt_oss_120b()
    cfg.to_json(tmp_path / "config.json", dialect=dialect)
    d = json.loads((tmp_path / "config.json").read_text())
    if dialect == "openai":
        assert sorted(d) == sorted(OPENAI_KEYS) and len(d) == 16
    else:
        assert d["num_local_experts"] == 128 and d["rope_scaling"]["beta_fast"] == 32
    assert ge.ModelConfig.from_json(tmp_path) == cfg


def test_reads_published_hf_config_text():
    # the fields of the published gpt-oss-20b config.json (Hugging Face dialect)
    published = {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "hidden_size": 2880,
        "head_dim": 64,
        "intermediate_size": 2880,
        "num_attention_heads": 64,
        "num_experts_per_tok": 4,
        "num_hidden_layers": 24,
        "num_key_value_heads": 8,
        "num_local_experts": 32,
        "rms_norm_eps": 1e-05,
        "rope_theta": 150000,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_type": "yarn",
            "truncate": False,
        },
        "sliding_window": 128,
        "swiglu_limit": 7.0,
        "vocab_size": 201088,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
    }
    assert ge.ModelConfig.from_dict(published) == ge.ModelConfig.gpt_oss_20b()


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(num_attention_heads=60, num_key_value_heads=8), "num_key_value_heads"),
        (dict(hidden_size=2881), "hidden_size"),
        (dict(intermediate_size=100), "intermediate_size"),
        (dict(initial_context_length=64), "YaRN"),
        (dict(experts_per_token=40), "experts_per_token"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(head_dim=63), "head_dim"),
        (dict(vocab_size=1.5), "vocab_size"),
    ],
)
def test_validation_names_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        ge.ModelConfig.gpt_oss_20b().replace(**change)


def test_missing_keys_named(tmp_path):
    d = ge.ModelConfig.tiny().to_dict()
    del d["sliding_window"]
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="sliding_window"):
        ge.ModelConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ge.ModelConfig.from_json(tmp_path)
