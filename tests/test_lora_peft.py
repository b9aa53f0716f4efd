"""LoRA with peft on our plain nn.Module (gptoss_edu.posttrain.lora.apply_lora / apply_recipe).

Counts are checked against numbers written by hand (r * (d_in + d_out) per adapted matrix);
"only the adapters train" by comparing every other tensor bit for bit after an optimizer step.
"""

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.posttrain import lora
from gptoss_edu.posttrain.sft import sft_step

peft = pytest.importorskip("peft")


def _micro(experts):
    from configs import micro_config

    torch.manual_seed(0)
    return ge.GptOss(micro_config(), experts=experts, backend="torch")


def _batch(cfg, B=2, T=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    y = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    return x, y, torch.ones(B, T)


def _frozen_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" not in k}


# micro config: H = 32, 2 layers, E = 4, I = 32, q_dim = 2 * 8 = 16, kv_dim = 8, qkv_dim = 32
# attention, per layer: qkv 32 -> 32: r * 64; out 16 -> 32: r * 48        -> r = 4: 448
# router, per layer: gate 32 -> 4: r * 36                                  -> r = 4: 144
# experts, per layer: 4 * (mlp1 32 -> 64: r * 96 + mlp2 32 -> 32: r * 64) -> r = 4: 2560
HAND = {"attention": 2 * 448, "router": 2 * 144, "experts": 2 * 2560}


@pytest.mark.parametrize(
    "experts, targets",
    [
        ("mxfp4", ("attention",)),
        ("mxfp4", ("attention", "router")),
        ("dequantized", ("attention", "experts")),
    ],
)
def test_only_adapters_train(experts, targets):
    model = _micro(experts)
    x, y, w = _batch(model.config)
    with torch.no_grad():
        before_logits = model(x)
    lora.apply_lora(model, r=4, alpha=8, targets=targets)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        HAND[t] for t in targets
    )
    with torch.no_grad():  # B starts at zero: the adapted model computes the same logits
        torch.testing.assert_close(model(x), before_logits, rtol=0, atol=1e-6)
    frozen = _frozen_state(model)
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_B." in n}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sft_step(model, opt, x, y, w)
    after = _frozen_state(model)
    assert after.keys() == frozen.keys()
    for k in frozen:
        assert torch.equal(after[k], frozen[k]), f"{k} changed"
    if experts == "mxfp4":
        packed = [k for k in after if k.endswith((".blocks", ".scales"))]
        assert packed and all(after[k].dtype == torch.uint8 for k in packed)
    # every adapter learned: B moved away from zero
    for n, p in model.named_parameters():
        if ".lora_B." in n:
            assert not torch.equal(p, lora_b[n]), f"{n} did not train"


def test_expert_adapters_follow_our_out_by_in_layout():
    """peft's delta on mlp1_weight (E, 2I, H) must be scale * B_e @ A_e per expert: the adapted
    block computes the same as a plain block whose weights have that delta added by hand."""
    model = _micro("dequantized")
    lora.apply_lora(model, r=3, alpha=6, targets=("experts",), layers=[0])
    wrapped = model.block[0].mlp  # ParamWrapper(ParamWrapper(MLPBlock))
    ref = _micro("dequantized").block[0].mlp  # the same seed: the same weights
    g = torch.Generator().manual_seed(2)
    for layer in (wrapped, wrapped.base_layer):
        name = layer.parameter_name  # mlp1_weight or mlp2_weight
        A = layer.lora_A["default"].weight  # (r * E, in)
        B = layer.lora_B["default"].weight  # (out, r * E)
        with torch.no_grad():
            A.copy_(torch.randn(A.shape, generator=g))
            B.copy_(torch.randn(B.shape, generator=g) * 0.1)
        E = model.config.num_experts
        # written from peft's convention: A rows e*r..(e+1)*r-1 are expert e's (r, in) factor;
        # B columns are r-major: column j * E + e belongs to expert e, rank j
        Ae = A.reshape(E, 3, -1)  # (E, r, in)
        Be = B.reshape(B.shape[0], 3, E).permute(2, 0, 1)  # (E, out, r)
        delta = 2.0 * Be @ Ae  # scale alpha / r = 2
        with torch.no_grad():
            getattr(ref, name).add_(delta)
    x = torch.randn(1, 5, model.config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), ref(x), rtol=1e-5, atol=1e-6)


def test_recipe_counts_match_the_arithmetic():
    """recipe_arithmetic's trainable counts vs the parameters a real model has after apply_recipe."""
    from configs import micro_config

    cfg = micro_config()
    rows = {c.recipe: c for c in lora.recipe_arithmetic(cfg, r=4)}
    for name, rec in lora.RECIPES.items():
        model = ge.GptOss(cfg, experts=rec.experts, backend="torch")
        lora.apply_recipe(model, name, r=4)
        counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert rows[name].trainable == counted, name
        # float32 model: the bytes held are the float32 arithmetic's, counted from the tensors
        held = lora.memory_summary(model)["weight_bytes"]
        assert held == sum(p.numel() * 4 for p in model.parameters()) + sum(
            b.numel() for n, b in model.named_buffers() if n.endswith((".blocks", ".scales"))
        )
        assert held == {c.recipe: c for c in lora.recipe_arithmetic(cfg, 4, 4)}[name].weight_bytes
    assert rows["lora-packed"].trainable == HAND["attention"]
    assert rows["lora-dequantized"].trainable == HAND["attention"] + HAND["experts"]


def test_bad_targets_and_packed_experts_are_refused():
    model = _micro("mxfp4")
    with pytest.raises(ValueError, match="experts='dequantized'"):
        lora.apply_lora(model, targets=("attention", "experts"))
    with pytest.raises(ValueError, match="targets=.*'mlp'"):
        lora.apply_lora(model, targets=("mlp",))
    with pytest.raises(ValueError, match="r=0"):
        lora.apply_lora(model, r=0)
    with pytest.raises(ValueError, match="wants experts='dequantized'"):
        lora.apply_recipe(model, "full")
    with pytest.raises(ValueError, match="unknown recipe 'qlora'"):
        lora.get_recipe("qlora")


def test_optimizer_state_bytes_are_two_moments_and_leave_weights_alone():
    model = _micro("mxfp4")
    lora.apply_lora(model, r=4, alpha=8, targets=("attention",))
    with pytest.raises(ValueError, match="no gradient"):
        lora.optimizer_state_bytes(model)
    x, y, w = _batch(model.config)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sft_step(model, opt, x, y, w)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    got = lora.optimizer_state_bytes(model)
    # exp_avg and exp_avg_sq, float32, per trainable value, + one float32 `step` per tensor
    assert got == 8 * HAND["attention"] + 4 * len(trainable) == 8 * 896 + 4 * 8
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
