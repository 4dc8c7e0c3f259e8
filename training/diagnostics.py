"""Training-time health signals that losses do not show."""

from __future__ import annotations

import torch


def slot_similarity(slots: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the distinct slots of each sample, a 0-d tensor in ``[-1, 1]``.

    Near 1 means the slots collapsed onto one vector: attention is uniform over slots, every mask is about
    ``1/K`` everywhere and the decoder can only paint the average frame, while the reconstruction loss keeps
    falling slowly and looks healthy. A run whose slots have split into objects sits well below that.

    Args:
        slots: ``[B, K, D]``, ``K >= 2``.
    """
    unit = torch.nn.functional.normalize(slots.detach().float(), dim=-1)  # [B, K, D]
    cosines = unit @ unit.transpose(1, 2)  # [B, K, D] @ [B, D, K] -> [B, K, K]
    num_slots = slots.shape[1]
    off_diagonal = cosines.sum(dim=(1, 2)) - cosines.diagonal(dim1=1, dim2=2).sum(dim=1)  # [B]
    return (off_diagonal / (num_slots * (num_slots - 1))).mean()
