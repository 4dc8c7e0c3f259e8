"""``smoothsa_cnn_grid32_dec32_contrast_gpu``: ``smoothsa_cnn_grid32_dec32_gpu`` plus SlotContrast at weight 0.01.

On the CPU, SlotContrast at weight 0.01 made the slots leave the symmetric phase by step 1,000 on both seeds
tried, where the recipe without it needed 1,250-1,750 steps or stayed collapsed (``smoothsa_cnn_contrast``,
training/README.md). The 32x32-mask models were the ones that stayed collapsed there, so this config pairs them.
"""

from __future__ import annotations

from training.config import TrainConfig
from training.configs import smoothsa_cnn_grid32_dec32_gpu
from training.configs.smoothsa_cnn_contrast import with_slot_contrast


def get_config() -> TrainConfig:
    """``smoothsa_cnn_grid32_dec32_gpu`` with ``LossTerm("slot_contrast", 0.01)``."""
    return with_slot_contrast(smoothsa_cnn_grid32_dec32_gpu.get_config(), "smoothsa_cnn_grid32_dec32_contrast_gpu")
