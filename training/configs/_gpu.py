"""GPU sizing for the CNN experiments: the same model and losses, a batch and data pipeline that keep a GPU busy.

The CPU configs train on 8 clips per step with one data worker, sized so a step takes about half a second on
two cores. On a GPU these models are small enough that a step is bound by kernel launches, not arithmetic, so a
larger batch costs little more per step: 32 clips per step (the batch of SAVi's MOVi runs is 64), four data
workers per process (a training clip is a chunk of a generated 24-frame video, so a 32-clip step generates
768 frames), and evaluation every 500 steps. On an H200 a step took 104-114 ms whether three runs shared the GPU
or one ran alone with 11 workers: one process's Python and kernel-launch overhead sets the pace, not the data
or the GPU (training/README.md).

Mixed precision is off: at this size fp16 autocast would add cast kernels to a launch-bound step rather than
save arithmetic (expected, not measured), and fp32 keeps the numerics of the CPU runs (the weight-100 preheat
loss reaches gradient norms of 1e5 when slots collapse, which fp16 gradient scaling would have to absorb).
"""

from __future__ import annotations

import dataclasses

from training.config import TrainConfig

GPU_BATCH_SIZE = 32
GPU_WORKERS = 4


def gpu_sized(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` renamed ``name``, with a GPU-sized batch and data pipeline and fp32 arithmetic."""
    return dataclasses.replace(
        config,
        name=name,
        data=dataclasses.replace(config.data, batch_size=GPU_BATCH_SIZE, num_workers=GPU_WORKERS),
        optim=dataclasses.replace(config.optim, mixed_precision=False),
        eval_every=500,
        checkpoint_every=500,
    )
