"""``smoothsa_cnn_contrast``: ``smoothsa_cnn`` plus the SlotContrast loss at weight 0.01.

SmoothSA's video recipe trains with SlotContrast (Manasyan et al. 2024; weight 0.5 next to a DINOv2 feature
reconstruction loss, Genera1Z/SmoothSA ``config-smoothsa``). Next to this config's pixel reconstruction loss the weight
is 0.01: the weighted contrast term then starts at about a third of the reconstruction MSE (3.5 x 0.01 against 0.1) and
settles at a tenth of it or less. Contrasting each slot with every other slot of the batch one frame later pushes the
slots apart from the first steps, where the recipe without it spends its first 1,250-1,750 steps with near-identical
slots. Measured on two seeds, that escape comes by step 1,000, but the models end below the recipe without the loss, so
the default model does not use it (training/README.md). Everything else is ``smoothsa_cnn``.
"""

from __future__ import annotations

import dataclasses

from training.config import LossTerm, TrainConfig
from training.configs import smoothsa_cnn


def with_slot_contrast(base: TrainConfig, name: str) -> TrainConfig:
    """``base`` renamed ``name``, with ``LossTerm("slot_contrast", 0.01)`` (temperature 0.1) added."""
    return dataclasses.replace(
        base, name=name, losses=[*base.losses, LossTerm("slot_contrast", 0.01, {"temperature": 0.1})]
    )


def get_config() -> TrainConfig:
    """``smoothsa_cnn`` with ``LossTerm("slot_contrast", 0.01)``."""
    return with_slot_contrast(smoothsa_cnn.get_config(), "smoothsa_cnn_contrast")
