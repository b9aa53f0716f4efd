"""Tests of the GPU back ends: numba.cuda kernels and CUDA C++ kernels (chapter 10).

No GPU is needed for most of them:
* the numba.cuda kernels run in numba's CUDA simulator, in a subprocess (NUMBA_ENABLE_CUDASIM
  must be set before numba.cuda is first imported, and must not leak into this session);
* the same kernels are compiled to PTX for sm_80 with numba's real CUDA compiler (NVVM), which
  catches what the simulator cannot (typing, shared-array shapes, float64 creeping in);
* every .cu file is compiled with nvcc for sm_75 (Colab's T4), sm_80 and sm_90.
Tests marked ``gpu`` build the extension and compare both back ends with the reference at
gpt-oss-20b shapes; they skip without a CUDA GPU.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "gptoss_edu" / "kernels" / "cuda"

# Runs in a subprocess under the simulator; asserts itself, exits non-zero on failure.
# References are written here independently: float64 decode of MXFP4, a float64 MoE per token,
# and the counting-sort properties checked directly (plus exact equality with reference.route).
SIMULATOR_SCRIPT = textwrap.dedent(
    """
    import math

    import numpy as np
    import torch

    # Poison every buffer torch.empty hands out, so an output element a kernel forgets to write
    # shows up as NaN (floats) or -7 (integers) instead of a lucky zero.
    _empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        t = _empty(*args, **kwargs)
        return t.fill_(float("nan") if t.is_floating_point() else -7)

    torch.empty = poisoned_empty

    from gptoss_edu.kernels import numba_cuda as nc
    from gptoss_edu.kernels import reference as ref

    ok, reason = nc.is_available()
    assert ok and "simulator" in reason, (ok, reason)
    g = torch.Generator().manual_seed(0)

    FP4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]

    def decode64(blocks, scales):
        # (N, G, 16) u8, (N, G) u8 -> (N, 32G) float64, straight from the format's definition
        N, G, _ = blocks.shape
        w = np.zeros((N, G * 32))
        for n in range(N):
            for gg in range(G):
                s = int(scales[n, gg])
                scale = math.nan if s == 255 else math.ldexp(1.0, s - 127)
                for j in range(16):
                    b = int(blocks[n, gg, j])
                    w[n, gg * 32 + 2 * j] = FP4[b & 15] * scale  # low nibble first
                    w[n, gg * 32 + 2 * j + 1] = FP4[b >> 4] * scale
        return torch.from_numpy(w)

    def check_routing(logits, k):
        T, E = logits.shape
        r = nc.route(logits, k)
        rr = ref.route(logits, k)
        for name in ("experts", "order", "offsets", "inverse"):
            assert torch.equal(getattr(r, name), getattr(rr, name)), (name, getattr(r, name))
        assert r.experts.dtype == torch.int32 and r.order.dtype == torch.int64
        torch.testing.assert_close(r.weights, rr.weights, rtol=1e-6, atol=1e-7)
        # independent checks of the counting sort
        flat = r.experts.reshape(-1).long()
        assert sorted(r.order.tolist()) == list(range(T * k))
        assert (torch.diff(flat[r.order]) >= 0).all()
        for e in range(E):
            seg = r.order[r.offsets[e] : r.offsets[e + 1]]
            assert (flat[seg] == e).all() and (torch.diff(seg) > 0).all()  # stable
        assert torch.equal(r.inverse[r.order], torch.arange(T * k))
        return r

    # routing: random, with ties (a row of equal logits), an expert nobody picks
    logits = torch.randn(6, 8, generator=g)
    logits[2] = 0.5
    logits[:, 5] = -30.0
    r = check_routing(logits, 2)
    assert r.offsets[5] == r.offsets[6]
    assert r.experts[2].tolist() == [0, 1]  # ties -> lower expert id first
    # all tokens on one expert; bf16 logits
    logits = torch.randn(5, 4, generator=g)
    logits[:, 3] = 10.0
    r = check_routing(logits.bfloat16(), 1)
    assert r.offsets.tolist() == [0, 0, 0, 0, 5]
    # the issue's grid of E, at the T the simulator can afford (T = 255, 1023 run on a real GPU)
    for E in (4, 32, 128):
        for T in (1, 3):
            r = check_routing(torch.randn(T, E, generator=g), min(4, E))
    again = nc.route(logits.bfloat16(), 1)  # deterministic: a second run gives the same bits
    for a, b in zip(nc.route(logits.bfloat16(), 1), again):
        assert torch.equal(a, b)
    print("routing ok")

    # MXFP4 linear: tiled kernel (T=3, N=40 not a multiple of the 32-row tile; T = 2, 7 and 64
    # with odd N and an odd number of blocks) and GEMV (T=1)
    for T, N, K in ((3, 40, 64), (1, 8, 64), (2, 33, 96), (7, 9, 32), (64, 3, 32)):
        x = torch.randn(T, K, generator=g)
        blocks = torch.randint(0, 256, (N, K // 32, 16), dtype=torch.uint8, generator=g)
        scales = torch.randint(118, 137, (N, K // 32), dtype=torch.uint8, generator=g)
        scales[0, 0] = 0  # 2^-127: subnormal, must not flush to zero
        scales[N - 1, -1] = 255  # NaN scale -> NaN in that output column
        bias = torch.randn(N, generator=g)
        want = x.double() @ decode64(blocks, scales).T + bias.double()
        got = nc.mxfp4_linear(x, blocks, scales, bias)
        assert got.shape == (T, N) and got.dtype == torch.float32
        assert torch.isnan(got[:, N - 1]).all() and not torch.isnan(got[:, : N - 1]).any()
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4, equal_nan=True)
        nobias = nc.mxfp4_linear(x, blocks, scales)
        torch.testing.assert_close(nobias.double(), want - bias.double(), rtol=1e-5, atol=1e-4,
                                   equal_nan=True)
    xb = torch.randn(2, 32, generator=g).bfloat16()
    blocks = torch.randint(0, 256, (4, 1, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(124, 130, (4, 1), dtype=torch.uint8, generator=g)
    got = nc.mxfp4_linear(xb, blocks, scales)
    assert got.dtype == torch.bfloat16
    want = xb.double() @ decode64(blocks, scales).T
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2)
    print("mxfp4_linear ok")

    # MoE: T=5 tokens, k=2 of E=5 experts (expert 4 unused), H=I=32.
    T, k, E, H, I = 5, 2, 5, 32, 32
    x = torch.randn(T, H, generator=g)
    logits = torch.randn(T, E, generator=g)
    logits[:, 0] = 5.0  # every token picks expert 0, so no expert gets exactly one token
    logits[:, 4] = -10.0  # (one-token experts would take the GEMV path: slow in the simulator)
    logits[:, 3] = -5.0
    mk = lambda *shape: (torch.randint(0, 256, (*shape, 16), dtype=torch.uint8, generator=g),
                         torch.randint(121, 126, shape, dtype=torch.uint8, generator=g))
    b1, s1 = mk(E, 2 * I, H // 32)
    b2, s2 = mk(E, H, I // 32)
    bias1, bias2 = torch.randn(E, 2 * I, generator=g), torch.randn(E, H, generator=g)
    experts = ref.MoEWeights(b1, s1, bias1, b2, s2, bias2, swiglu_limit=7.0, swiglu_alpha=1.702)
    routing = ref.route(logits, k)
    got = nc.moe_forward(x, routing, experts)
    # float64 per-token reference, from the formulas in SPEC.md
    want = torch.zeros(T, H, dtype=torch.float64)
    for t in range(T):
        for j in range(k):
            e = int(routing.experts[t, j])
            h = decode64(b1[e], s1[e]) @ x[t].double() + bias1[e].double()
            gate, lin = h[0::2].clamp(max=7.0), h[1::2].clamp(-7.0, 7.0)
            a = gate * torch.sigmoid(1.702 * gate) * (lin + 1)
            y = decode64(b2[e], s2[e]) @ a + bias2[e].double()
            want[t] += float(routing.weights[t, j]) * y
    assert got.shape == (T, H) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    print("moe_forward ok")
    """
)


def test_numba_cuda_kernels_in_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", SIMULATOR_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"simulator script failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "moe_forward ok" in proc.stdout


# Argument types the kernels get on a real GPU (torch tensors viewed as contiguous arrays).
NUMBA_KERNEL_SIGNATURES = {
    "_topk_softmax_kernel": "float32[:, ::1], int64, int32[:, ::1], float32[:, ::1]",
    "_histogram_kernel": "int32[::1], int32[::1]",
    "_offsets_scan_kernel": "int32[::1], int64[::1]",
    "_stable_scatter_kernel": "int32[::1], int64[::1], int64[::1], int64[::1]",
    "_mxfp4_matmul_kernel": (
        "float32[:, ::1], uint8[:, :, ::1], uint8[:, ::1], float32[::1], boolean, float32[:, ::1]"
    ),
    "_mxfp4_gemv_kernel": (
        "float32[:, ::1], uint8[:, ::1], uint8[:, ::1], float32[::1], boolean, float32[:, ::1]"
    ),
    "_gather_rows_kernel": "float32[:, ::1], int64[::1], int64, float32[:, ::1]",
    "_swiglu_kernel": "float32[:, ::1], float32, float32, float32[:, ::1]",
    "_combine_kernel": "float32[:, ::1], float32[:, ::1], int64[::1], float32[:, ::1]",
}


def test_numba_cuda_kernels_compile_to_ptx():
    from numba.core import config

    if config.ENABLE_CUDASIM:
        pytest.skip("NUMBA_ENABLE_CUDASIM is set in this session: no real compiler to check")
    from numba import cuda

    from gptoss_edu.kernels import numba_cuda as nc

    for (name, sig), cc in itertools.product(NUMBA_KERNEL_SIGNATURES.items(), [(7, 5), (8, 0)]):
        try:  # cc 7.5: Colab's free T4; 8.0: A100
            ptx, _ = cuda.compile_ptx(getattr(nc, name).py_func, sig, cc=cc)
        except Exception as exc:  # NVVM missing is an environment problem, not a kernel bug
            if "NVVM" in str(exc) or "libnvvm" in str(exc).lower():
                pytest.skip(f"numba cannot find libNVVM: {exc}")
            raise
        assert ".entry" in ptx, name
        # float32 kernels: a float64 instruction means a Python float slipped into the math
        f64 = [line for line in ptx.splitlines() if ".f64" in line]
        assert not f64, f"{name} uses float64: {f64[:3]}"


@pytest.mark.parametrize("source", sorted(p.name for p in CUDA_DIR.glob("*.cu")))
def test_cuda_sources_compile_with_nvcc(source, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: cannot compile-check the .cu files")
    cmd = [nvcc, "-c", "-O2", "-Werror", "all-warnings", str(CUDA_DIR / source)]
    # sm_75: Colab's free T4; sm_80: A100; sm_90: H100 / H200
    for arch in ("75", "80", "90"):
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    cmd += ["-o", str(tmp_path / (source + ".o"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"


def test_cuda_package_imports_without_building():
    import gptoss_edu.kernels.cuda as cuda_backend

    ok, reason = cuda_backend.is_available()
    assert isinstance(ok, bool) and isinstance(reason, str)
    if not ok:
        assert reason and not cuda_backend.is_built()
        with pytest.raises(RuntimeError, match="cannot build"):
            cuda_backend.build()


# ---------------------------------------------------------------------------- real GPU

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def _random_mxfp4(n, k, gen, device):
    blocks = torch.randint(0, 256, (n, k // 32, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(118, 125, (n, k // 32), dtype=torch.uint8, generator=gen)
    return blocks.to(device), scales.to(device)


def _gpu_backends():
    from gptoss_edu.kernels import cuda as cuda_backend
    from gptoss_edu.kernels import numba_cuda

    cuda_backend.build()
    return {"cuda": cuda_backend, "numba_cuda": numba_cuda}


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("T", [1, 8, 64])
def test_gpu_mxfp4_linear_matches_reference(T):
    from gptoss_edu.kernels import reference as ref
    from gptoss_edu.mxfp4 import dequantize

    gen = torch.Generator().manual_seed(T)
    dev = torch.device("cuda")
    N, K = 5760, 2880
    blocks, scales = _random_mxfp4(N, K, gen, dev)
    x = torch.randn(T, K, generator=gen).to(dev)
    bias = torch.randn(N, generator=gen).to(dev)
    w64 = dequantize(blocks.cpu(), scales.cpu(), torch.float64)
    want = x.cpu().double() @ w64.T + bias.cpu().double()
    torch.testing.assert_close(
        ref.mxfp4_linear(x.cpu(), blocks.cpu(), scales.cpu(), bias.cpu()).double(),
        want,
        rtol=1e-4,
        atol=1e-3,
    )
    for name, backend in _gpu_backends().items():
        got = backend.mxfp4_linear(x, blocks, scales, bias)
        assert got.is_cuda and got.shape == (T, N), name
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=1e-3, msg=name)
        got_bf16 = backend.mxfp4_linear(x.bfloat16(), blocks, scales, bias)
        assert got_bf16.dtype == torch.bfloat16, name
        want_bf16 = x.bfloat16().cpu().double() @ w64.T + bias.cpu().double()
        torch.testing.assert_close(got_bf16.cpu().double(), want_bf16, rtol=2e-2, atol=2e-1)


@pytest.mark.gpu
@needs_gpu
def test_gpu_routing_matches_reference():
    from gptoss_edu.kernels import reference as ref

    gen = torch.Generator().manual_seed(0)
    backends = _gpu_backends()
    for T in (1, 3, 255, 1023, 4096):
        for E in (4, 32, 128):
            k = min(4, E)
            logits = torch.randn(T, E, generator=gen)
            logits[: min(T, 7)] = 0.25  # ties -> lower expert id first
            if E > k:
                logits[:, E // 2] = -100.0  # an expert nobody picks
            cases = [logits, logits.clone().index_fill_(1, torch.tensor([1]), 100.0)]  # all on 1
            for lg in cases:
                want = ref.route(lg, k)
                for name, backend in backends.items():
                    got = backend.route(lg.cuda(), k)
                    again = backend.route(lg.cuda(), k)  # deterministic over repeated runs
                    for field in ("experts", "order", "offsets", "inverse"):
                        g1, g2 = getattr(got, field).cpu(), getattr(again, field).cpu()
                        assert torch.equal(g1, getattr(want, field)), (name, T, E, field)
                        assert torch.equal(g1, g2), (name, T, E, field, "not deterministic")
                    torch.testing.assert_close(
                        got.weights.cpu(), want.weights, rtol=1e-6, atol=1e-7
                    )


@pytest.mark.gpu
@needs_gpu
def test_gpu_moe_forward_matches_reference():
    from gptoss_edu.kernels import reference as ref

    gen = torch.Generator().manual_seed(1)
    T, k, E, H, I = 64, 4, 32, 2880, 2880
    b1, s1 = _random_mxfp4(E * 2 * I, H, gen, "cpu")
    b2, s2 = _random_mxfp4(E * H, I, gen, "cpu")
    experts = ref.MoEWeights(
        b1.view(E, 2 * I, H // 32, 16),
        s1.view(E, 2 * I, H // 32),
        torch.randn(E, 2 * I, generator=gen),
        b2.view(E, H, I // 32, 16),
        s2.view(E, H, I // 32),
        torch.randn(E, H, generator=gen),
    )
    x = torch.randn(T, H, generator=gen)
    routing = ref.route(torch.randn(T, E, generator=gen), k)
    want = ref.moe_forward(x, routing, experts)
    experts_gpu = ref.MoEWeights(*(f.cuda() if torch.is_tensor(f) else f for f in experts))
    routing_gpu = ref.Routing(*(f.cuda() for f in routing))
    for name, backend in _gpu_backends().items():
        got = backend.moe_forward(x.cuda(), routing_gpu, experts_gpu)
        torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-2, msg=name)


def test_binding_compiles_and_every_launcher_it_calls_is_defined(tmp_path):
    """binding.cpp (the torch side) compiled as torch.utils.cpp_extension compiles it, and the
    .cu files with nvcc: every gptoss_* launcher the binding calls must be defined by a kernel
    object under the same, unmangled (extern "C") name, or the extension would build on a GPU
    machine and fail at import. The CPU torch wheel ships the c10/cuda headers but not the one
    its CMake generates (cuda_cmake_macros.h), which is given here as torch's own build writes it.
    """
    import sysconfig

    gxx, nvcc, nm = shutil.which("g++"), shutil.which("nvcc"), shutil.which("nm")
    if not (gxx and nvcc and nm):
        pytest.skip("needs g++, nvcc and nm on PATH")
    homes = [os.environ.get("CUDA_HOME"), Path(nvcc).resolve().parent.parent, "/usr/local/cuda"]
    found = [
        Path(h) / "include"
        for h in homes
        if h and (Path(h) / "include/cuda_runtime_api.h").exists()
    ]
    if not found:
        pytest.skip(f"no CUDA headers (cuda_runtime_api.h) under {homes}")
    cuda_include = found[0]
    torch_include = Path(torch.__file__).parent / "include"
    stub = tmp_path / "inc" / "c10" / "cuda" / "impl"
    if not (torch_include / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists():
        stub.mkdir(parents=True)
        (stub / "cuda_cmake_macros.h").write_text(
            "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n"
        )
    cmd = [gxx, "-std=c++20", "-fPIC", "-O0", "-c", "-Werror=return-type", "-Wall"]
    cmd += ["-DTORCH_EXTENSION_NAME=gptoss_edu_kernels_cuda", "-DTORCH_API_INCLUDE_EXTENSION_H"]
    for inc in (
        tmp_path / "inc",
        torch_include,
        torch_include / "torch" / "csrc" / "api" / "include",
        Path(sysconfig.get_paths()["include"]),
        cuda_include,
        CUDA_DIR,
    ):
        cmd += ["-I", str(inc)]
    cmd += [str(CUDA_DIR / "binding.cpp"), "-o", str(tmp_path / "binding.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-3000:]}"
    mine = [w for w in proc.stderr.splitlines() if "binding.cpp" in w and "warning" in w]
    assert not mine, mine

    def symbols(obj: Path, flag: str) -> set[str]:
        out = subprocess.run([nm, flag, str(obj)], capture_output=True, text=True, check=True)
        return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}

    defined = set()
    for cu in sorted(CUDA_DIR.glob("*.cu")):
        obj = tmp_path / (cu.name + ".o")
        cmd = [nvcc, "-c", "-O0", "-gencode", "arch=compute_90,code=sm_90", str(cu), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-2000:]}"
        defined |= symbols(obj, "--defined-only")
    wanted = {s for s in symbols(tmp_path / "binding.o", "-u") if s.startswith("gptoss_")}
    declared = set(re.findall(r"\b(gptoss_\w+)\s*\(", (CUDA_DIR / "gptoss_kernels.h").read_text()))
    assert declared, "no gptoss_* launcher declared in gptoss_kernels.h"
    assert wanted, 'binding.o calls no gptoss_* launcher: extern "C" names missing?'
    assert wanted <= declared, f"binding calls undeclared launchers: {wanted - declared}"
    assert wanted <= defined, f"launchers no .cu file defines: {sorted(wanted - defined)}"


def _run_module_main():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")  # no GPU to ask: one architecture is enough
    return subprocess.run(
        [sys.executable, "-m", "gptoss_edu.kernels.cuda"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch is a CUDA build")
def test_module_main_says_why_a_cpu_torch_cannot_build():
    proc = _run_module_main()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "CPU-only build" in proc.stderr and "cannot be built" in proc.stderr


@pytest.mark.skipif(
    torch.version.cuda is None, reason="needs a CUDA build of torch (no GPU needed)"
)
def test_extension_builds_imports_and_checks_its_arguments():
    """With a CUDA torch, no GPU needed: the extension compiles, links and imports, and its
    binding answers CPU tensors with its own message (with a GPU: the kernels vs the reference)."""
    proc = _run_module_main()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    if torch.cuda.is_available():
        assert "vs reference" in proc.stdout
    else:
        assert proc.stdout.count("must be a CUDA tensor") == 2, proc.stdout
