"""``reconstruction_mse``: mean squared error between the decoder's reconstruction and its (detached) target."""

from __future__ import annotations

import torch.nn.functional as F

from plugins.interfaces import Loss
from plugins.types import Tensor, VideoOutput


class ReconstructionLoss(Loss):
    """``MSE(reconstruction, sg(target))`` over all frames, tokens and channels (pixels or features)."""

    name = "reconstruction_mse"

    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Mean over every element of ``[B, T, Pt, Ct]``."""
        del progress  # Unused.
        return F.mse_loss(output.reconstruction, output.target.detach())
