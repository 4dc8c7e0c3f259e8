"""``savi_cnn``: the SAVi baseline (Kipf et al., ICLR 2022) on the synthetic ``medium`` world.

Unconditional SAVi-S: learned Gaussian queries, 1 Slot Attention iteration on every frame, the SAVi
Transformer predictor as transition, pixel reconstruction through a spatial broadcast decoder; same encoder,
decoder, data and schedule as ``smoothsa_cnn`` so the comparison isolates the slot dynamics.
"""

from __future__ import annotations

import dataclasses

from training.config import LossTerm, TrainConfig
from training.configs import smoothsa_cnn
from training.configs._cnn import cnn_model


def get_config() -> TrainConfig:
    """The SAVi baseline."""
    model = cnn_model(
        initializer="gaussian_shared",
        transition={"name": "transformer", "kwargs": {}},
        first_iters=1,
        later_iters=1,
        truncation="none",
    )
    return dataclasses.replace(
        smoothsa_cnn.get_config(), name="savi_cnn", model=model, losses=[LossTerm("reconstruction_mse", 1.0)]
    )
