"""``smoothsa_cnn_gpu``: the default model's recipe (``smoothsa_cnn``) sized for one GPU.

The same model, losses and schedule shape as ``smoothsa_cnn`` on ``synthetic:medium``, with 32 clips per step,
four data workers and fp32 arithmetic (``_gpu.py`` says why). Run with ``--device cuda``; on the CPU each step
does four times the work of a ``smoothsa_cnn`` step.
"""

from __future__ import annotations

from training.config import TrainConfig
from training.configs import smoothsa_cnn
from training.configs._gpu import gpu_sized


def get_config() -> TrainConfig:
    """``smoothsa_cnn`` with a GPU-sized batch."""
    return gpu_sized(smoothsa_cnn.get_config(), "smoothsa_cnn_gpu")
