"""``preheat_mse``: SmoothSA's preheat (self-distillation) loss, ``MSE(Q_pre, sg(S_0))``.

The preheated queries of the first frame regress onto the slots Slot Attention produced on that frame; the
paper weights it by 100. It is the only signal that trains the preheater (Slot Attention sees ``sg(Q_pre)``).
"""

from __future__ import annotations

import torch.nn.functional as F

from plugins.interfaces import Loss
from plugins.types import Tensor, VideoOutput


class PreheatLoss(Loss):
    """Distil the first frame's aggregated slots into the preheater."""

    name = "preheat_mse"

    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Mean over ``[B, K, D]``.

        Raises:
            ValueError: the model has no preheater, or the clip did not start with ``first_step``.
        """
        del progress  # Unused.
        preheated = output.preheated
        if preheated is None:
            raise ValueError(
                "preheat_mse needs preheated queries: use the smoothsa_preheat initializer and start clips with "
                "first_step"
            )
        return F.mse_loss(preheated, output.steps[0].slots.detach())
