"""``smoothsa_cnn_grid32_dec32``: ``smoothsa_cnn`` with Slot Attention on a 32x32 grid and masks at 32x32.

The two changes of ``smoothsa_cnn_grid32`` (strides 2, 1, 1, 1: Slot Attention over 1,024 tokens) and
``smoothsa_cnn_dec32`` (an 8x8 -> 16x16 -> 32x32 broadcast decoder with 3x3 kernels) together: slots that can
bind small objects, and masks fine enough to outline them (the ground truth through 32x32 masks scores video
FG-ARI 0.948 on the ``medium`` validation videos, against 0.794 through 16x16; ``python -m training.ceiling``).
From scratch a 32x32 decoder has not left the symmetric phase within this CPU's budget (training/README.md), so
the intended use is a warm start from a trained ``smoothsa_cnn_grid32`` model: fit the new decoder first
(``--init-from MODEL --train-only decoder``), then train the whole model at a low learning rate.
"""

from __future__ import annotations

import dataclasses

from training.config import TrainConfig
from training.configs import smoothsa_cnn
from training.configs._cnn import cnn_model


def get_config() -> TrainConfig:
    """``smoothsa_cnn`` with a 32x32 Slot Attention grid and a 32x32 decoder of 3x3 kernels."""
    return dataclasses.replace(
        smoothsa_cnn.get_config(),
        name="smoothsa_cnn_grid32_dec32",
        model=cnn_model(encoder_strides=(2, 1, 1, 1), decoder_size=32, decoder_kernel=3),
    )
