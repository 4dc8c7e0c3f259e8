"""What this machine or container gives the server: CPU cores, memory, and the largest image Pillow decodes.

Read from the cgroup files a container runtime sets (Kubernetes' CPU and memory limits), falling back to the
machine's own figures, so the server sizes itself to its container rather than to the node. The CPU count lives in
:mod:`plugins.cpus`, which training uses too; it is re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from plugins.cpus import available_cores, parse_cpu_max

__all__ = ["available_cores", "decodable_pixels", "memory_limit_bytes", "parse_cpu_max"]

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


def decodable_pixels() -> int:
    """The largest image Pillow decodes: above twice its ``MAX_IMAGE_PIXELS`` it refuses images as decompression
    bombs (178,956,970 pixels by default)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return 2 * limit if limit else 2**62
