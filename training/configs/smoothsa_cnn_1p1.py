"""``smoothsa_cnn_1p1``: ablation of ``smoothsa_cnn`` with 1 Slot Attention iteration on the first frame too.

SmoothSA's Table 5 reports that 3 first-frame iterations + 1 later (3+1) beats 1+1; this config checks that
trend on the synthetic ``medium`` world with everything else unchanged.
"""

from __future__ import annotations

import dataclasses

from training.config import TrainConfig
from training.configs import smoothsa_cnn
from training.configs._cnn import cnn_model


def get_config() -> TrainConfig:
    """``smoothsa_cnn`` with ``first_iters=1``."""
    return dataclasses.replace(smoothsa_cnn.get_config(), name="smoothsa_cnn_1p1", model=cnn_model(first_iters=1))
