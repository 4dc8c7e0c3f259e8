"""GPU sizing for the CNN experiments: the same model and losses, a batch and data pipeline that keep a GPU busy.

The CPU configs train on 8 clips per step with one data worker, sized so a step takes about half a second on
two cores. On a GPU these models are small enough that a step is bound by kernel launches, not arithmetic, so a
larger batch costs little more per step: 32 clips per step (the batch of SAVi's MOVi runs is 64), four data
workers per process, and evaluation every 500 steps. The data is then the limit: a training clip is a window
of a generated 24-frame video, so a 32-clip step generates 768 frames, and one core generates about 1,100
frames/s at 64x64 while a training run shares it (``training/benchmarks``).

Mixed precision is off: at this size fp16 autocast adds cast kernels to a launch-bound step rather than saving
arithmetic, and fp32 keeps the numerics of the CPU runs (the weight-100 preheat loss reaches gradient norms of
1e5 when slots collapse, which fp16 gradient scaling would have to absorb).
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
