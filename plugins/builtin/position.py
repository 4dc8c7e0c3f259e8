"""Soft position embedding shared by encoders and decoders that need an explicit grid position."""

from __future__ import annotations

import torch
from torch import nn


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """``[h*w, 4]`` coordinates ``(y, x, 1 - y, 1 - x)`` in ``[0, 1]``, row-major."""
    ys = torch.linspace(0.0, 1.0, height)
    xs = torch.linspace(0.0, 1.0, width)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # [h, w] each
    grid = torch.stack([y, x, 1.0 - y, 1.0 - x], dim=-1)  # 4 x [h, w] -> [h, w, 4]
    return grid.reshape(height * width, 4)  # [h, w, 4] -> [h*w, 4]


class SoftPositionEmbedding(nn.Module):
    """Adds ``Linear(4 -> dim)`` of the coordinate grid to a token sequence (Slot Attention, SAVi)."""

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.register_buffer("coordinates", coordinate_grid(*grid), persistent=False)
        self.project = nn.Linear(4, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, h*w, dim]`` -> same shape, position added."""
        projected: torch.Tensor = self.project(self.get_buffer("coordinates"))
        return tokens + projected
