"""``transformer``: SAVi's predictor (Kipf et al., ICLR 2022): one Transformer block over the previous slots.

Post-norm multi-head self-attention among the slots and an MLP, so slots can exchange information
(interactions) before the next frame. Gradients flow through time, as in SAVi.
"""

from __future__ import annotations

from torch import nn

from plugins.interfaces import Transition
from plugins.types import Features, Slots


class TransformerTransition(Transition):
    """Slot-wise Transformer predictor.

    Args:
        slot_dim: wired by the model.
        num_heads: attention heads.
        ffn_multiplier: MLP hidden width as a multiple of ``slot_dim`` (SAVi-S: 2).
    """

    name = "transformer"

    def __init__(self, slot_dim: int, num_heads: int = 4, ffn_multiplier: int = 2) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(
            slot_dim, num_heads, ffn_multiplier * slot_dim, dropout=0.0, batch_first=True, norm_first=False
        )

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Predict queries ``[B, K, D]`` from the previous slots."""
        del past_features  # Unused.
        out: Slots = self.block(past_slots[-1])
        return out
