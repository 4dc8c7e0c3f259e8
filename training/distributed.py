"""Multi-process data parallelism under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this node (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True under ``torchrun`` with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def init_from_environment(device: str) -> ProcessGroup:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Uses the gloo backend on the CPU and nccl on CUDA; a single process needs no group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    group = ProcessGroup(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if group.distributed and not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return group


def barrier(group: ProcessGroup) -> None:
    """Wait for every process (no-op when not distributed)."""
    if group.distributed:
        dist.barrier()


def shutdown(group: ProcessGroup) -> None:
    """Leave the process group."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()
