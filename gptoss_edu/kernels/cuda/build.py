"""Build and call the CUDA C++ kernels (chapter 10).

``build()`` compiles ``binding.cpp`` + ``routing.cu`` + ``mxfp4_matmul.cu`` with
``torch.utils.cpp_extension.load`` (JIT, cached under ``~/.cache/torch_extensions``) on a
machine with a CUDA build of torch and a GPU. ``route``, ``mxfp4_linear`` and ``moe_forward``
follow the kernel contract of ``gptoss_edu/kernels/reference.py``; the first call builds the
extension if needed. The expert loop of ``moe_forward`` runs on the host in torch (gather,
SwiGLU, combine) around the CUDA MXFP4 matmul, one pair of launches per non-empty expert.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch import Tensor

from gptoss_edu.kernels.reference import (
    MoEWeights,
    Routing,
    check_linear_args,
    check_moe_args,
    check_route_args,
    swiglu,
)

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ["binding.cpp", "routing.cu", "mxfp4_matmul.cu"]
EXTENSION_NAME = "gptoss_edu_kernels_cuda"

_extension = None  # the loaded module, once built


def _unavailable_reason() -> str | None:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no CUDA GPU or driver here"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None and shutil.which("nvcc") is None:
        return "no CUDA toolkit found (nvcc not on PATH, CUDA_HOME unset): needed to compile"
    return None


def is_available() -> tuple[bool, str]:
    """(True, "") when the extension can be built (or is built) and run here."""
    reason = _unavailable_reason()
    return (False, reason) if reason else (True, "")


def is_built() -> bool:
    """True once ``build()`` has loaded the extension in this process."""
    return _extension is not None


def build(verbose: bool = False):
    """Compile (or load from torch's cache) the extension and return the module."""
    global _extension
    if _extension is not None:
        return _extension
    reason = _unavailable_reason()
    if reason:
        raise RuntimeError(f"cannot build the gptoss-edu CUDA kernels: {reason}")
    from torch.utils.cpp_extension import load

    _extension = load(**load_arguments(verbose))
    return _extension


def load_arguments(verbose: bool = False) -> dict:
    """The arguments `build` gives torch.utils.cpp_extension.load (also used to compile the
    extension where torch is a CUDA build but no GPU is present, to check that it builds)."""
    return dict(
        name=EXTENSION_NAME,
        sources=[str(SOURCE_DIR / name) for name in SOURCES],
        extra_include_paths=[str(SOURCE_DIR)],
        extra_cflags=["-O3"],
        # No --use_fast_math: it flushes float32 subnormals to zero, and scale byte 0 is 2^-127.
        extra_cuda_cflags=["-O3", "-lineinfo"],
        verbose=verbose,
    )


def _ext():
    if _extension is None:
        warnings.warn(
            "gptoss_edu.kernels.cuda: compiling the CUDA extension on first use (about a minute; "
            "cached afterwards)",
            stacklevel=3,
        )
    return build()


def route(router_logits: Tensor, k: int) -> Routing:
    """Top-k routing + counting sort by expert, on the GPU (see routing.cu)."""
    check_route_args(router_logits, k)
    logits = router_logits.detach().float().contiguous()  # (T, E), as the reference
    weights, experts, order, offsets, inverse = _ext().route(logits, k)
    return Routing(weights, experts, order, offsets, inverse)


def mxfp4_linear(x: Tensor, blocks: Tensor, scales: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (T, K) @ W.T + bias with W (N, K) in MXFP4; (T, N) in x.dtype, float32 sums."""
    check_linear_args(x, blocks, scales, bias)
    dtype = x.dtype
    if dtype not in (torch.float32, torch.bfloat16):
        x = x.float()  # the kernels read float32 or bf16
    if bias is not None:
        bias = bias.detach().float().contiguous()
    out = _ext().mxfp4_linear(
        x.detach().contiguous(), blocks.contiguous(), scales.contiguous(), bias
    )
    return out.to(dtype)


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights) -> Tensor:
    """sum_j weights[t, j] * expert_{experts[t, j]}(x[t]) for each token; (T, H) in x.dtype."""
    check_moe_args(x, routing, experts)
    n_tokens, hidden = x.shape
    k = routing.experts.shape[1]
    n_experts = experts.mlp1_blocks.shape[0]
    xs = x.detach().float()[routing.order // k]  # (T*k, H) token rows in expert order
    y = torch.empty(n_tokens * k, hidden, dtype=torch.float32, device=x.device)  # same order
    offsets = routing.offsets.tolist()  # host loop bounds: one small device-to-host copy
    for e in range(n_experts):
        lo, hi = offsets[e], offsets[e + 1]
        if lo == hi:
            continue  # no token chose expert e: its weights are never read
        h = mxfp4_linear(
            xs[lo:hi], experts.mlp1_blocks[e], experts.mlp1_scales[e], experts.mlp1_bias[e]
        )  # (n, 2I)
        act = swiglu(h, experts.swiglu_limit, experts.swiglu_alpha)  # (n, I)
        y[lo:hi] = mxfp4_linear(
            act.contiguous(), experts.mlp2_blocks[e], experts.mlp2_scales[e], experts.mlp2_bias[e]
        )  # (n, H)
    # Back to token order through the inverse permutation, then the weighted sum over j (in j
    # order, deterministic: no atomics).
    y_tok = y[routing.inverse].view(n_tokens, k, hidden)  # (T, k, H)
    out = (y_tok * routing.weights.float()[:, :, None]).sum(dim=1)
    return out.to(x.dtype)
