"""``smoothsa_cnn_no_preheat``: ablation of ``smoothsa_cnn`` without the preheater.

First-frame queries come from a plain shared Gaussian (as in RandSF.Q), the preheat loss is dropped, and
everything else (3+1 iterations, RandSF.Q transition, data, schedule) is unchanged. SmoothSA reports that
preheating helps; this config checks that on the synthetic ``medium`` world.
"""

from __future__ import annotations

import dataclasses

from training.config import LossTerm, TrainConfig
from training.configs import smoothsa_cnn
from training.configs._cnn import cnn_model


def get_config() -> TrainConfig:
    """``smoothsa_cnn`` with a ``gaussian_shared`` initializer and no preheat loss."""
    return dataclasses.replace(
        smoothsa_cnn.get_config(),
        name="smoothsa_cnn_no_preheat",
        model=cnn_model(initializer="gaussian_shared"),
        losses=[LossTerm("reconstruction_mse", 1.0)],
    )
