"""``smoothsa_cnn_dec32_7slots``: ``smoothsa_cnn_dec32`` with 7 slots instead of 6.

A ``medium`` video holds up to 5 objects; with 6 slots the background (whose mild texture often takes two
slots) leaves no spare slot, and objects get merged. One more slot costs about 15 % more per training step.
Its one 4,500-step run stayed collapsed (training/README.md).
"""

from __future__ import annotations

import dataclasses

from training.config import TrainConfig
from training.configs import smoothsa_cnn
from training.configs._cnn import cnn_model


def get_config() -> TrainConfig:
    """``smoothsa_cnn_dec32`` with 7 slots."""
    return dataclasses.replace(
        smoothsa_cnn.get_config(),
        name="smoothsa_cnn_dec32_7slots",
        model=cnn_model(decoder_size=32, decoder_kernel=3, num_slots=7),
    )
