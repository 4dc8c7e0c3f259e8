"""CPU cores this process may use: its affinity, lowered to the container's CPU limit.

Read from the cgroup files a container runtime sets (Kubernetes' CPU limit), so the server and training size
their threads to their container rather than to the node (torch's default is one thread per core it sees).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU limit of this process's group (the container's CPU limit in Kubernetes)."""
CGROUP_V1_CPU_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
"""The same limit on a node still on cgroup v1: microseconds of CPU time per period (-1: none)..."""
CGROUP_V1_CPU_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
"""... and the period, in microseconds."""


def available_cores(
    cpu_max: Path = CGROUP_CPU_MAX, v1_quota: Path = CGROUP_V1_CPU_QUOTA, v1_period: Path = CGROUP_V1_CPU_PERIOD
) -> int:
    """CPU cores this process may use: its affinity, lowered to the cgroup CPU limit (the container's CPU limit in
    Kubernetes: v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) rounded down, at least 1.
    Without a readable limit, the affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _read_cpu_limit(cpu_max, v1_quota, v1_period)
    return cores if limit is None else max(1, min(cores, math.floor(limit)))


def _read_cpu_limit(cpu_max: Path, v1_quota: Path, v1_period: Path) -> float | None:
    """The cgroup CPU limit in cores (v2 first, then v1), or ``None`` when neither is set or readable."""
    try:
        return parse_cpu_max(cpu_max.read_text())
    except (OSError, UnicodeDecodeError):
        pass
    try:  # cgroup v1: the same two numbers in two files
        return parse_cpu_max(f"{v1_quota.read_text().strip()} {v1_period.read_text().strip()}")
    except (OSError, UnicodeDecodeError):
        return None


def parse_cpu_max(text: str) -> float | None:
    """The CPU limit in cores from the text of a cgroup v2 ``cpu.max`` file (``"<quota> <period>"`` in
    microseconds, or ``"max <period>"``), or ``None`` when there is no limit or the text does not parse."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None
