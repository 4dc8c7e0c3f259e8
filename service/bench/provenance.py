"""Where and how a benchmark ran, for every ``python -m service.bench`` report: the command line (tokens hidden),
the machine (CPU model, cores, the cores this process may use, the GPU when CUDA is used, its load), the source
(the git commit, and whether files were modified) and the versions of Python and the libraries the figures
depend on."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.host import available_cores

#: Flags whose value is a secret: written as ``***`` in the recorded command line.
SECRET_FLAGS = ("--token", "--auth-token")
# Also the abbreviations the server's own option parser would accept inside --server-args (--auth-tok X); the
# benchmark's parsers take no abbreviations.
_SECRET_VALUE = re.compile(r"(--(?:auth-)?tok[a-z-]*(?:=|\s+))(\S+)")


def provenance(argv: Sequence[str], device: str | None = None) -> dict[str, Any]:
    """The command, machine and versions behind a report (JSON-ready).

    Args:
        argv: the arguments given to ``python -m service.bench``.
        device: the device the measured model ran on in this process or the servers it started (``cpu``,
            ``cuda:0``, ...); a CUDA or TensorRT device adds the GPU's name. ``None``: no model ran here (the
            ``--target`` load generator).

    Returns:
        ``command`` (the shell-quoted command line, secrets hidden), ``argv`` (the same as a list),
        ``machine`` (``platform``, ``cpu``, ``cpus``, ``cpus_usable``, ``gpu``, and ``load_average``: the 1, 5 and
        15 minute load averages when the report is made, after the run, so they include the run's own load; on
        a machine nobody else uses the 15-minute figure stays below the cores the run kept busy), ``source``
        (:func:`source_revision`) and ``versions`` (``python``, ``torch``, ``onnxruntime`` or ``None`` when it
        is not installed, ``grpcio``, ``numpy``).
    """
    import grpc
    import numpy as np
    import torch

    try:
        import onnxruntime

        onnxruntime_version: str | None = onnxruntime.__version__
    except ImportError:  # a torch-only run needs no ONNX Runtime
        onnxruntime_version = None
    args = redact(argv)
    return {
        "command": shlex.join(["python", "-m", "service.bench", *args]),
        "argv": args,
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "cpus_usable": available_cores(),  # the affinity, lowered to the cgroup limit, as the server counts
            "gpu": gpu_name(device),
            "load_average": [round(load, 2) for load in os.getloadavg()],
        },
        "source": source_revision(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime_version,
            "grpcio": grpc.__version__,
            "numpy": np.__version__,
        },
    }


def redact(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of :data:`SECRET_FLAGS` replaced by ``***``, also inside a ``--server-args``
    string (``--token X``, ``--token=X``, ``--server-args "--auth-token X"``)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        hide_next = arg in SECRET_FLAGS
        out.append(_SECRET_VALUE.sub(r"\1***", arg))
    return out


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :mod:`platform` knows (``x86_64``, ...)."""
    fallback = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), fallback)
    except OSError:
        return fallback


def gpu_name(device: str | None) -> str | None:
    """The name of the GPU behind ``device`` (``cuda:N``, ``tensorrt:N``), or ``None`` for a CPU device or when
    CUDA is not available."""
    if device is None:
        return None
    kind, _, index = device.partition(":")
    if kind not in ("cuda", "tensorrt"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        return str(torch.cuda.get_device_name(int(index or 0)))
    except (ValueError, RuntimeError, AssertionError):  # a malformed index or a GPU that is not there
        return None


def source_revision() -> dict[str, Any]:
    """The git commit of the checkout this package runs from: ``commit`` (``None`` outside a git checkout or
    without git) and ``modified`` (tracked files differ from it; ``None`` when unknown)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "modified": None if status is None else bool(status)}
