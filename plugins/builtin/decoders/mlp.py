"""``mlp``: the DINOSAUR/VideoSAUR feature decoder (Seitzer et al., ICLR 2023; Zadaianchuk et al., NeurIPS 2023).

Every slot is broadcast to each token position, a learned position embedding is added, and a shared MLP
predicts that token's features plus an alpha logit; a softmax over slots gives the masks.
"""

from __future__ import annotations

import torch
from torch import nn

from plugins.builtin.decoders.alpha import composite
from plugins.interfaces import Decoder
from plugins.types import DecoderOutput, Slots, Tokens


class MLPFeatureDecoder(Decoder):
    """Per-slot, per-token MLP decoder of backbone features.

    Args:
        slot_dim: wired by the model.
        target_dim: wired by the model (the raw feature width).
        feature_grid: wired by the model; the decoder reconstructs the encoder's grid.
        hidden_dims: widths of the hidden layers (DINOSAUR: 3 x 1024 for ViT-B, 3 x 2048 for larger).
        extra_dim: extra per-token outputs (e.g. ``P`` next-frame similarity logits for the VideoSAUR
            time-similarity loss); 0 for none.
    """

    name = "mlp"
    target_kind = "features"
    mask_kind = "alpha masks (softmax over slots)"

    def __init__(
        self,
        slot_dim: int,
        target_dim: int,
        feature_grid: tuple[int, int],
        hidden_dims: tuple[int, ...] | list[int] = (512, 512, 512),
        extra_dim: int = 0,
    ) -> None:
        super().__init__()
        self.target_grid = tuple(feature_grid)  # type: ignore[assignment]
        self.target_dim = target_dim
        num_tokens = feature_grid[0] * feature_grid[1]
        self.position = nn.Parameter(torch.randn(1, 1, num_tokens, slot_dim) * 0.02)
        layers: list[nn.Module] = []
        in_dim = slot_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU()]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, target_dim + 1 + extra_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, slots: Slots, target: Tokens) -> DecoderOutput:
        """Slots ``[B, K, D]`` -> features ``[B, P, Ct]`` and masks ``[B, K, h, w]``."""
        del target  # Unused: the decoder only reads slots.
        per_token = slots[:, :, None, :] + self.position  # [B, K, D] -> [B, K, 1, D]; + [1, 1, P, D] -> [B, K, P, D]
        return composite(self.net(per_token), self.target_grid, self.target_dim)
