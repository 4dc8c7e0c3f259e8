"""``savi_cnn``: the SAVi baseline (Kipf et al., ICLR 2022) on the synthetic ``medium`` world.

Unconditional SAVi-S slot dynamics: learned Gaussian queries, a corrector of 1 Slot Attention iteration on every frame
without the Slot Attention MLP and with ``epsilon=1e-8`` in the renormalisation's denominator (SAVi-S,
google-research/slot-attention-video ``savi_conditional_small``), and the SAVi Transformer predictor as transition.
Everything else is shared with ``smoothsa_cnn`` so the comparison isolates the slot dynamics: the same encoder (two
stride-2 convolutions, where SAVi-S keeps the 64x64 grid), the same 8x8 -> 16x16 broadcast decoder reconstructing RGB
(SAVi-S decodes to 64x64 and reconstructs optical flow, which ``synthetic`` data does not provide as a target), and the
same data, batch (8 clips, against SAVi's 64) and schedule (peak LR 4e-4 with 5 % warm-up, against SAVi's 2e-4 with
2.5k warm-up steps).
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
        slot_attention={"mlp_multiplier": 0, "epsilon": 1e-8},  # SAVi-S's corrector
    )
    return dataclasses.replace(
        smoothsa_cnn.get_config(), name="savi_cnn", model=model, losses=[LossTerm("reconstruction_mse", 1.0)]
    )
