"""``slot_contrast``: the SlotContrast loss (Manasyan et al., "Temporally Consistent Object-Centric Learning
by Contrasting Slots", 2024).

For each pair of consecutive frames, every slot of frame ``t + 1`` must pick out the same slot of the same
video at ``t`` among all slots of all videos in the batch (cosine similarity / temperature, cross-entropy
against the identity). The softmax runs over the frame-``t`` slots, as in the reference implementation
(Genera1Z/SmoothSA ``SlotContrastLoss``), where ``cross_entropy`` takes the second axis of
the ``[T-1, B*K (frame t), B*K (frame t+1)]`` similarities as the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plugins.interfaces import Loss
from plugins.types import Tensor, VideoOutput


class SlotContrastLoss(Loss):
    """Batch-contrastive temporal slot consistency.

    Args:
        temperature: softmax temperature (0.1 in the paper).
    """

    name = "slot_contrast"

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Mean cross-entropy over frame pairs and slots; 0 for single-frame clips."""
        del progress  # Unused.
        slots = F.normalize(output.slots, dim=-1)  # [B, T, K, D]
        batch, frames, num_slots, dim = slots.shape
        if frames < 2:
            return slots.sum() * 0.0
        # frames t and t+1 of every slot: [B, T-1, K, D] -> [T-1, B, K, D] -> [T-1, B*K, D]
        current = slots[:, :-1].transpose(0, 1).reshape(frames - 1, batch * num_slots, dim)  # [T-1, B*K, D]
        following = slots[:, 1:].transpose(0, 1).reshape(frames - 1, batch * num_slots, dim)  # [T-1, B*K, D]
        # Rows: slots of frame t+1; columns (the classes): slots of frame t.
        # [T-1, B*K, D] @ ([T-1, B*K, D] -> [T-1, D, B*K]) -> [T-1, B*K, B*K]
        logits = following @ current.transpose(1, 2) / self.temperature  # [T-1, B*K, B*K]
        labels = torch.arange(batch * num_slots, device=slots.device).expand(frames - 1, -1)  # [B*K] -> [T-1, B*K]
        # logits [T-1, B*K, B*K] -> [(T-1)*B*K, B*K], labels [T-1, B*K] -> [(T-1)*B*K]
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())
