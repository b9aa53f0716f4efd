"""How many CPUs this process may really use: the numba back end sizes its thread pool by it.

numba starts one thread per CPU in the process's affinity mask. In a container limited by a
CPU *quota* (Binder, Kubernetes, `docker run --cpus 2`) the mask still lists every core of the
host, so a 2-CPU quota on a 64-core host gets 64 threads that take turns on 2 CPUs' worth of
time, and a parallel kernel waits for the slowest of them. The quota is in the cgroup files:

    cgroup v2   /sys/fs/cgroup/cpu.max                  "200000 100000" (quota, period) or "max 100000"
    cgroup v1   /sys/fs/cgroup/cpu/cpu.cfs_quota_us     "200000" (or -1: no limit)
                /sys/fs/cgroup/cpu/cpu.cfs_period_us    "100000"

at the mount's root in a container, and also below it, along this process's own cgroup path
(/proc/self/cgroup), outside one (a systemd slice, docker without a cgroup namespace): a quota
on any of those directories limits the process, so the smallest one counts
(benchmarks/results/quota_threads.md measures what a 1-CPU quota does to the tiny model).

    usable_cpus()        # min(affinity, ceil(quota / period)); affinity alone when there is no quota

torch sizes its own thread pool the same way, by the cores it sees rather than the quota, so
importing gptoss_edu calls `fit_torch_threads()`: under a quota smaller than torch's thread
count it lowers torch's count to the quota's CPUs, unless the user chose a count
(OMP_NUM_THREADS or MKL_NUM_THREADS set).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["affinity_cpus", "cgroup_cpu_limit", "fit_torch_threads", "usable_cpus"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota_cpus(quota: int, period: int) -> int | None:
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def _limit_v2(d: Path) -> int | None:
    parts = (_read(d / "cpu.max") or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return _quota_cpus(int(parts[0]), int(parts[1]))
    except ValueError:
        return None


def _limit_v1(d: Path) -> int | None:
    quota_s, period_s = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
    if quota_s is None or period_s is None:
        return None
    try:
        return _quota_cpus(int(quota_s), int(period_s))
    except ValueError:
        return None


def _own_cgroups(proc_cgroup: str | os.PathLike) -> tuple[str, str]:
    """This process's cgroup paths from /proc/self/cgroup: (the v2 one, the v1 cpu one)."""
    v2 = v1 = "/"
    for line in (_read(Path(proc_cgroup)) or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            v2 = fields[2]
        elif "cpu" in fields[1].split(","):
            v1 = fields[2]
    return v2, v1


def _chain(base: Path, path: str) -> list[Path]:
    """base, then each directory down to base/path: a quota on any of them limits the process."""
    parts = [p for p in path.strip("/").split("/") if p and p not in (".", "..")]
    return [base.joinpath(*parts[:i]) for i in range(len(parts) + 1)]


def cgroup_cpu_limit(
    root: str | os.PathLike = "/sys/fs/cgroup", proc_cgroup: str | os.PathLike = "/proc/self/cgroup"
) -> int | None:
    """CPUs the cgroup quota allows (rounded up, at least 1), or None: no quota, or none found.

    cgroup v2 (`root`/cpu.max exists): reads cpu.max in `root` and in each directory down to
    this process's own cgroup (named in `proc_cgroup`), since a quota on any of them limits it;
    else cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us in `root`/cpu and down the same way.
    In a container the process's cgroup is usually `root` itself. The smallest quota found
    counts; a file that is missing, unreadable or malformed counts as no quota."""
    root = Path(root)
    v2_path, v1_path = _own_cgroups(proc_cgroup)
    if _read(root / "cpu.max") is not None:
        limits = [_limit_v2(d) for d in _chain(root, v2_path)]
    else:
        limits = [_limit_v1(d) for d in _chain(root / "cpu", v1_path)]
    found = [n for n in limits if n is not None]
    return min(found) if found else None


def affinity_cpus() -> int:
    """The CPUs in this process's affinity mask (os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def usable_cpus(root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """The CPUs this process can use at once: the affinity mask, capped by the cgroup quota."""
    n = affinity_cpus()
    limit = cgroup_cpu_limit(root)
    return max(1, min(n, limit) if limit else n)


def fit_torch_threads(root: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """Lower torch's thread count to the CPUs a cgroup quota allows, if it is higher; return the
    new count, or None when nothing changed: no quota, torch already within it, or the user set
    OMP_NUM_THREADS / MKL_NUM_THREADS (their choice stands)."""
    if "OMP_NUM_THREADS" in os.environ or "MKL_NUM_THREADS" in os.environ:
        return None
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return None
    import torch

    if torch.get_num_threads() <= limit:
        return None
    torch.set_num_threads(limit)
    return limit
