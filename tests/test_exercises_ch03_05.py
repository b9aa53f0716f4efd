"""Checkers of chapters 3-5: a correct function passes; each classic mistake fails with a message
that names it. The correct functions here are written independently (float64 formulas, hand
loops), not taken from the package."""

import math

import pytest
import torch

from gptoss_edu.exercises import ch03_norm as c3
from gptoss_edu.exercises import ch04_rope as c4
from gptoss_edu.exercises import ch05_attention as c5


def run(checker, fn, capsys):
    ok = checker(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # exactly one line
    return ok, out


def expect_pass(checker, fn, capsys):
    ok, out = run(checker, fn, capsys)
    assert ok is True, out
    assert out.startswith("✅"), out


def expect_fail(checker, fn, capsys, *words):
    ok, out = run(checker, fn, capsys)
    assert ok is False, out
    assert out.startswith("❌"), out
    for w in words:
        assert w.lower() in out.lower(), f"{w!r} not in {out!r}"


def test_not_implemented_is_friendly(capsys):
    def todo(*args):
        raise NotImplementedError("write RMSNorm")

    for checker in (c3.check_rmsnorm, c4.check_yarn_inv_freq, c5.check_kv_cache_bytes):
        ok, out = run(checker, todo, capsys)
        assert ok is False and out.startswith("⏳") and "write RMSNorm" in out


# ---------------------------------------------------------------- chapter 3


def rms_ok(x, scale, eps=1e-5):
    t = x.double()
    y = t / torch.sqrt((t * t).mean(-1, keepdim=True) + eps) * scale.double()
    return y.to(x.dtype)


def test_embedding_lookup(capsys):
    expect_pass(c3.check_embedding_lookup, lambda w, t: w[t], capsys)
    expect_pass(
        c3.check_embedding_lookup,
        lambda w, t: torch.nn.functional.one_hot(t, w.shape[0]).float() @ w,
        capsys,
    )
    expect_fail(
        c3.check_embedding_lookup,
        lambda w, t: torch.nn.functional.one_hot(t, w.shape[0]).float(),
        capsys,
        "one-hot",
    )
    expect_fail(c3.check_embedding_lookup, lambda w, t: w[t] * 2, capsys, "ratio 2")


def test_rmsnorm(capsys):
    expect_pass(c3.check_rmsnorm, rms_ok, capsys)

    def layernorm(x, scale, eps=1e-5):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps) * scale

    expect_fail(c3.check_rmsnorm, layernorm, capsys, "LayerNorm")
    expect_fail(
        c3.check_rmsnorm, lambda x, s, eps=1e-5: rms_ok(x, torch.ones_like(s), eps), capsys, "scale"
    )

    def eps_outside(x, scale, eps=1e-5):
        return x / (torch.sqrt((x * x).mean(-1, keepdim=True)) + eps) * scale

    expect_fail(c3.check_rmsnorm, eps_outside, capsys, "eps")

    def sum_not_mean(x, scale, eps=1e-5):
        return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps) * scale

    expect_fail(c3.check_rmsnorm, sum_not_mean, capsys, "mean")


def test_rmsnorm_bf16(capsys):
    expect_pass(c3.check_rmsnorm_bf16, rms_ok, capsys)

    def in_bf16(x, scale, eps=1e-5):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * scale.to(x.dtype)

    expect_fail(c3.check_rmsnorm_bf16, in_bf16, capsys, "bf16", "float32")

    def no_cast_back(x, scale, eps=1e-5):
        return rms_ok(x.float(), scale.float(), eps)

    expect_fail(c3.check_rmsnorm_bf16, no_cast_back, capsys, "float32", "x.dtype")


def test_pre_norm(capsys):
    expect_pass(c3.check_pre_norm, lambda x, n, f: x + f(n(x)), capsys)
    expect_fail(c3.check_pre_norm, lambda x, n, f: n(x + f(x)), capsys, "post-norm")
    expect_fail(c3.check_pre_norm, lambda x, n, f: f(n(x)), capsys, "residual")
    expect_fail(c3.check_pre_norm, lambda x, n, f: x + f(x), capsys, "norm is missing")


def test_norm_parameters(capsys):
    def ok(cfg):
        # two norms per block (attention, MoE) + the final norm, each hidden_size scales
        return sum(cfg.hidden_size for _ in range(cfg.num_hidden_layers) for _ in range(2)) + (
            cfg.hidden_size
        )

    expect_pass(c3.check_norm_parameters, ok, capsys)
    assert ok(c3.ModelConfig.gpt_oss_20b()) == 141_120  # 49 * 2880, by hand
    expect_fail(
        c3.check_norm_parameters,
        lambda c: 2 * c.num_hidden_layers * c.hidden_size,
        capsys,
        "final norm",
    )
    expect_fail(
        c3.check_norm_parameters,
        lambda c: (c.num_hidden_layers + 1) * c.hidden_size,
        capsys,
        "two norms",
    )
    expect_fail(c3.check_norm_parameters, lambda c: 1.0, capsys, "int")


# ---------------------------------------------------------------- chapter 4


def inv_freq_ok(head_dim, theta):
    return torch.tensor(
        [theta ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64
    )


def test_rope_inv_freq(capsys):
    expect_pass(c4.check_rope_inv_freq, inv_freq_ok, capsys)
    bad = lambda d, t: torch.tensor([t ** (-i / d) for i in range(d // 2)], dtype=torch.float64)  # noqa: E731
    expect_fail(c4.check_rope_inv_freq, bad, capsys, "-i/head_dim")
    full = lambda d, t: torch.tensor([t ** (-i / d) for i in range(d)], dtype=torch.float64)  # noqa: E731
    expect_fail(c4.check_rope_inv_freq, full, capsys, "one frequency per pair")
    expect_fail(c4.check_rope_inv_freq, lambda d, t: inv_freq_ok(d, t).float(), capsys, "dtype")


def rotary_ok(x, cos, sin):
    # loop over pairs (x[i], x[i + D/2]) and rotate each by its angle
    D = x.shape[-1]
    out = x.clone()
    for i in range(D // 2):
        a, b = x[..., i], x[..., i + D // 2]
        c, s = cos[:, None, i], sin[:, None, i]
        out[..., i] = a * c - b * s
        out[..., i + D // 2] = b * c + a * s
    return out


def test_apply_rotary(capsys):
    expect_pass(c4.check_apply_rotary, rotary_ok, capsys)
    expect_fail(c4.check_apply_rotary, c4._interleaved, capsys, "interleaved", "half-split")
    expect_fail(c4.check_apply_rotary, lambda x, c, s: rotary_ok(x, c, -s), capsys, "wrong way")
    expect_fail(c4.check_apply_rotary, lambda x, c, s: x, capsys, "values differ")


def bounds_ok(cfg):
    d, L, b = cfg.head_dim, cfg.initial_context_length, cfg.rope_theta

    def edge(rotations):  # pair index whose wavelength fits `rotations` times into L
        return (d / 2) * math.log(L / (rotations * 2 * math.pi)) / math.log(b)

    return edge(cfg.rope_ntk_beta), edge(cfg.rope_ntk_alpha)


def test_yarn_bounds(capsys):
    expect_pass(c4.check_yarn_bounds, bounds_ok, capsys)
    low, high = bounds_ok(c4.ModelConfig.gpt_oss_20b())
    assert round(low, 4) == 8.0928 and round(high, 4) == 17.3980  # SPEC.md
    expect_fail(c4.check_yarn_bounds, lambda c: bounds_ok(c)[::-1], capsys, "swapped")
    expect_fail(
        c4.check_yarn_bounds, lambda c: tuple(2 * v for v in bounds_ok(c)), capsys, "head_dim/2"
    )


def yarn_ok(cfg):
    d_half = cfg.head_dim // 2
    low, high = bounds_ok(cfg)
    out = []
    for i in range(d_half):
        theta = cfg.rope_theta ** (-2 * i / cfg.head_dim)
        if cfg.rope_scaling_factor == 1:
            out.append(theta)
            continue
        r = min(max((i - low) / (high - low), 0.0), 1.0)  # 0 fast ... 1 slow
        out.append((1 - r) * theta + r * theta / cfg.rope_scaling_factor)
    conc = 0.1 * math.log(cfg.rope_scaling_factor) + 1 if cfg.rope_scaling_factor > 1 else 1.0
    return torch.tensor(out, dtype=torch.float64), conc


def test_yarn_inv_freq(capsys):
    expect_pass(c4.check_yarn_inv_freq, yarn_ok, capsys)
    assert math.isclose(yarn_ok(c4.ModelConfig.gpt_oss_20b())[1], 1.34657, rel_tol=1e-5)
    expect_fail(c4.check_yarn_inv_freq, lambda c: (yarn_ok(c)[0], 1.0), capsys, "concentration")
    expect_fail(
        c4.check_yarn_inv_freq,
        lambda c: (inv_freq_ok(c.head_dim, c.rope_theta), yarn_ok(c)[1]),
        capsys,
        "plain RoPE",
    )
    expect_fail(
        c4.check_yarn_inv_freq,
        lambda c: (inv_freq_ok(c.head_dim, c.rope_theta) / c.rope_scaling_factor, yarn_ok(c)[1]),
        capsys,
        "fast pairs",
    )

    def reversed_ramp(cfg):
        f, c = yarn_ok(cfg)
        theta = inv_freq_ok(cfg.head_dim, cfg.rope_theta)
        # the correct blend is theta (1 - r) + theta/f r; swapping the weights gives the sum minus it
        return theta + theta / cfg.rope_scaling_factor - f, c

    expect_fail(c4.check_yarn_inv_freq, reversed_ramp, capsys, "reversed")
    expect_fail(
        c4.check_yarn_inv_freq,
        lambda c: (yarn_ok(c)[0], 0.1 * math.log10(c.rope_scaling_factor) + 1),
        capsys,
        "natural log",
    )


def cos_sin_ok(positions, inv_freq, conc):
    angles = positions.double()[:, None] * inv_freq.double()[None, :]
    return (torch.cos(angles) * conc).float(), (torch.sin(angles) * conc).float()


def test_rope_cos_sin(capsys):
    expect_pass(c4.check_rope_cos_sin, cos_sin_ok, capsys)
    expect_fail(
        c4.check_rope_cos_sin, lambda p, f, c: cos_sin_ok(p, f, 1.0), capsys, "ratio 0.7426"
    )
    expect_fail(c4.check_rope_cos_sin, lambda p, f, c: cos_sin_ok(p, f, c * c), capsys, "twice")
    expect_fail(c4.check_rope_cos_sin, lambda p, f, c: cos_sin_ok(p, f, c)[::-1], capsys, "swapped")


# ---------------------------------------------------------------- chapter 5


def attend_ok(q, k, v, mask, sink=None):
    D = q.shape[-1]
    s = q.double() @ k.double().T / math.sqrt(D)
    s = torch.where(mask, s, torch.tensor(-math.inf, dtype=torch.float64))
    m = s.max(-1, keepdim=True).values
    e = torch.exp(s - m)
    denom = e.sum(-1, keepdim=True)
    if sink is not None:
        denom = denom + torch.exp(sink - m)
    return (e / denom @ v.double()).to(q.dtype)


def causal(T, S=None):
    return torch.tensor([[s <= t for s in range(S or T)] for t in range(T)])


def test_causal_attention(capsys):
    expect_pass(
        c5.check_causal_attention, lambda q, k, v: attend_ok(q, k, v, causal(len(q))), capsys
    )
    full = lambda q, k, v: attend_ok(q, k, v, torch.ones(len(q), len(q), dtype=torch.bool))  # noqa: E731
    expect_fail(c5.check_causal_attention, full, capsys, "causal mask")
    unscaled = lambda q, k, v: attend_ok(q * math.sqrt(q.shape[-1]), k, v, causal(len(q)))  # noqa: E731
    expect_fail(c5.check_causal_attention, unscaled, capsys, "sqrt")


def window_ok(T, w):
    return torch.tensor([[t - w < s <= t for s in range(T)] for t in range(T)])


def test_sliding_window_mask(capsys):
    expect_pass(c5.check_sliding_window_mask, window_ok, capsys)
    expect_fail(
        c5.check_sliding_window_mask, lambda T, w: window_ok(T, w + 1), capsys, "off by one"
    )
    expect_fail(
        c5.check_sliding_window_mask, lambda T, w: window_ok(T, w - 1), capsys, "off by one"
    )
    expect_fail(
        c5.check_sliding_window_mask,
        lambda T, w: torch.tensor([[abs(t - s) < w for s in range(T)] for t in range(T)]),
        capsys,
        "not causal",
    )
    expect_fail(c5.check_sliding_window_mask, lambda T, w: window_ok(T, w).int(), capsys, "bool")


def test_attention_with_sink(capsys):
    def ok(q, k, v, sink):
        return attend_ok(q, k, v, causal(len(q)), torch.tensor(sink, dtype=torch.float64))

    expect_pass(c5.check_attention_with_sink, ok, capsys)
    ignored = lambda q, k, v, sink: attend_ok(q, k, v, causal(len(q)))  # noqa: E731
    expect_fail(c5.check_attention_with_sink, ignored, capsys, "no effect")
    expect_fail(
        c5.check_attention_with_sink,
        lambda q, k, v, sink: ok(q, k, v, math.exp(sink)),
        capsys,
        "exp(sink)",
    )


def gqa_ok(q, k, v, by_modulo=False):
    T, H, D = q.shape
    Hkv = k.shape[1]
    heads = []
    for h in range(H):
        kv = h % Hkv if by_modulo else h // (H // Hkv)
        heads.append(attend_ok(q[:, h], k[:, kv], v[:, kv], causal(T)))
    return torch.stack(heads, dim=1)


def test_gqa_attention(capsys):
    expect_pass(c5.check_gqa_attention, gqa_ok, capsys)
    expect_fail(
        c5.check_gqa_attention, lambda q, k, v: gqa_ok(q, k, v, True), capsys, "repeat_interleave"
    )
    expect_fail(
        c5.check_gqa_attention,
        lambda q, k, v: gqa_ok(q, k, v)[:, :2],
        capsys,
        "one output per query head",
    )


def kv_ok(cfg, tokens):
    total = 0
    for layer in range(cfg.num_hidden_layers):
        kept = min(tokens, cfg.sliding_window) if layer % 2 == 0 else tokens
        total += kept * cfg.num_key_value_heads * cfg.head_dim * 2 * 2  # K and V, 2 bytes each
    return total


def test_kv_cache_bytes(capsys):
    expect_pass(c5.check_kv_cache_bytes, kv_ok, capsys)
    # 20b at 128k: 12 full layers x 131072 + 12 sliding x 128, x 8 heads x 64 x 2 x 2 bytes
    assert kv_ok(c5.ModelConfig.gpt_oss_20b(), 131072) == (12 * 131072 + 12 * 128) * 8 * 64 * 4
    no_window = lambda c, t: c.num_hidden_layers * t * c.kv_dim * 4  # noqa: E731
    expect_fail(c5.check_kv_cache_bytes, no_window, capsys, "sliding")
    expect_fail(c5.check_kv_cache_bytes, lambda c, t: kv_ok(c, t) // 2, capsys, "K and V")
    expect_fail(c5.check_kv_cache_bytes, lambda c, t: kv_ok(c, t) * 2, capsys, "float32")
    expect_fail(
        c5.check_kv_cache_bytes,
        lambda c, t: kv_ok(c, t) * c.num_attention_heads // c.num_key_value_heads,
        capsys,
        "key/value heads",
    )


@pytest.mark.parametrize(
    "checker",
    [getattr(m, n) for m in (c3, c4, c5) for n in m.__all__],
    ids=lambda c: c.__name__,
)
def test_checker_survives_garbage(checker, capsys):
    ok, out = run(checker, lambda *a: "not a tensor", capsys)
    assert ok is False and out.startswith("❌"), out


# ---------------------------------------------------------------- your own gpt-oss (modules)

from gptoss_edu.model import attention as pkg_attention  # noqa: E402
from gptoss_edu.model import norm as pkg_norm  # noqa: E402
from gptoss_edu.model import rope as pkg_rope  # noqa: E402


def test_my_rmsnorm_module(capsys):
    expect_pass(c3.check_my_rmsnorm, pkg_norm.RMSNorm, capsys)

    class AllBf16(pkg_norm.RMSNorm):
        def forward(self, x):
            return (
                x
                * torch.rsqrt(torch.mean(x * x, -1, keepdim=True) + self.eps)
                * self.scale.to(x.dtype)
            )

    expect_fail(c3.check_my_rmsnorm, AllBf16, capsys, "float32")

    class NoCheck(pkg_norm.RMSNorm):
        def forward(self, x):
            t = x.float()
            t = t * torch.rsqrt(torch.mean(t * t, dim=-1, keepdim=True) + self.eps)
            return (t * self.scale.float()[: t.shape[-1]]).to(x.dtype)

    expect_fail(c3.check_my_rmsnorm, NoCheck, capsys, "ValueError")

    class Named(torch.nn.Module):
        def __init__(self, n, eps=1e-5):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(n))

    expect_fail(c3.check_my_rmsnorm, Named, capsys, "scale")


def test_my_rotary_embedding_module(capsys):
    expect_pass(c4.check_my_rotary_embedding, pkg_rope.RotaryEmbedding, capsys)

    class NoConcentration(pkg_rope.RotaryEmbedding):
        def __init__(self, config):
            super().__init__(config)
            self.concentration = 1.0

    expect_fail(c4.check_my_rotary_embedding, NoConcentration, capsys, "concentration")

    class Interleaved(pkg_rope.RotaryEmbedding):
        def forward(self, q, k, positions):
            cos, sin = self.cos_sin(positions)
            return c4._interleaved(q, cos, sin), c4._interleaved(k, cos, sin)

    expect_fail(c4.check_my_rotary_embedding, Interleaved, capsys, "half-split")


def test_my_attention_block_module(capsys):
    expect_pass(c5.check_my_attention_block, pkg_attention.AttentionBlock, capsys)

    class NoWindow(pkg_attention.AttentionBlock):
        def __init__(self, config, layer_idx):
            super().__init__(config, layer_idx)
            self.sliding_window = None

    expect_fail(c5.check_my_attention_block, NoWindow, capsys, "window")

    class WindowPlusOne(pkg_attention.AttentionBlock):
        def __init__(self, config, layer_idx):
            super().__init__(config, layer_idx)
            if self.sliding_window is not None:
                self.sliding_window += 1

    expect_fail(c5.check_my_attention_block, WindowPlusOne, capsys, "5 keys, not 4")

    class NoSinks(pkg_attention.AttentionBlock):
        def forward(self, x, positions, cache=None):
            saved = self.sinks.detach().clone()
            with torch.no_grad():
                self.sinks.fill_(float("-inf"))
                out = super().forward(x, positions, cache)
                self.sinks.copy_(saved)
            return out

    expect_fail(c5.check_my_attention_block, NoSinks, capsys, "sinks")


def test_my_kv_cache_module(capsys):
    expect_pass(c5.check_my_kv_cache, pkg_attention.KVCache, capsys)

    class TrimBeforeAttending(pkg_attention.KVCache):
        """Classic mistake: evict first, then attend (a long chunk loses keys it needs)."""

        def _ring(self, layer, k, v, new_positions, window):
            keys, values, positions = super()._ring(layer, k, v, new_positions, window)
            filled = self.slot_positions[layer] >= 0
            return (
                self.keys[layer][:, filled],
                self.values[layer][:, filled],
                self.slot_positions[layer][filled],
            )

    expect_fail(c5.check_my_kv_cache, TrimBeforeAttending, capsys, "longer than the window")

    class NeverEvicts(pkg_attention.KVCache):
        def __init__(self, config):
            super().__init__(config, trim_sliding=False)

    expect_fail(c5.check_my_kv_cache, NeverEvicts, capsys, "at most sliding_window")


def test_student_module_falls_back_loudly_and_loads_yours(tmp_path, capsys):
    from gptoss_edu.exercises import my_gptoss

    my_gptoss.set_student_dir(tmp_path / "mine")
    try:
        mod = my_gptoss.student_module("norm")
        assert mod is pkg_norm
        assert "does not exist yet" in capsys.readouterr().out
        my_gptoss.save_module("norm", 'raise NotImplementedError("exercise 3.6: write it")\n')
        assert my_gptoss.student_module("norm") is pkg_norm
        assert "unfinished" in capsys.readouterr().out
        my_gptoss.save_module("norm", "ANSWER = 42\n")
        assert my_gptoss.student_module("norm").ANSWER == 42
        assert "using your norm.py" in capsys.readouterr().out
        with pytest.raises(FileNotFoundError, match="rope.py does not exist yet.*chapter 4"):
            my_gptoss.student_module("rope", fallback=False)
        with pytest.raises(ValueError, match="no module called 'nrom'"):
            my_gptoss.student_module("nrom")
    finally:
        my_gptoss._student_dir = None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_module_checkers_hidden_cases(seed, capsys):
    for check, right in (
        (c3.check_my_rmsnorm, pkg_norm.RMSNorm),
        (c4.check_my_rotary_embedding, pkg_rope.RotaryEmbedding),
        (c5.check_my_attention_block, pkg_attention.AttentionBlock),
        (c5.check_my_kv_cache, pkg_attention.KVCache),
    ):
        assert check.hidden
        assert check(right, seed=seed), capsys.readouterr().out

    class NeverEvicts(pkg_attention.KVCache):
        def __init__(self, config):
            super().__init__(config, trim_sliding=False)

    class NoConcentration(pkg_rope.RotaryEmbedding):
        def __init__(self, config):
            super().__init__(config)
            self.concentration = 1.0

    assert not c5.check_my_kv_cache(NeverEvicts, seed=seed)
    assert not c4.check_my_rotary_embedding(NoConcentration, seed=seed)
    assert "concentration" in capsys.readouterr().out
