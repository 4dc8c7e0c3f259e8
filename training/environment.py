"""Where a run trained: ``environment.json`` in the run folder, written by the run itself when it starts; and the
torch thread count it trains with (:func:`size_torch_threads`), which that file records.

A model card is written later, maybe on another machine, so the machine, thread count and process count it
reports must come from the run, not from the process writing the card. Each invocation of ``training.run``
records one *segment*: the step it started from and the environment it trained in. A fresh run writes a file
with one segment (from step 0); ``--resume`` keeps the earlier segments and appends its own, dropping any that
started at or after the step it resumes from (those steps are trained again, as ``metrics.jsonl`` drops their
lines). The file is replaced atomically, so it is always whole.

Format::

    {"segments": [{"from_step": 0, "device": "cpu", "gpu": null, "processes": 2, "threads_per_process": 1,
                   "torch": "2.4.0", "python": "3.11.9", "machine": "x86_64", "cpu": "AMD EPYC 7B13",
                   "platform": "Linux-6.1-x86_64-with-glibc2.36"}]}
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from plugins.cpus import available_cores
from plugins.files import write_atomically
from training.checkpoint import cannot_write
from training.distributed import ProcessGroup

ENVIRONMENT_FILE = "environment.json"
"""The run folder's record of the environment each invocation trained in."""

_DESCRIBING_KEYS = ("device", "gpu", "processes", "threads_per_process", "torch", "machine", "cpu")
"""The keys a card's description of a segment uses (segments that agree on these are described once)."""


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables torch takes its thread count from: a run started with one set keeps torch's count."""


def size_torch_threads(environ: Mapping[str, str] | None = None) -> str | None:
    """Lower torch's intra-op threads to this process's share of the CPU cores it may use: the cores of
    :func:`plugins.cpus.available_cores` (its affinity, lowered to the container's CPU limit) divided by the
    training processes on this machine (``LOCAL_WORLD_SIZE`` under ``torchrun``), at least 1. Torch's default is a
    thread per core it sees, a whole node's in a container, which the container's CPU limit then throttles.
    (DataLoader workers run one torch thread each already.)

    Torch's count is kept when :data:`THREAD_VARIABLES` sets it (the user's choice, or ``torchrun``'s 1 for several
    processes on a node), and when it is no more than that share (it is never raised).

    Args:
        environ: the environment to read (``None``: ``os.environ``).

    Returns:
        One line saying the count was lowered and why, or ``None`` when it was kept.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in THREAD_VARIABLES):
        return None
    try:
        local = max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    cores = available_cores()
    share = max(1, cores // local)
    default = torch.get_num_threads()
    if share >= default:
        return None
    torch.set_num_threads(share)
    usable = _count(cores, "CPU core", "CPU cores") + (f" shared by {local} processes" if local > 1 else "")
    return (
        f"note: torch threads lowered from {default} to {share}: this process may use {usable} (its affinity and "
        "its container's CPU limit); set OMP_NUM_THREADS to choose"
    )


def size_torch_threads_noted() -> None:
    """:func:`size_torch_threads` for the commands that do not train (evaluation, export, the ceiling): the line
    saying the count was lowered, if it was, goes to stderr."""
    if (lowered := size_torch_threads()) is not None:
        print(lowered, file=sys.stderr)


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``); ``None`` when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def describe_environment(device: str, group: ProcessGroup, from_step: int) -> dict[str, Any]:
    """This process's environment as a segment of ``environment.json``.

    Args:
        device: ``"cpu"`` or ``"cuda"``, what the run trains on.
        group: the process group (its ``world_size`` is the number of training processes).
        from_step: the step this invocation starts from (0 for a fresh run, the checkpoint's step on resume).
    """
    return {
        "from_step": from_step,
        "device": device,
        "gpu": torch.cuda.get_device_name(group.local_rank) if device == "cuda" else None,
        "processes": group.world_size,
        "threads_per_process": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine() or None,
        "cpu": cpu_model(),
        "platform": platform.platform(),
    }


def read_environment(run_dir: Path) -> list[dict[str, Any]]:
    """The segments ``run_dir`` recorded, oldest first; empty when the run predates ``environment.json``.

    Raises:
        ValueError: the file exists but is not a list of segments (the message names the file).
        OSError: it cannot be read.
    """
    path = run_dir / ENVIRONMENT_FILE
    if not path.is_file():
        return []
    try:
        segments = json.loads(path.read_text())["segments"]
        if not isinstance(segments, list) or not all(isinstance(s, dict) and "from_step" in s for s in segments):
            raise TypeError("segments is not a list of objects with a from_step")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} cannot be read as a run's environment ({type(error).__name__}: {error})") from error
    return segments


def record_environment(run_dir: Path, segment: dict[str, Any]) -> None:
    """Write ``segment`` into ``run_dir``'s ``environment.json`` (atomically), after the earlier segments that
    started before it; a fresh run (``from_step`` 0), or a file that cannot be read, starts the list anew.

    Raises:
        OSError: the file cannot be written (a full disk: :func:`~training.checkpoint.cannot_write`).
    """
    kept: list[dict[str, Any]] = []
    if segment["from_step"] > 0:
        try:
            kept = [s for s in read_environment(run_dir) if s["from_step"] < segment["from_step"]]
        except (ValueError, OSError):  # a damaged record: the steps before this one show as not recorded
            kept = []
    text = json.dumps({"segments": [*kept, segment]}, indent=2) + "\n"
    try:
        write_atomically(run_dir / ENVIRONMENT_FILE, lambda path: path.write_text(text))
    except OSError as error:
        raise cannot_write(f"the environment record ({ENVIRONMENT_FILE})", run_dir, error) from error


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def describe_segment(segment: dict[str, Any]) -> str:
    """One segment in words: ``x86_64 CPU (AMD EPYC 7B13), 2 processes of 1 thread, torch 2.4.0``."""
    if segment.get("device") == "cuda":
        per_process = ", one per process" if int(segment["processes"]) > 1 else ""
        where = f"{segment.get('gpu') or 'a CUDA GPU'} (CUDA{per_process})"
    else:
        cpu = f" ({segment['cpu']})" if segment.get("cpu") else ""
        where = f"{segment.get('machine') or 'an unrecorded'} CPU{cpu}"
    processes = _count(int(segment["processes"]), "process", "processes")
    threads = _count(int(segment["threads_per_process"]), "thread", "threads")
    return f"{where}, {processes} of {threads}, torch {segment.get('torch', 'of an unrecorded version')}"


def describe_environments(segments: Sequence[dict[str, Any]], steps_done: int) -> str:
    """Where a run trained, for a model card: one description when every segment agrees, else each with its
    steps; the steps before the first recorded segment (a run resumed after ``environment.json`` existed) and a
    run with no record at all are said to be not recorded, never guessed."""
    if not segments:
        return "a machine that was not recorded (the run predates environment.json)"
    parts: list[str] = []
    if segments[0]["from_step"] > 0:
        parts.append(f"steps 0-{segments[0]['from_step']}: not recorded")
    descriptions = [describe_segment(segment) for segment in segments]
    if not parts and len({tuple(str(s.get(key)) for key in _DESCRIBING_KEYS) for s in segments}) == 1:
        return descriptions[0]
    ends = [segment["from_step"] for segment in segments[1:]] + [steps_done]
    for segment, end, description in zip(segments, ends, descriptions, strict=True):
        parts.append(f"steps {segment['from_step']}-{end}: {description}")
    return "; ".join(parts)


def recorded_processes(segments: Sequence[dict[str, Any]]) -> int | None:
    """The number of training processes of the newest segment (a resume must keep it); ``None`` when not
    recorded."""
    return int(segments[-1]["processes"]) if segments else None
