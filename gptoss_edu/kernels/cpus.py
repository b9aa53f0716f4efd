"""How many CPUs this process may really use: the numba back end sizes its thread pool by it.

numba starts one thread per CPU in the process's affinity mask. In a container limited by a
CPU *quota* (Binder, Kubernetes, `docker run --cpus 2`) the mask still lists every core of the
host, so a 2-CPU quota on a 64-core host gets 64 threads that take turns on 2 CPUs' worth of
time, and a parallel kernel waits for the slowest of them. The quota is in the cgroup files:

    cgroup v2   /sys/fs/cgroup/cpu.max                  "200000 100000" (quota, period) or "max 100000"
    cgroup v1   /sys/fs/cgroup/cpu/cpu.cfs_quota_us     "200000" (or -1: no limit)
                /sys/fs/cgroup/cpu/cpu.cfs_period_us    "100000"

    usable_cpus()        # min(affinity, ceil(quota / period)); affinity alone when there is no quota
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["affinity_cpus", "cgroup_cpu_limit", "usable_cpus"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """CPUs the cgroup's quota allows (rounded up, at least 1), or None: no quota, or none found.

    Reads `root`/cpu.max (cgroup v2), else `root`/cpu/cpu.cfs_quota_us and cpu.cfs_period_us
    (cgroup v1). A file that is missing, unreadable or malformed counts as no quota."""
    root = Path(root)
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                quota, period = int(parts[0]), int(parts[1])
            except ValueError:
                return None
            if quota > 0 and period > 0:
                return max(1, math.ceil(quota / period))
        return None
    quota_s = _read(root / "cpu" / "cpu.cfs_quota_us")
    period_s = _read(root / "cpu" / "cpu.cfs_period_us")
    if quota_s is None or period_s is None:
        return None
    try:
        quota, period = int(quota_s), int(period_s)
    except ValueError:
        return None
    if quota > 0 and period > 0:
        return max(1, math.ceil(quota / period))
    return None


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
