"""``smoothsa_cnn_grid32``: ``smoothsa_cnn`` with Slot Attention on a 32x32 grid instead of 16x16.

SAVi and Slot Attention run their CNN encoders at stride 1, so attention sees every pixel; the CPU configs
downsample 4x to keep a step cheap, which leaves a small object of the ``medium`` world (about 10 pixels
across at 64x64) a few grid cells. This config drops the second stride-2 convolution (strides 2, 1, 1, 1), so
Slot Attention attends over 1,024 tokens; the decoder and everything else are ``smoothsa_cnn``'s.
"""

from __future__ import annotations

import dataclasses

from training.config import TrainConfig
from training.configs import smoothsa_cnn
from training.configs._cnn import cnn_model


def get_config() -> TrainConfig:
    """``smoothsa_cnn`` with a 32x32 Slot Attention grid."""
    return dataclasses.replace(
        smoothsa_cnn.get_config(),
        name="smoothsa_cnn_grid32",
        model=cnn_model(encoder_strides=(2, 1, 1, 1)),
    )
