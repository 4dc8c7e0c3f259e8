"""``randsfq``: the RandSF.Q transition (Zhao et al., "Predicting Video Slot Attention Queries from Random
Slot-Feature Pairs", arXiv 2508.01345).

The next frame's queries come from one Transformer decoder block whose target is a slot set and whose memory
is a feature map, each tagged with a learned embedding of how many frames back it lies. During training the
slot set and the feature map are drawn independently at random from inside the window (per sample), which
teaches the block to predict across different time gaps; at inference (or without history) it reads the
previous frame's slots and the current frame's features. Inputs are detached: the block learns only through
the queries it produces.
"""

from __future__ import annotations

import torch
from torch import nn

from plugins.builtin.static_attention import decoder_layer
from plugins.interfaces import Transition
from plugins.types import Features, Slots


class RandSFQTransition(Transition):
    """Random slot-feature pair transition.

    Args:
        slot_dim: wired by the model.
        feature_dim: wired by the model.
        window: the training clip length ``dt`` (6 for MOVi in the paper); the block sees up to ``window - 1``
            earlier slot sets and as many feature maps (the current one included).
        num_heads: attention heads.
        ffn_multiplier: feed-forward width as a multiple of ``slot_dim``.
        dropout: dropout inside the block (0.5 in the paper).

    Raises:
        ValueError: ``window`` is below 2.
    """

    name = "randsfq"

    def __init__(
        self,
        slot_dim: int,
        feature_dim: int,
        window: int = 6,
        num_heads: int = 4,
        ffn_multiplier: int = 4,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if window < 2:
            raise ValueError(f"window must be >= 2 (one past slot set and the current features), got {window}")
        self.window = window
        # E[delta], N(0, 1) as the reference's nn.Embedding; the projection's bias starts at zero as there.
        self.time_embedding = nn.Parameter(torch.randn(window, slot_dim))  # [window, D]
        self.project_features = nn.Linear(feature_dim, slot_dim)
        nn.init.zeros_(self.project_features.bias)
        self.block = nn.TransformerDecoderLayer(
            slot_dim,
            num_heads,
            ffn_multiplier * slot_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
            bias=False,
        )

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Predict queries ``[B, K, D]`` for the frame whose features are ``past_features[-1]``.

        Raises:
            ValueError: ``past_slots`` and ``past_features`` differ in length.
        """
        n = len(past_slots)
        if len(past_features) != n:
            raise ValueError(f"need as many feature maps as slot sets, got {len(past_features)} and {n}")
        if not (self.training and n > 1):
            # Inference: previous slots (1 frame back) and the current features (0 frames back).
            target = past_slots[-1].detach() + self.time_embedding[1]  # [B, K, D]
            memory = self.project_features(past_features[-1].detach()) + self.time_embedding[0]  # [B, P, D]
            if not self.training:  # the same block with fixed-shape reshapes (a smaller ONNX graph)
                return decoder_layer(self.block, target, memory)
            out: Slots = self.block(target, memory)
            return out
        slots = torch.stack(past_slots, dim=1).detach()  # n x [B, K, D] -> [B, n, K, D]
        features = torch.stack(past_features, dim=1).detach()  # n x [B, P, Df] -> [B, n, P, Df]
        batch = slots.shape[0]
        rows = torch.arange(batch, device=slots.device)
        slot_index = torch.randint(0, n, (batch,), device=slots.device)  # ts in {0..n-1}
        feature_index = torch.randint(0, n, (batch,), device=slots.device)
        slot_gap = n - slot_index  # frames back from the frame being predicted, in {1..n}
        feature_gap = n - 1 - feature_index  # in {0..n-1}: the paper's te in {1..n} over n + 1 maps
        target = slots[rows, slot_index] + self.time_embedding[slot_gap][:, None, :]  # [B, D] -> [B, 1, D]; [B, K, D]
        memory = self.project_features(features[rows, feature_index])  # [B, P, D]
        memory = memory + self.time_embedding[feature_gap][:, None, :]  # [B, D] -> [B, 1, D]; [B, P, D]
        out = self.block(target, memory)  # [B, K, D]
        return out
