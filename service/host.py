"""What this machine or container gives the server: CPU cores, memory, and the largest image Pillow decodes.

Read from the cgroup files a container runtime sets (Kubernetes' CPU and memory limits), falling back to the
machine's own figures, so the server sizes itself to its container rather than to the node.
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
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
"""cgroup v2's memory limit of this process's group (the container's memory limit in Kubernetes)."""
CGROUP_V1_MEMORY_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
"""The same limit on a node still on cgroup v1 (a very large number when there is none)."""

MEMINFO = Path("/proc/meminfo")


def memory_limit_bytes(
    memory_max: Path = CGROUP_MEMORY_MAX, meminfo: Path = MEMINFO, v1_limit: Path = CGROUP_V1_MEMORY_LIMIT
) -> int | None:
    """Bytes of memory this process may use: the cgroup limit (v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``) when one is set below the machine's physical memory, else that memory (``MemTotal``
    of ``/proc/meminfo``); ``None`` when none of them can be read."""
    machine = _machine_memory(meminfo)
    for path in (memory_max, v1_limit):
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and int(text) > 0 and (machine is None or int(text) < machine):
            return int(text)
    return machine


def _machine_memory(meminfo: Path) -> int | None:
    """``MemTotal`` of ``meminfo`` in bytes, or ``None`` when it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "MemTotal:" and fields[1].isdigit():
                return int(fields[1]) * 1024  # reported in kB
    except (OSError, UnicodeDecodeError):
        pass
    return None


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


def decodable_pixels() -> int:
    """The largest image Pillow decodes: above twice its ``MAX_IMAGE_PIXELS`` it refuses images as decompression
    bombs (178,956,970 pixels by default)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return 2 * limit if limit else 2**62
