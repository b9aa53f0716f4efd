"""Kernels for the MoE layer: one contract, several back ends (chapters 9 and 10).

    r = route(router_logits, k=4)                       # Routing(weights, experts, order, offsets, inverse)
    y = mxfp4_linear(x, blocks, scales, bias)           # x @ dequantize(W).T + bias
    y = moe_forward(x, r, MoEWeights(...))              # the expert half of the MoE block

Every function takes `backend=`:

    "torch"       reference.py: the specification, plain torch, any device
    "numba"       numba_cpu.py: CPU, parallel, fused decode-and-multiply (with numba_simd.py's
                  vpermps kernels on x86 CPUs with AVX-512 or AVX2)
    "numba_cuda"  numba_cuda.py: numba.cuda kernels (a GPU, or the simulator)
    "cuda"        cuda/: CUDA C++ kernels built as a torch extension
    "auto"        CUDA tensors -> "cuda", else "numba_cuda", else "torch";
                  CPU tensors  -> "numba", else "torch" (a fallback is said once, with warnings.warn)

`available_backends()` says which ones can run here, and why not for the others.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from torch import Tensor

from gptoss_edu.kernels.reference import (
    MoEWeights,
    Routing,
    check_linear_args,
    check_moe_args,
    check_route_args,
)

__all__ = [
    "BACKENDS",
    "MoEWeights",
    "Routing",
    "available_backends",
    "get_backend",
    "moe_forward",
    "mxfp4_linear",
    "route",
    "warmup",
]

BACKENDS = ("auto", "torch", "numba", "numba_cuda", "cuda")

# back end name -> module implementing route / mxfp4_linear / moe_forward (+ is_available)
_MODULES = {
    "torch": "gptoss_edu.kernels.reference",
    "numba": "gptoss_edu.kernels.numba_cpu",
    "numba_cuda": "gptoss_edu.kernels.numba_cuda",
    "cuda": "gptoss_edu.kernels.cuda",
}

_loaded: dict[str, tuple[ModuleType | None, str]] = {}  # name -> (module or None, reason)
_warned: set[str] = set()


def _load(name: str) -> tuple[ModuleType | None, str]:
    """Import a back end on first use; (module, "") if it can run here, else (None, reason)."""
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
        except Exception as err:  # missing file, missing numba, a build error: all mean "not here"
            _loaded[name] = (
                None,
                f"{_MODULES[name]} failed to import: {type(err).__name__}: {err}",
            )
        else:
            ok, reason = module.is_available() if hasattr(module, "is_available") else (True, "")
            _loaded[name] = (module, "") if ok else (None, reason or "is_available() said no")
    return _loaded[name]


def available_backends() -> dict[str, str]:
    """Every back end: "" if it can run here, else a one-line reason why not."""
    return {name: _load(name)[1] for name in _MODULES}


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(
            f"kernels: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}"
        )


def _say_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=4)


def _auto(device_type: str) -> str:
    if device_type == "cuda":
        for name in ("cuda", "numba_cuda"):
            module, reason = _load(name)
            if module is not None and name == "cuda" and not module.is_built():
                # build now (torch caches it): a compiler or toolkit that fails to build it
                # (no ninja, nvcc and torch's CUDA of different majors, ...) means "not here",
                # as an import error does, and "auto" goes on to the next back end
                _say_once(
                    "auto-cuda-build",
                    "kernels: building the CUDA extension for back end 'cuda' (about a minute "
                    "the first time; torch caches it)",
                )
                try:
                    module.build()
                except Exception as err:  # noqa: BLE001 - any build failure
                    first = (str(err).strip().splitlines() or [""])[0][:300]
                    reason = f"the CUDA extension failed to build: {type(err).__name__}: {first}"
                    _loaded[name] = (None, reason)
                    module = None
            if module is not None:
                return name
            _say_once(f"auto-cuda-{name}", f"kernels: back end {name!r} unavailable ({reason})")
        _say_once(
            "auto-cuda-torch", "kernels: no CUDA kernel back end here; using 'torch' (slower)"
        )
        return "torch"
    module, reason = _load("numba")
    if module is not None:
        return "numba"
    _say_once("auto-cpu", f"kernels: numba back end unavailable ({reason}); using 'torch' (slower)")
    return "torch"


def get_backend(backend: str = "auto", device_type: str = "cpu") -> ModuleType:
    """The module that implements `backend` (resolving "auto" for tensors on `device_type`)."""
    _check_name(backend)
    name = _auto(device_type) if backend == "auto" else backend
    module, reason = _load(name)
    if module is None:
        raise RuntimeError(f"kernels: backend {name!r} is not available here: {reason}")
    return module


def route(router_logits: Tensor, k: int, backend: str = "auto") -> Routing:
    """Top-k experts per token, softmax weights, and the assignments counting-sorted by expert."""
    check_route_args(router_logits, k)  # before any back end: a compiled kernel does not check
    return get_backend(backend, router_logits.device.type).route(router_logits, k)


def mxfp4_linear(
    x: Tensor, blocks: Tensor, scales: Tensor, bias: Tensor | None = None, backend: str = "auto"
) -> Tensor:
    """x (T, K) @ W.T + bias for an MXFP4 weight W (N, K) -> (T, N) in x.dtype (x floating)."""
    check_linear_args(x, blocks, scales, bias)
    return get_backend(backend, x.device.type).mxfp4_linear(x, blocks, scales, bias)


def moe_forward(x: Tensor, routing: Routing, experts: MoEWeights, backend: str = "auto") -> Tensor:
    """The experts of an MoE block: sum_j weights[t, j] * expert_{experts[t, j]}(x[t]) -> (T, H)."""
    check_moe_args(x, routing, experts)  # every index a kernel reads is in range (no segfault)
    return get_backend(backend, x.device.type).moe_forward(x, routing, experts)


def warmup(backend: str = "auto", device_type: str = "cpu") -> None:
    """Compile a JIT back end's kernels now (on tiny inputs) instead of at the first real call."""
    module = get_backend(backend, device_type)
    if hasattr(module, "warmup"):
        module.warmup()
