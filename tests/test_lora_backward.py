"""Gradients through frozen, packed MXFP4 experts (gptoss_edu.posttrain.lora.PackedLinear).

References are float64 autograd through the dequantized weights (`x @ W.T` with W decoded in
float64), not the code under test. No peft needed.
"""

import pytest
import torch

from gptoss_edu import kernels
from gptoss_edu.model.moe import MLPBlock
from gptoss_edu.mxfp4 import MXFP4Weight, dequantize, quantize
from gptoss_edu.posttrain import lora


def _packed(N, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return quantize(torch.randn(N, K, generator=g))


def _reference_grad(x, blocks, scales, grad_y):
    """d(sum(grad_y * x @ W.T))/dx in float64 autograd, W dequantized in float64."""
    w = dequantize(blocks, scales, torch.float64)  # (N, K)
    x64 = x.detach().double().requires_grad_()
    (x64 @ w.T).backward(grad_y.double())
    return x64.grad


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("tile_rows", [256, 5])  # 5 does not divide N = 24: a ragged last tile
def test_backward_matches_float64_autograd(backend, tile_rows, monkeypatch):
    blocks, scales = _packed(24, 64)
    x = torch.randn(7, 64, requires_grad=True)
    grad_y = torch.randn(7, 24)
    if tile_rows != 256:
        real = lora.packed_grad_input
        monkeypatch.setattr(
            lora, "packed_grad_input", lambda g, b, s: real(g, b, s, tile_rows=tile_rows)
        )
    y = lora.packed_linear(x, blocks, scales, backend)  # (7, 24)
    # the forward is the kernel's output, unchanged
    assert torch.equal(y.detach(), kernels.mxfp4_linear(x.detach(), blocks, scales, None, backend))
    y.backward(grad_y)
    want = _reference_grad(x, blocks, scales, grad_y)
    torch.testing.assert_close(x.grad.double(), want, rtol=1e-5, atol=1e-5)
    assert x.grad.dtype == torch.float32


def test_backward_tiles_by_hand():
    """grad_y @ W on a 2 x 32 weight written by hand: W = [[1, 0, ...], [0, 2, 0, ...]]."""
    w = torch.zeros(2, 32)
    w[0, 0], w[1, 1] = 1.0, 2.0
    blocks, scales = quantize(w)
    grad_y = torch.tensor([[3.0, 5.0]])  # (1, 2)
    got = lora.packed_grad_input(grad_y, blocks, scales, tile_rows=1)
    want = torch.zeros(1, 32)
    want[0, 0], want[0, 1] = 3.0, 10.0  # 3 * 1 and 5 * 2
    assert torch.equal(got, want)


def test_nan_scale_block_poisons_the_same_columns_as_the_float_reference():
    blocks, scales = _packed(6, 64)
    scales[2, 1] = 255  # row 2, columns 32..63 decode to NaN
    x = torch.randn(3, 64, requires_grad=True)
    grad_y = torch.randn(3, 6)
    lora.packed_linear(x, blocks, scales, "torch").backward(grad_y)
    want = _reference_grad(x, blocks, scales, grad_y)
    assert torch.equal(torch.isnan(x.grad), torch.isnan(want))
    assert torch.isnan(x.grad[:, 32:]).all() and not torch.isnan(x.grad[:, :32]).any()
    torch.testing.assert_close(x.grad[:, :32].double(), want[:, :32], rtol=1e-5, atol=1e-5)


def test_mxfp4weight_linear_differentiates_only_when_asked(monkeypatch):
    w = MXFP4Weight(2, 16, 32, backend="torch")
    w.copy_(torch.randn(2, 16, 32))
    x = torch.randn(4, 32)
    # inference (no grad needed): the kernel's path, not the Function
    calls = []
    real = lora.packed_linear
    monkeypatch.setattr(lora, "packed_linear", lambda *a: calls.append(1) or real(*a))
    y0 = w.linear(1, x)
    with torch.no_grad():
        y1 = w.linear(1, x.clone().requires_grad_())
    assert calls == [] and not y0.requires_grad and not y1.requires_grad
    assert torch.equal(y0, kernels.mxfp4_linear(x, w.blocks[1], w.scales[1], None, "torch"))
    # training: through the Function, gradient to x only (the packed bytes are buffers)
    xg = x.clone().requires_grad_()
    y = w.linear(1, xg)
    assert calls == [1] and torch.equal(y.detach(), y0)
    y.sum().backward()
    want = _reference_grad(x, w.blocks[1], w.scales[1], torch.ones(4, 16))
    torch.testing.assert_close(xg.grad.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_gradient_flows_through_a_packed_moe_block(backend):
    """An MoE block with packed experts vs the same block dequantized in float64: same dL/dx."""
    from configs import micro_config

    cfg = micro_config()
    torch.manual_seed(1)
    packed = MLPBlock(cfg, experts="mxfp4", backend=backend)
    dense = MLPBlock(cfg, experts="dequantized").double()
    with torch.no_grad():
        for name, p in dense.named_parameters():
            if name in ("mlp1_weight", "mlp2_weight"):
                p.copy_(getattr(packed, name).dequantize(torch.float64))
            else:
                p.copy_(dict(packed.named_parameters())[name].double())
            # biases are zero after init: give them values so that they matter
        for name in ("mlp1_bias", "mlp2_bias"):
            b = torch.randn_like(getattr(dense, name)) * 0.1
            getattr(dense, name).copy_(b)
            getattr(packed, name).copy_(b.float())
    x = torch.randn(2, 5, cfg.hidden_size)
    xp = x.clone().requires_grad_()
    xd = x.double().requires_grad_()
    packed(xp).pow(2).sum().backward()
    dense(xd).pow(2).sum().backward()
    assert xp.grad is not None and xp.grad.abs().sum() > 0
    torch.testing.assert_close(xp.grad.double(), xd.grad, rtol=1e-4, atol=1e-5)
    # the packed weights got no gradient and are still uint8 buffers
    assert packed.mlp1_weight.blocks.dtype == torch.uint8
    assert not any(b.requires_grad for b in packed.buffers())
