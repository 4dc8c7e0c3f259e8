"""``broadcast``: the spatial broadcast decoder (Watters et al., 2019) as used by Slot Attention and SAVi.

Each slot is tiled over a small grid, a position embedding is added, and transposed convolutions upsample it
to the output size; every slot predicts RGB plus an alpha logit, and a softmax over slots turns the alphas
into masks that composite the slots' images.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plugins.builtin.decoders.alpha import composite
from plugins.builtin.encoders.position import SoftPositionEmbedding
from plugins.interfaces import Decoder
from plugins.types import DecoderOutput, Slots, Tokens


class SpatialBroadcastDecoder(Decoder):
    """Per-slot CNN decoder to pixels.

    Args:
        slot_dim: wired by the model.
        image_size: wired by the model; the default output size.
        output_size: ``(h, w)`` of the reconstruction and masks; defaults to ``image_size``. A smaller size
            trains faster; masks are upsampled for evaluation and serving.
        broadcast_size: side of the grid each slot is tiled over; ``output_size / broadcast_size`` must be a
            power of two (the number of stride-2 transposed convolutions).
        channels: hidden channels.
    """

    name = "broadcast"
    target_kind = "pixels"

    def __init__(
        self,
        slot_dim: int,
        image_size: tuple[int, int],
        output_size: tuple[int, int] | list[int] | None = None,
        broadcast_size: int = 8,
        channels: int = 32,
    ) -> None:
        super().__init__()
        height, width = (int(output_size[0]), int(output_size[1])) if output_size else tuple(image_size)
        ratio = height // broadcast_size
        if height != width or height % broadcast_size or ratio & (ratio - 1):
            raise ValueError(
                f"broadcast decoder: output_size {(height, width)} must be square and a power-of-two multiple of "
                f"broadcast_size {broadcast_size}"
            )
        self.target_grid = (height, width)
        self.broadcast_grid = (broadcast_size, broadcast_size)
        self.position = SoftPositionEmbedding(self.broadcast_grid, slot_dim)
        layers: list[nn.Module] = []
        in_channels = slot_dim
        for _ in range(int(math.log2(ratio))):
            layers += [nn.ConvTranspose2d(in_channels, channels, 5, stride=2, padding=2, output_padding=1), nn.ReLU()]
            in_channels = channels
        layers += [nn.Conv2d(in_channels, channels, 5, padding=2), nn.ReLU(), nn.Conv2d(channels, 4, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, slots: Slots, target: Tokens) -> DecoderOutput:
        """Slots ``[B, K, D]`` -> RGB reconstruction ``[B, h*w, 3]`` in ``[0, 1]`` scale and masks ``[B, K, h, w]``."""
        del target  # Unused: the decoder only reads slots.
        batch, num_slots, slot_dim = slots.shape
        tiles = slots.reshape(batch * num_slots, 1, slot_dim).expand(
            -1, self.broadcast_grid[0] * self.broadcast_grid[1], -1
        )
        tiles = self.position(tiles)  # [B*K, bh*bw, D]
        tiles = tiles.transpose(1, 2).reshape(batch * num_slots, slot_dim, *self.broadcast_grid)  # [B*K, D, bh, bw]
        decoded = self.net(tiles)  # [B*K, 4, h, w]
        decoded = decoded.flatten(2).transpose(1, 2)  # [B*K, h*w, 4]
        per_slot = decoded.reshape(batch, num_slots, *decoded.shape[1:])  # [B, K, h*w, 4]
        per_slot = torch.cat([per_slot[..., :3].sigmoid(), per_slot[..., 3:]], dim=-1)
        return composite(per_slot, self.target_grid, target_dim=3)
