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


def mean_across_processes(group: ProcessGroup, values: dict[str, float], device: str) -> dict[str, float]:
    """The mean of each of ``values`` over the processes, with one ``all_reduce`` of a small tensor; ``values``
    itself when not distributed.

    Every process must call it at the same step with the same keys (a collective operation: a process that
    does not call it leaves the others waiting).

    Args:
        group: this process's place in the job.
        values: this process's scalars (its share of the batch's loss terms, say).
        device: where the collective runs: ``"cpu"`` (gloo) or ``"cuda"`` (nccl needs CUDA tensors).
    """
    if not group.distributed:
        return values
    keys = sorted(values)  # the same order on every process
    summed = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64, device=device)  # [K]
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return dict(zip(keys, (summed / group.world_size).tolist(), strict=True))


def shutdown(group: ProcessGroup) -> None:
    """Leave the process group."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()
