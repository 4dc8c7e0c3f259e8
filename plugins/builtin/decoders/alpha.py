"""Alpha compositing shared by the per-slot decoders."""

from __future__ import annotations

from collections.abc import Callable

import torch

from plugins.types import DecoderOutput


def composite(
    per_slot: torch.Tensor,
    grid: tuple[int, int],
    target_dim: int,
    content_activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> DecoderOutput:
    """Combine per-slot predictions with softmax-normalised alpha logits.

    Args:
        per_slot: ``[B, K, Pt, Ct + 1 + E]``: the slot's reconstruction, one alpha logit, then optional extras.
        grid: ``(h, w)`` with ``h * w == Pt``.
        target_dim: ``Ct``.
        content_activation: applied to the reconstruction channels alone (e.g. ``torch.sigmoid`` for RGB); the
            alpha logit is read from ``per_slot`` as it is, so an exported graph that returns only the masks
            does not compute the activation.

    Returns:
        Reconstruction ``[B, Pt, Ct]``, masks ``[B, K, h, w]`` and, when ``E > 0``, extras ``[B, Pt, E]``.
    """
    content = per_slot[..., :target_dim]  # [B, K, Pt, Ct]
    if content_activation is not None:
        content = content_activation(content)
    alpha = per_slot[..., target_dim : target_dim + 1].softmax(dim=1)  # [B, K, Pt, 1], softmax over slots
    reconstruction = (alpha * content).sum(dim=1)  # [B, Pt, Ct]
    extra = None
    if per_slot.shape[-1] > target_dim + 1:
        extra = (alpha * per_slot[..., target_dim + 1 :]).sum(dim=1)  # [B, Pt, E]
    masks = alpha.squeeze(-1).reshape(*alpha.shape[:2], *grid)  # [B, K, Pt] -> [B, K, h, w]
    return DecoderOutput(reconstruction=reconstruction, masks=masks, extra=extra)
