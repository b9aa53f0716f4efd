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


def _torch_threads_after(code: str, env: dict) -> str:
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[-1]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs in the affinity mask")
def test_torch_threads_fit_a_quota_unless_the_user_chose(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # a 1-CPU quota
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    call = (
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "from gptoss_edu.kernels.cpus import fit_torch_threads\n"
        f"r = fit_torch_threads({str(tmp_path)!r})\n"
        "print(f'{r},{torch.get_num_threads()}')\n"
    )
    assert _torch_threads_after(call, env) == "1,1"
    assert _torch_threads_after(call, {**env, "OMP_NUM_THREADS": "2"}) == "None,2"
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no quota
    assert _torch_threads_after(call, env) == "None,2"
    (tmp_path / "cpu.max").write_text("400000 100000\n")  # a quota above torch's count
    assert _torch_threads_after(call, env) == "None,2"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs in the affinity mask")
def test_importing_the_package_fits_torch_threads_to_the_quota():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    # gptoss_edu.kernels.cpus cannot be patched before the package's own import runs, so the
    # cgroup file itself is faked: reads of a path named cpu.max return the given text
    code = (
        "import pathlib, torch\n"
        "torch.set_num_threads(2)\n"
        "real = pathlib.Path.read_text\n"
        "pathlib.Path.read_text = lambda self, *a, **k: {!r} if self.name == 'cpu.max' "
        "else real(self, *a, **k)\n"
        "import gptoss_edu\n"
        "print(torch.get_num_threads())\n"
    )
    assert _torch_threads_after(code.format("100000 100000"), env) == "1"  # 1-CPU quota
    assert _torch_threads_after(code.format("max 100000"), env) == "2"  # no quota: unchanged


def test_a_quota_on_the_process_own_cgroup_or_a_parent_counts(tmp_path):
    """Outside a container's namespace (a systemd slice, docker on cgroup v1 without cgroupns)
    the process's cgroup is below the mount point: its own quota, and its parents', count."""
    proc = tmp_path / "proc_cgroup"
    v2 = tmp_path / "v2"
    (v2 / "user.slice" / "job").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "user.slice" / "cpu.max").write_text("300000 100000\n")
    (v2 / "user.slice" / "job" / "cpu.max").write_text("max 100000\n")
    proc.write_text("0::/user.slice/job\n")
    assert cgroup_cpu_limit(v2, proc) == 3  # the parent's quota limits the child
    (v2 / "user.slice" / "job" / "cpu.max").write_text("100000 100000\n")
    assert cgroup_cpu_limit(v2, proc) == 1  # the smallest quota on the way counts
    proc.write_text("0::/\n")
    assert cgroup_cpu_limit(v2, proc) is None  # the root alone: no quota
    v1 = tmp_path / "v1"
    (v1 / "cpu" / "gtest").mkdir(parents=True)
    for d, quota in ((v1 / "cpu", "-1"), (v1 / "cpu" / "gtest", "200000")):
        (d / "cpu.cfs_quota_us").write_text(quota + "\n")
        (d / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("12:pids:/\n4:cpu,cpuacct:/gtest\n1:name=systemd:/\n")
    assert cgroup_cpu_limit(v1, proc) == 2
    proc.write_text("4:cpu,cpuacct:/docker/abc\n")  # not mounted here: only the root is read
    assert cgroup_cpu_limit(v1, proc) is None
