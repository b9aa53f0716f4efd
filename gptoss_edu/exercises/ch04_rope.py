"""Checkers for chapter 4's exercises (exercises/04_rope_yarn.ipynb): RoPE frequencies, the
half-split rotation, YaRN's band edges and frequencies, and the concentration factor.

    ge.exercises.check_apply_rotary(my_apply_rotary)
"""

from __future__ import annotations

import math

import torch

from ..config import ModelConfig
from ..model.rope import RotaryEmbedding, apply_rotary, yarn_inv_freq
from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_rope_inv_freq",
    "check_apply_rotary",
    "check_yarn_bounds",
    "check_yarn_inv_freq",
    "check_rope_cos_sin",
]


@Checker("check_rope_inv_freq")
def check_rope_inv_freq(fn):
    """fn(head_dim, theta) -> (head_dim/2,) float64 with theta ** (-2i / head_dim)."""
    for head_dim, theta in ((64, 150000.0), (8, 10000.0)):
        got = fn(head_dim, theta)
        i = torch.arange(head_dim // 2, dtype=torch.float64)
        expected = theta ** (-2 * i / head_dim)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            g = got.double()
            if torch.allclose(g, theta ** (-i / head_dim)):
                raise ExerciseFailure(
                    "the exponent is -i/head_dim; pair i rotates at theta^(-2i/head_dim) "
                    "(pairs are 2 dimensions wide)"
                )
            if torch.allclose(g, theta ** (2 * i / head_dim)):
                raise ExerciseFailure("the exponent's sign is flipped: use theta^(-2i/head_dim)")
            if torch.allclose(g, theta ** (-2 * (i + 1) / head_dim)):
                raise ExerciseFailure("off by one: i runs from 0, so pair 0 has frequency 1")
        if isinstance(got, torch.Tensor) and got.shape == (head_dim,):
            raise ExerciseFailure(
                f"shape ({head_dim},): there is one frequency per pair, head_dim/2 = {head_dim // 2}"
            )
        expect_close(got, expected, f"inv_freq for head_dim={head_dim}, theta={theta:g}", rtol=1e-6)
    return "pair 0 turns 1 radian per position, the last pair about 1/theta"


def _interleaved(x, cos, sin):
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.flatten(-2)


@Checker("check_apply_rotary")
def check_apply_rotary(fn):
    """fn(x (T, heads, D), cos (T, D/2), sin (T, D/2)) -> rotated x, half-split layout."""
    g = torch.Generator().manual_seed(4)
    T, heads, D = 5, 3, 8
    x = torch.randn(T, heads, D, generator=g)
    angles = torch.rand(T, D // 2, generator=g) * 6
    cos, sin = torch.cos(angles), torch.sin(angles)
    got = fn(x, cos, sin)
    expected = apply_rotary(x, cos, sin)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        if torch.allclose(got, _interleaved(x, cos, sin), atol=1e-5):
            raise ExerciseFailure(
                "this rotates interleaved pairs (x[0], x[1]), (x[2], x[3]), ...; gpt-oss uses the "
                "half-split layout: pair i is (x[i], x[i + D/2])"
            )
        if torch.allclose(got, apply_rotary(x, cos, -sin), atol=1e-5):
            raise ExerciseFailure(
                "this rotates the wrong way (by -angle): the first half is x1*cos - x2*sin, the "
                "second x2*cos + x1*sin"
            )
    expect_close(got, expected, "rotated x")
    return "pair i = (x[i], x[i + D/2]) turned by its angle"


@Checker("check_yarn_bounds")
def check_yarn_bounds(fn):
    """fn(config) -> (low, high): the YaRN band edges, in pair-index units."""
    for cfg in (ModelConfig.gpt_oss_20b(), ModelConfig.tiny()):
        got = fn(cfg)
        if not isinstance(got, tuple) or len(got) != 2:
            raise ExerciseFailure(f"return a tuple (low, high); got {got!r}")
        low, high = (float(v) for v in got)
        exp_low, exp_high = cfg.yarn_bounds()
        if math.isclose(low, exp_high, rel_tol=1e-6) and math.isclose(high, exp_low, rel_tol=1e-6):
            raise ExerciseFailure(
                "low and high are swapped: low uses ntk_beta (32, the fast pairs' limit), high "
                "uses ntk_alpha (1)"
            )
        if math.isclose(low, 2 * exp_low, rel_tol=1e-6):
            raise ExerciseFailure("twice too large: multiply by head_dim/2, not head_dim")
        if not (
            math.isclose(low, exp_low, rel_tol=1e-6) and math.isclose(high, exp_high, rel_tol=1e-6)
        ):
            raise ExerciseFailure(
                f"for initial_context_length {cfg.initial_context_length}, head_dim "
                f"{cfg.head_dim}: got ({low:.4f}, {high:.4f}), expected ({exp_low:.4f}, "
                f"{exp_high:.4f}). low = d_half * ln(L / (beta * 2 pi)) / ln(theta)"
            )
    return "gpt-oss-20b: low 8.0928, high 17.3980"


@Checker("check_yarn_inv_freq")
def check_yarn_inv_freq(fn):
    """fn(config) -> (inv_freq (head_dim/2,), concentration float)."""
    for cfg in (ModelConfig.gpt_oss_20b(), ModelConfig.tiny()):
        got = fn(cfg)
        if not isinstance(got, tuple) or len(got) != 2:
            raise ExerciseFailure(
                f"return a tuple (inv_freq, concentration); got {type(got).__name__}"
            )
        inv_freq, concentration = got
        expected, exp_conc = yarn_inv_freq(cfg)
        if isinstance(inv_freq, torch.Tensor) and inv_freq.shape == expected.shape:
            f = inv_freq.double()
            i = torch.arange(cfg.head_dim // 2, dtype=torch.float64)
            theta = cfg.rope_theta ** (-2 * i / cfg.head_dim)
            factor = cfg.rope_scaling_factor
            if torch.allclose(f, theta):
                raise ExerciseFailure(
                    "these are plain RoPE frequencies: slow pairs (i > high) must be divided by "
                    "the scaling factor, with a linear ramp between low and high"
                )
            if torch.allclose(f, theta / factor):
                raise ExerciseFailure(
                    "every pair was divided by the factor (plain position interpolation); fast "
                    "pairs (i < low) must keep their original frequency"
                )
            low, high = cfg.yarn_bounds()
            ramp = ((i - low) / (high - low)).clamp(0, 1)
            reversed_ = theta * ramp + theta / factor * (1 - ramp)
            if torch.allclose(f, reversed_):
                raise ExerciseFailure(
                    "the ramp is reversed: pairs below `low` (fast) keep theta_i, pairs above "
                    "`high` (slow) get theta_i / factor"
                )
        expect_close(
            torch.as_tensor(inv_freq).double(),
            expected,
            f"inv_freq ({cfg.num_hidden_layers} layers)",
            rtol=1e-5,
        )
        c = float(concentration)
        if math.isclose(c, 1.0) and not math.isclose(exp_conc, 1.0):
            raise ExerciseFailure(
                f"the concentration is 1; it is 0.1 * ln(factor) + 1 = {exp_conc:.5f}"
            )
        if not math.isclose(c, exp_conc, rel_tol=1e-6):
            raise ExerciseFailure(
                f"concentration {c:.5f}; expected 0.1 * ln({cfg.rope_scaling_factor:g}) + 1 = "
                f"{exp_conc:.5f} (natural log)"
            )
    plain = fn(ModelConfig.tiny().replace(rope_scaling_factor=1.0))
    expect_close(
        torch.as_tensor(plain[0]).double(),
        yarn_inv_freq(ModelConfig.tiny().replace(rope_scaling_factor=1.0))[0],
        "inv_freq with rope_scaling_factor=1 (must be plain RoPE)",
    )
    if not math.isclose(float(plain[1]), 1.0):
        raise ExerciseFailure(f"with factor 1 the concentration must be 1; got {float(plain[1])}")
    return "three bands and a concentration of 1.34657"


@Checker("check_rope_cos_sin")
def check_rope_cos_sin(fn):
    """fn(positions (T,) int64, inv_freq (D/2,), concentration) -> (cos, sin), each (T, D/2)
    float32 and multiplied by the concentration."""
    cfg = ModelConfig.tiny()
    rope = RotaryEmbedding(cfg)
    positions = torch.tensor([0, 1, 7, 100, 511, 2000])
    got = fn(positions, rope.inv_freq, rope.concentration)
    exp_cos, exp_sin = rope.cos_sin(positions)
    if not isinstance(got, tuple) or len(got) != 2:
        raise ExerciseFailure(f"return a tuple (cos, sin); got {type(got).__name__}")
    cos, sin = got
    if isinstance(cos, torch.Tensor) and cos.shape == exp_cos.shape:
        c = rope.concentration
        if torch.allclose(cos.double(), exp_cos.double() / c, atol=1e-5):
            raise ExerciseFailure(
                f"cos and sin are off by the concentration factor (ratio {1 / c:.4f}): multiply "
                f"both by {c:.5f}"
            )
        if torch.allclose(cos.double(), exp_cos.double() * c, atol=1e-5):
            raise ExerciseFailure(
                f"cos and sin carry the concentration twice (ratio {c:.4f}): multiply once"
            )
        if torch.allclose(sin.double(), exp_cos.double(), atol=1e-5):
            raise ExerciseFailure("cos and sin are swapped")
    expect_close(cos, exp_cos, "cos")
    expect_close(sin, exp_sin, "sin")
    return "angles p * inv_freq, scaled by the concentration"


@Checker("check_my_rotary_embedding")
def check_my_rotary_embedding(cls, seed=None):
    """cls: your `RotaryEmbedding(config)` module class (my_gptoss/rope.py), whose
    forward(q (B, T, H, D), k (B, T, Hkv, D), positions (T,)) returns both rotated with YaRN's
    frequencies and concentration. Compared with the package's on gpt-oss-20b and tiny configs."""
    g = torch.Generator().manual_seed(4 if seed is None else 2000 + seed)
    for name, cfg in (("gpt-oss-20b", ModelConfig.gpt_oss_20b()), ("tiny", ModelConfig.tiny())):
        D = cfg.head_dim
        T = 5 if seed is None else 3 + seed % 5
        q = torch.randn(2, T, 4, D, generator=g)
        k = torch.randn(2, T, 2, D, generator=g)
        positions = torch.tensor([0, 1, 7, 500, 3000])
        if seed is not None:  # positions drawn from the seed, up to the model's context
            positions = torch.randint(0, cfg.max_context_length, (T,), generator=g)
        mine, ref = cls(cfg), RotaryEmbedding(cfg)
        got = mine(q, k, positions)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseFailure(
                "forward(q, k, positions) must return the pair (q_rotated, k_rotated)"
            )
        exp_q, exp_k = ref(q, k, positions)
        gq = got[0]
        if isinstance(gq, torch.Tensor) and gq.shape == exp_q.shape:
            if torch.allclose(gq * ref.concentration, exp_q, atol=1e-4):
                raise ExerciseFailure(
                    f"{name}: every output is {ref.concentration:.5f} times too small: multiply "
                    "cos and sin by the concentration 0.1 ln(factor) + 1"
                )
            cos, sin = ref.cos_sin(positions)
            if torch.allclose(gq, _interleaved(q, cos, sin), atol=1e-4):
                raise ExerciseFailure(
                    f"{name}: you rotate neighbouring pairs (x0, x1), (x2, x3), ...; gpt-oss pairs "
                    "coordinate i with i + head_dim/2 (half-split)"
                )
        expect_close(gq, exp_q, f"{name}: rotated q", rtol=1e-4, atol=1e-4)
        expect_close(got[1], exp_k, f"{name}: rotated k", rtol=1e-4, atol=1e-4)
    return "your RotaryEmbedding equals the package's (YaRN frequencies, concentration, half-split)"


__all__.append("check_my_rotary_embedding")
