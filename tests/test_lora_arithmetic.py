"""The recipe arithmetic of chapter 16 (gptoss_edu.posttrain.lora.recipe_arithmetic) against
numbers worked out by hand, and the message a user without peft gets. No peft needed."""

import sys
import types

import pytest

import gptoss_edu as ge
from gptoss_edu.posttrain import lora


def test_lora_parameters_are_r_times_din_plus_dout_for_20b():
    cfg = ge.ModelConfig.gpt_oss_20b()  # H = 2880, q_dim = 64 * 64 = 4096, qkv_dim = 5120
    # per layer: qkv 2880 -> 5120 and out 4096 -> 2880
    assert lora.lora_parameters(cfg, ("attention",), r=8) == 24 * (
        8 * (2880 + 5120) + 8 * (4096 + 2880)
    )
    assert lora.lora_parameters(cfg, ("attention",), r=8) == 2_875_392
    assert lora.lora_parameters(cfg, ("router",), r=8) == 24 * 8 * (2880 + 32)
    # 32 experts, mlp1 2880 -> 5760, mlp2 2880 -> 2880
    assert lora.lora_parameters(cfg, ("experts",), r=8) == 24 * 32 * 8 * (8640 + 5760)
    assert lora.lora_parameters(cfg, ("attention", "router"), r=16) == 2 * (
        2_875_392 + 24 * 8 * (2880 + 32)
    )


def test_20b_bytes_by_hand():
    rows = {c.recipe: c for c in lora.recipe_arithmetic(ge.ModelConfig.gpt_oss_20b(), r=8)}
    total = 20_914_757_184  # OpenAI's published parameter count of gpt-oss-20b
    expert_weights = 24 * 32 * 3 * 2880 * 2880  # mlp1 (5760, 2880) + mlp2 (2880, 2880)
    assert expert_weights == 19_110_297_600
    packed = expert_weights * 17 // 32  # 17 bytes per 32 weights: 4.25 bits
    other = (total - expert_weights) * 2  # bf16
    lp = rows["lora-packed"]
    assert lp.trainable == 2_875_392
    assert lp.weight_bytes == packed + other + 2 * 2_875_392 == 13_767_015_552
    assert lp.grad_bytes == 4 * 2_875_392 and lp.optimizer_bytes == 8 * 2_875_392
    assert rows["lora-dequantized"].weight_bytes == 2 * total + 2 * (2_875_392 + 88_473_600)
    full = rows["full"]
    assert full.trainable == total
    assert full.total_bytes == (2 + 4 + 8) * total  # bf16 weights, f32 grads, two f32 moments
    # packed + LoRA holds less than a third of what the dequantized recipe does
    assert lp.total_bytes < rows["lora-dequantized"].total_bytes / 3


def test_micro_config_by_hand():
    from configs import micro_config

    cfg = micro_config()  # V 4096, H 32, 2 layers, 4 experts, I 32, 2 heads of 8, 1 KV head
    # embedding + unembedding 2 * 4096 * 32; attention per layer: norm 32 + qkv 32*32+32
    # + sinks 2 + out 32*16+32 = 1634; router per layer: norm 32 + gate 4*32+4 = 164;
    # experts per layer: 4 * (64*32 + 32*32 + 64 + 32) = 12672; final norm 32
    total = 2 * 4096 * 32 + 2 * (1634 + 164 + 12672) + 32
    assert total == 291_116
    assert sum(p.numel() for p in ge.GptOss(cfg).parameters()) == total  # the model agrees
    expert_weights = 2 * 4 * (64 * 32 + 32 * 32)  # 24,576
    rows = {c.recipe: c for c in lora.recipe_arithmetic(cfg, r=4)}
    attention = 2 * (4 * (32 + 32) + 4 * (16 + 32))  # 896
    lp = rows["lora-packed"]
    assert lp.trainable == attention
    assert lp.weight_bytes == expert_weights // 32 * 17 + 2 * (total - expert_weights) + 2 * 896
    assert rows["lora-packed-router"].trainable == attention + 2 * 4 * (32 + 4)
    assert rows["full"].weight_bytes == 2 * total
    table = lora.arithmetic_table(cfg, r=4, name="micro")
    assert "| lora-packed | 896 |" in table and table.startswith("micro, LoRA rank 4:")


def test_without_peft_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "gptoss-edu\[posttrain\]"'):
        lora.require_peft()
    with pytest.raises(ImportError, match="needs peft"):
        lora.apply_lora(ge.GptOss(ge.ModelConfig.tiny()), targets=("attention",))


def test_old_peft_is_refused_with_the_version(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", types.SimpleNamespace(__version__="0.13.2"))
    with pytest.raises(ImportError, match=r"peft >= 0.17.*found peft 0.13.2"):
        lora.require_peft()
