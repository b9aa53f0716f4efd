"""The CPU count the numba back end sizes its pool by: affinity capped by a cgroup quota."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gptoss_edu.kernels.cpus import affinity_cpus, cgroup_cpu_limit, usable_cpus


def _v2(tmp_path, text):
    (tmp_path / "cpu.max").write_text(text + "\n")
    return tmp_path


def _v1(tmp_path, quota, period="100000"):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "text, cpus",
    [
        ("200000 100000", 2),
        ("150000 100000", 2),  # 1.5 CPUs of time: two threads can use it
        ("50000 100000", 1),
        ("max 100000", None),
        ("nonsense", None),
        ("abc 100000", None),
        ("0 100000", None),
    ],
)
def test_cgroup_v2_quota(tmp_path, text, cpus):
    assert cgroup_cpu_limit(_v2(tmp_path, text)) == cpus


@pytest.mark.parametrize("quota, cpus", [("300000", 3), ("250000", 3), ("-1", None), ("x", None)])
def test_cgroup_v1_quota(tmp_path, quota, cpus):
    assert cgroup_cpu_limit(_v1(tmp_path, quota)) == cpus


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_cpu_limit(tmp_path / "missing") is None
    assert cgroup_cpu_limit(tmp_path) is None


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert affinity_cpus() == affinity
    assert usable_cpus(tmp_path / "missing") == affinity
    assert usable_cpus(_v2(tmp_path, "100000 100000")) == 1
    big = tmp_path / "big"
    big.mkdir()
    assert usable_cpus(_v2(big, f"{(affinity + 8) * 100000} 100000")) == affinity


def _threads_after_import(cpus: int, env: dict) -> int:
    code = (
        "import gptoss_edu.kernels.cpus as c\n"
        f"c.usable_cpus = lambda root='/sys/fs/cgroup': {cpus}\n"
        "import gptoss_edu.kernels.numba_cpu\n"
        "import numba\n"
        "print(numba.config.NUMBA_NUM_THREADS)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs in the affinity mask")
def test_numba_pool_follows_the_quota_unless_the_user_chose():
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    assert _threads_after_import(1, env) == 1  # a 1-CPU quota: one thread, not one per core
    affinity = len(os.sched_getaffinity(0))
    assert _threads_after_import(affinity, env) == affinity  # no quota below the mask: unchanged
    assert _threads_after_import(1, {**env, "NUMBA_NUM_THREADS": "2"}) == 2  # the user's choice
