"""The numba back end next to torch: small calls on one thread, torch's thread count kept.

Each check runs in a fresh interpreter: numba starts its OpenMP pool once per process, at the
first parallel call, and that start is what these tests are about.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")


def _run(code: str, **env) -> str:
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


PARALLEL_CALL = """
import torch
torch.set_num_threads(1)
from gptoss_edu.kernels import numba_cpu as nc
b = torch.randint(0, 256, (4096, 64, 16), dtype=torch.uint8)  # 4096 x 2048 weights: parallel
s = torch.full((4096, 64), 120, dtype=torch.uint8)
assert 4096 * 2048 >= nc.PARALLEL_MIN_WORK
nc.mxfp4_linear(torch.randn(1, 2048), b, s)
nc.route(torch.randn(5, 4), 2)
print(torch.get_num_threads())
"""


def test_torch_keeps_its_thread_count_when_numba_starts_its_pool():
    # before the fix, numba's pool start set the OpenMP count torch shares: 1 became 2
    assert _run(PARALLEL_CALL, NUMBA_NUM_THREADS="2") == "1"


def test_small_calls_run_on_one_thread_and_large_ones_on_all():
    code = """
import numba
from gptoss_edu.kernels import numba_cpu as nc
seen = []
with nc._threads_for(nc.PARALLEL_MIN_WORK - 1):
    seen.append(numba.get_num_threads())
seen.append(numba.get_num_threads())  # restored after the call
with nc._threads_for(nc.PARALLEL_MIN_WORK):
    seen.append(numba.get_num_threads())
try:
    with nc._threads_for(0):
        raise KeyError
except KeyError:
    seen.append(numba.get_num_threads())  # restored after an error too
print(seen)
"""
    assert _run(code, NUMBA_NUM_THREADS="2") == "[1, 2, 2, 2]"


def test_work_counts_tokens_except_for_the_gemv(monkeypatch):
    from gptoss_edu.kernels import numba_cpu as nc

    monkeypatch.setattr(nc, "SIMD", "avx512")
    assert nc._work(2, 256, 128) == 2 * 256 * 128  # the simd kernel: one call for all tokens
    monkeypatch.setattr(nc, "SIMD", None)

    assert nc._work(1, 256, 128) == 256 * 128  # the GEMV runs once per token
    assert nc._work(nc.GEMV_MAX_TOKENS, 256, 128) == 256 * 128
    assert nc._work(64, 256, 128) == 64 * 256 * 128  # one call over all tokens
