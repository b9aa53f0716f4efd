"""Checkers for chapter 3's exercises (exercises/03_embeddings_rmsnorm.ipynb): the embedding
look-up, RMSNorm in float32, pre-norm residual blocks and the norms' parameter count.

    ge.exercises.check_rmsnorm(my_rmsnorm)   # ✅ check_rmsnorm: passed
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model.norm import RMSNorm
from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_embedding_lookup",
    "check_rmsnorm",
    "check_rmsnorm_bf16",
    "check_pre_norm",
    "check_norm_parameters",
]


def _reference_rmsnorm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    norm = RMSNorm(x.shape[-1], eps=eps)
    with torch.no_grad():
        norm.scale.copy_(scale.float())
        return norm(x)


@Checker("check_embedding_lookup")
def check_embedding_lookup(fn):
    """fn(weight (V, H), tokens (B, T) int64) -> (B, T, H): row `tokens[b, t]` of the table."""
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(11, 6, generator=g)
    tokens = torch.tensor([[3, 0, 10, 3], [7, 7, 1, 2]])
    got = fn(weight, tokens)
    expected = weight[tokens]
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (2, 4, 11):
        raise ExerciseFailure(
            "output has shape (2, 4, 11) = (B, T, V): that is a one-hot vector per token; "
            "multiply it by the table (one_hot @ weight) or index the rows directly"
        )
    expect_close(got, expected, "embedding rows")
    return "each token id picks one row of the (V, H) table"


@Checker("check_rmsnorm")
def check_rmsnorm(fn):
    """fn(x (..., H) float32, scale (H,), eps) -> x / sqrt(mean(x^2) + eps) * scale."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g) * 2 + 0.7  # a non-zero mean separates RMS and LayerNorm
    scale = torch.rand(16, generator=g) + 0.5
    eps = 1e-5
    got = fn(x, scale, eps)
    expected = _reference_rmsnorm(x, scale, eps)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        got64 = got.double()
        mean = x.double().mean(-1, keepdim=True)
        xc = x.double() - mean
        layer = xc / torch.sqrt((xc * xc).mean(-1, keepdim=True) + eps) * scale.double()
        if torch.allclose(got64, layer, rtol=1e-4, atol=1e-5):
            raise ExerciseFailure(
                "this is LayerNorm: it subtracts the mean first. RMSNorm divides x itself by the "
                "root mean square sqrt(mean(x^2) + eps), with no centring"
            )
        no_scale = _reference_rmsnorm(x, torch.ones(16), eps).double()
        if torch.allclose(got64, no_scale, rtol=1e-4, atol=1e-5):
            raise ExerciseFailure("the learned scale is missing: multiply by `scale` at the end")
        rms_of_sum = x.double() / torch.sqrt((x.double() ** 2).sum(-1, keepdim=True) + eps)
        if torch.allclose(got64, rms_of_sum * scale.double(), rtol=1e-4, atol=1e-5):
            raise ExerciseFailure(
                "you divided by sqrt(sum(x^2)); RMSNorm uses the mean: sqrt(mean(x^2) + eps)"
            )
        std = x.double() / (x.double().std(-1, keepdim=True) + eps) * scale.double()
        if torch.allclose(got64, std, rtol=1e-3, atol=1e-4):
            raise ExerciseFailure(
                "you divided by the standard deviation; RMSNorm uses sqrt(mean(x^2))"
            )
    expect_close(got, expected, "RMSNorm output")
    # eps must sit inside the square root: an all-zero row must come out as zeros, not NaN.
    zeros = fn(torch.zeros(2, 16), scale, eps)
    if isinstance(zeros, torch.Tensor) and torch.isnan(zeros).any():
        raise ExerciseFailure(
            "an all-zero row gives NaN: add eps inside the square root, sqrt(mean(x^2) + eps)"
        )
    tiny = torch.full((1, 16), 1e-3)
    expect_close(
        fn(tiny, scale, 1e-2), _reference_rmsnorm(tiny, scale, 1e-2), "RMSNorm with eps=1e-2"
    )
    return "x / sqrt(mean(x^2) + eps) * scale"


@Checker("check_rmsnorm_bf16")
def check_rmsnorm_bf16(fn):
    """fn(x bf16, scale, eps) computes in float32 and returns bf16, like gpt-oss."""
    g = torch.Generator().manual_seed(1)
    H = 2880
    x = (torch.randn(8, H, generator=g) * 3 + 0.5).bfloat16()
    scale = (torch.rand(H, generator=g) + 0.5).bfloat16()
    got = fn(x, scale, 1e-5)
    expected = _reference_rmsnorm(x, scale, 1e-5)
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"expected a torch.Tensor, got {type(got).__name__}")
    if got.dtype == torch.float32:
        raise ExerciseFailure(
            "the output is float32: compute in float32, then cast back to the input's dtype "
            "with .to(x.dtype)"
        )
    expect_close(got, expected, "bf16 RMSNorm", rtol=2e-2, atol=1e-2)
    mismatched = (got != expected).float().mean().item()
    if mismatched > 0.05:
        raise ExerciseFailure(
            f"{mismatched:.0%} of the outputs differ from a float32 computation by a bf16 rounding "
            "step: the arithmetic ran in bf16. Upcast first (t = x.float()), normalise, multiply by "
            "scale.float(), and cast once at the end"
        )
    return "float32 inside, bf16 out"


@Checker("check_pre_norm")
def check_pre_norm(fn):
    """fn(x, norm, sublayer) -> x + sublayer(norm(x)) (pre-norm residual)."""
    g = torch.Generator().manual_seed(2)
    H = 8
    x = torch.randn(2, 3, H, generator=g) * 3 + 1
    norm = RMSNorm(H)
    with torch.no_grad():
        norm.scale.copy_(torch.rand(H, generator=g) + 0.5)
    w = torch.randn(H, H, generator=g) / 3

    def sublayer(t):
        return t @ w

    got = fn(x, norm, sublayer)
    with torch.no_grad():
        expected = x + sublayer(norm(x))
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            got = got.detach()
            if torch.allclose(got, norm(x + sublayer(x)), atol=1e-5):
                raise ExerciseFailure(
                    "this is post-norm, norm(x + sublayer(x)) (the original 2017 transformer); "
                    "gpt-oss normalises the sublayer's input and leaves the residual stream alone: "
                    "x + sublayer(norm(x))"
                )
            if torch.allclose(got, sublayer(norm(x)), atol=1e-5):
                raise ExerciseFailure("the residual is missing: add x back, x + sublayer(norm(x))")
            if torch.allclose(got, x + sublayer(x), atol=1e-5):
                raise ExerciseFailure("the norm is missing: apply it to the sublayer's input")
        expect_close(got, expected, "pre-norm block output")
    return "x + sublayer(norm(x))"


@Checker("check_norm_parameters")
def check_norm_parameters(fn):
    """fn(config) -> number of RMSNorm scale parameters in the whole model."""
    for cfg in (ModelConfig.gpt_oss_20b(), ModelConfig.gpt_oss_120b(), ModelConfig.tiny()):
        got = fn(cfg)
        L, H = cfg.num_hidden_layers, cfg.hidden_size
        expected = (2 * L + 1) * H
        if not isinstance(got, int) or isinstance(got, bool):
            raise ExerciseFailure(f"return an int; got {type(got).__name__}")
        if got == 2 * L * H:
            raise ExerciseFailure(
                f"{got:,} counts the two norms per block but forgets the final norm before the "
                "unembedding"
            )
        if got == L * H or got == (L + 1) * H:
            raise ExerciseFailure(
                f"{got:,}: each block has two norms (one before attention, one before the MoE)"
            )
        if got == 2 * expected:
            raise ExerciseFailure(f"{got:,} is twice the answer: RMSNorm has a scale but no bias")
        if got != expected:
            raise ExerciseFailure(
                f"for {L} layers and hidden_size {H}: got {got:,}, expected {expected:,}"
            )
    return f"gpt-oss-20b has {(2 * 24 + 1) * 2880:,} norm parameters"


@Checker("check_my_rmsnorm")
def check_my_rmsnorm(cls, seed=None):
    """cls: your `RMSNorm(num_features, eps=1e-5)` module class (my_gptoss/norm.py): a `scale`
    parameter of ones, float32 arithmetic, output in the input's dtype, a clear error for a wrong
    width. Compared with the package's RMSNorm on float32 and (bit for bit) on bf16 input;
    with a seed, on a width and inputs drawn from it."""
    H = 2880 if seed is None else [64, 384, 2880][seed % 3]
    mine, ref = cls(H), RMSNorm(H)
    scale = getattr(mine, "scale", None)
    if not isinstance(scale, torch.nn.Parameter) or tuple(scale.shape) != (H,):
        raise ExerciseFailure(
            f"RMSNorm({H}) needs a parameter called `scale` of shape ({H},) (the checkpoint's "
            f"name); found {type(scale).__name__} {tuple(getattr(scale, 'shape', ()))}"
        )
    if not torch.equal(scale.detach().float(), torch.ones(H)):
        raise ExerciseFailure("`scale` should start at ones (training or a checkpoint sets it)")
    g = torch.Generator().manual_seed(1 if seed is None else 1000 + seed)
    with torch.no_grad():
        mine.scale.copy_(torch.rand(H, generator=g) + 0.5)
        ref.scale.copy_(mine.scale)
        x = torch.randn(3, 4, H, generator=g) * 3 + 1
        expect_close(mine(x), ref(x), "float32 input")
        got16, exp16 = mine(x.bfloat16()), ref(x.bfloat16())
        if isinstance(got16, torch.Tensor) and got16.dtype == torch.float32:
            raise ExerciseFailure("bf16 input gave a float32 output: cast back with .to(x.dtype)")
        if isinstance(got16, torch.Tensor) and got16.shape == exp16.shape:
            differ = (got16 != exp16).float().mean().item()
            if differ > 0:
                raise ExerciseFailure(
                    f"on bf16 input {differ:.0%} of the outputs differ from the float32 recipe: "
                    "upcast with x.float() first, do every step in float32, cast back once"
                )
        expect_close(got16, exp16, "bf16 input", rtol=0, atol=0)
        try:
            mine(torch.ones(2, 7))
        except ValueError as e:
            if "7" not in str(e) or str(H) not in str(e):
                raise ExerciseFailure(
                    f"a (2, 7) input raised ValueError({str(e)!r}); name the found width (7) and "
                    f"the expected one ({H})"
                ) from None
        except Exception as e:
            raise ExerciseFailure(
                f"a (2, 7) input raised {type(e).__name__}, not a ValueError that names the "
                f"found (7) and expected ({H}) widths"
            ) from None
        else:
            raise ExerciseFailure(f"a (2, 7) input for RMSNorm({H}) should raise a ValueError")
    return "your RMSNorm equals the package's, bit for bit in bf16"


__all__.append("check_my_rmsnorm")
