"""Build the CUDA extension now and check it: ``python -m gptoss_edu.kernels.cuda``.

- With a GPU: builds it (or loads it from torch's cache) and compares one small call of each
  kernel with the reference back end.
- With a CUDA build of torch but no GPU (a login node, a CI machine): compiles and links it for
  the architectures in TORCH_CUDA_ARCH_LIST (default "8.0;9.0": A100, H100/H200), imports it,
  and checks that each function answers a CPU tensor with the binding's own error message. No
  kernel runs.
- With a CPU-only torch: says why nothing can be built, and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from gptoss_edu.kernels.cuda.build import EXTENSION_NAME, build, load_arguments


def _expect_error(fn, *args, match: str) -> str:
    try:
        fn(*args)
    except RuntimeError as e:
        if match not in str(e):
            raise AssertionError(f"expected an error saying {match!r}; got: {e}") from None
        return str(e).splitlines()[0]
    raise AssertionError(f"expected a RuntimeError saying {match!r}; the call returned")


def check_without_gpu(verbose: bool) -> None:
    from torch.utils.cpp_extension import load

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    t0 = time.perf_counter()
    ext = load(**load_arguments(verbose))
    print(
        f"built and imported {EXTENSION_NAME} for sm {os.environ['TORCH_CUDA_ARCH_LIST']} in "
        f"{time.perf_counter() - t0:.0f} s: {ext.__file__}"
    )
    x = torch.randn(2, 64)
    blocks = torch.zeros(8, 2, 16, dtype=torch.uint8)
    scales = torch.full((8, 2), 127, dtype=torch.uint8)
    for name, call in (
        ("mxfp4_linear", lambda: ext.mxfp4_linear(x, blocks, scales, None)),
        ("route", lambda: ext.route(torch.randn(3, 4), 2)),
    ):
        said = _expect_error(call, match="must be a CUDA tensor")
        print(f"  {name}(CPU tensors) -> RuntimeError: {said}")


def check_with_gpu() -> None:
    from gptoss_edu.kernels import cuda, reference

    t0 = time.perf_counter()
    build()
    print(f"built (or loaded) {EXTENSION_NAME} in {time.perf_counter() - t0:.0f} s")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 64, generator=g)
    blocks = torch.randint(0, 256, (8, 2, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(120, 130, (8, 2), dtype=torch.uint8, generator=g)
    want = reference.mxfp4_linear(x, blocks, scales)
    got = cuda.mxfp4_linear(x.cuda(), blocks.cuda(), scales.cuda()).cpu()
    # float32 sums in a different order: compare relative to the output's size (outputs here
    # reach ~90; float32 round-off of these 64-term sums is ~1e-7 of that)
    diff = float((want - got).abs().max() / want.abs().max().clamp_min(1e-30))
    print(f"  mxfp4_linear vs reference: max |diff| / max |y| = {diff:.2e}")
    logits = torch.randn(5, 8, generator=g)
    r_want, r_got = reference.route(logits, 2), cuda.route(logits.cuda(), 2)
    same = torch.equal(r_want.experts, r_got.experts.cpu())
    print(f"  route vs reference: same experts {same}")
    if not diff <= 1e-6 or not same:  # "not <=": a NaN fails too
        raise SystemExit("the CUDA kernels disagree with the reference")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="show the compiler's commands")
    args = ap.parse_args(argv)
    if torch.version.cuda is None:
        print(
            f"torch {torch.__version__} is a CPU-only build: the CUDA extension cannot be built "
            "here (install a CUDA build of torch)",
            file=sys.stderr,
        )
        return 2
    if torch.cuda.is_available():
        check_with_gpu()
    else:
        print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), no GPU: build check only")
        check_without_gpu(args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
