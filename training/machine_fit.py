"""Whether a run's data settings fit this machine: checked before a run starts, so that a worker count or a batch
size past what the machine can hold is refused naming the setting, instead of ending in an out-of-memory kill
after the data workers have been forked (or the allocator's traceback after the first batch was loaded)."""

from __future__ import annotations

from service.cli_limits import MEMORY_SHARE
from training.config import TrainConfig

__all__ = ["WORKERS_PER_CORE", "machine_fit_problems"]

WORKERS_PER_CORE = 4
"""Data workers allowed per CPU core this process may use. Each worker is a process of its own with a copy of
the data pipeline (about 0.4 GB each for the synthetic worlds); past one or two a core they only queue for it."""


def machine_fit_problems(config: TrainConfig, cores: int, memory_bytes: int | None, processes: int = 1) -> list[str]:
    """What in ``config``'s data settings this machine cannot run with ``processes`` training processes on it (a
    ``torchrun`` node's ``LOCAL_WORLD_SIZE``), which share its cores and memory: more data workers in all than
    :data:`WORKERS_PER_CORE` x ``cores``, or batches of frames (``batch_size`` x ``clip_length`` x 3 x the
    model's ``image_size``, 4 bytes each, per process) above ``memory_bytes`` /
    :data:`~service.cli_limits.MEMORY_SHARE` in all (a quarter, as the tools build at most: the model's activations
    and their gradients take several times the input on top of it; not checked when the memory is not known).
    Each problem names the setting with its flag, the value and the limit; empty when it fits."""
    data = config.data
    problems = []
    most_workers = WORKERS_PER_CORE * cores // processes
    each = f" per process ({processes} on this machine)" if processes > 1 else ""
    if data.num_workers > most_workers:
        problems.append(
            f"num_workers (--workers) {data.num_workers} is more than this machine can run: at most "
            f"{WORKERS_PER_CORE} per CPU core this process may use ({cores}: {most_workers}{each}); each is a "
            "process of its own with a copy of the data pipeline"
        )
    height, width = config.image_size
    frame_bytes = 3 * height * width * 4  # float32 [3, H, W]
    batch_bytes = data.batch_size * data.clip_length * frame_bytes
    if memory_bytes is not None and batch_bytes > (budget := memory_bytes // MEMORY_SHARE // processes):
        most_clips = budget // (data.clip_length * frame_bytes)
        problems.append(
            f"batch_size (--batch-size) {data.batch_size}: its {data.clip_length}-frame clips at {height}x{width} "
            f"take {batch_bytes / 2**30:.1f} GiB as float32 before the model runs, more than 1/{MEMORY_SHARE} "
            f"of the {memory_bytes / 2**30:.1f} GiB this process may use{each}; at most {most_clips} clips fit"
        )
    return problems
