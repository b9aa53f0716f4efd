import math

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.model import RMSNorm, apply_rotary, sdpa_with_sinks, swiglu, yarn_inv_freq


def test_rmsnorm_by_hand():
    norm = RMSNorm(4)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    expected = x / math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-5)
    torch.testing.assert_close(norm(x), expected)
    xb = x.bfloat16()
    assert norm(xb).dtype == torch.bfloat16


def test_yarn_matches_spec_numbers():
    cfg = ge.ModelConfig.gpt_oss_20b()
    low, high = cfg.yarn_bounds()
    assert abs(low - 8.0928) < 1e-4 and abs(high - 17.3980) < 1e-4
    inv_freq, conc = yarn_inv_freq(cfg)
    assert abs(conc - (0.1 * math.log(32) + 1)) < 1e-12 and abs(conc - 1.34657) < 1e-5
    theta = 150000 ** (-2 * torch.arange(32, dtype=torch.float64) / 64)
    torch.testing.assert_close(inv_freq[:8], theta[:8])  # fast pairs kept
    torch.testing.assert_close(inv_freq[18:], theta[18:] / 32)  # slow pairs interpolated
    i = 12
    m = 1 - (i - low) / (high - low)
    assert abs(float(inv_freq[i]) - (theta[i] * m + theta[i] / 32 * (1 - m))) < 1e-15


def test_rope_factor_one_is_plain_rope_and_half_split():
    cfg = ge.ModelConfig.tiny().replace(rope_scaling_factor=1.0)
    inv_freq, conc = yarn_inv_freq(cfg)
    assert conc == 1.0
    x = torch.zeros(1, 1, cfg.head_dim)
    x[..., 0] = 1.0  # first element of the first half pairs with element head_dim/2
    angle = 3 * float(inv_freq[0])
    cos = torch.cos(torch.tensor([[angle] * (cfg.head_dim // 2)]))
    sin = torch.sin(torch.tensor([[angle] * (cfg.head_dim // 2)]))
    y = apply_rotary(x, cos, sin)
    assert abs(float(y[0, 0, 0]) - math.cos(angle)) < 1e-6
    assert abs(float(y[0, 0, cfg.head_dim // 2]) - math.sin(angle)) < 1e-6


def test_sink_is_a_zero_value_key():
    q = torch.zeros(1, 1, 1, 1, 2)  # one query: all scores 0
    k = torch.zeros(1, 3, 1, 2)
    v = torch.ones(1, 3, 1, 2)
    mask = torch.ones(1, 3, dtype=torch.bool)
    sink = torch.tensor([math.log(3.0)])  # exp(sink) = 3 = sum of the three exp(0)
    out, w = sdpa_with_sinks(q, k, v, sink, mask, 1.0, return_weights=True)
    torch.testing.assert_close(w.sum(), torch.tensor(0.5))
    torch.testing.assert_close(out, torch.full((1, 1, 2), 0.5))


def test_swiglu_by_hand():
    h = torch.tensor([10.0, -9.0, 1.0, 2.0])  # pairs (gate, lin): (10,-9), (1, 2)
    out = swiglu(h)
    g = 7.0
    expected0 = g * (1 / (1 + math.exp(-1.702 * g))) * (-7 + 1)
    expected1 = 1 * (1 / (1 + math.exp(-1.702))) * (2 + 1)
    torch.testing.assert_close(out, torch.tensor([expected0, expected1]))


def test_sliding_window_locality():
    """Changing a token more than a window back changes nothing in a model with one sliding layer."""
    cfg = ge.ModelConfig.tiny().replace(num_hidden_layers=1)
    m = ge.GptOss(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (60,))
    y = x.clone()
    y[0] = (x[0] + 1) % cfg.vocab_size
    a, b = m(x), m(y)
    w = cfg.sliding_window
    assert not torch.allclose(a[w - 1], b[w - 1])  # position w-1 still sees token 0
    torch.testing.assert_close(a[w:], b[w:])  # later positions do not


def test_batched_equals_unbatched_and_bf16_runs():
    cfg = ge.ModelConfig.tiny()
    m = ge.GptOss(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(m(x)[1], m(x[1]), rtol=1e-5, atol=1e-5)
        mb = ge.GptOss(cfg).eval()
        mb.load_state_dict(m.state_dict())
        mb = mb.to(torch.bfloat16)
        yb = mb(x)
        assert yb.dtype == torch.bfloat16
        rel = (yb.float() - m(x)).norm() / m(x).norm()
        assert rel < 0.05


def test_bad_tokens_are_named():
    m = ge.GptOss(ge.ModelConfig.tiny())
    with pytest.raises(ValueError, match="out of range"):
        m(torch.tensor([0, 4096]))
    with pytest.raises(ValueError, match="out of range"):
        m(torch.tensor([-1]))
    with pytest.raises(TypeError, match="integer"):
        m(torch.tensor([0.5]))
    with pytest.raises(TypeError, match="torch.LongTensor"):
        m([1, 2, 3])
    with pytest.raises(ValueError, match="shape"):
        m(torch.zeros(1, 1, 3, dtype=torch.long))
    short = ge.GptOss(
        ge.ModelConfig.tiny().replace(initial_context_length=32, rope_scaling_factor=1.0)
    )
    with pytest.raises(ValueError, match="context"):
        short(torch.zeros(33, dtype=torch.long))
