"""Built-in training losses (unweighted; training configs attach the weights)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.builtin.losses.distillation import AttentionDistillationLoss
from plugins.builtin.losses.preheat import PreheatLoss
from plugins.builtin.losses.reconstruction import ReconstructionLoss
from plugins.builtin.losses.slot_contrast import SlotContrastLoss
from plugins.builtin.losses.time_similarity import TimeSimilarityLoss
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in losses."""
    registry.add_loss(ReconstructionLoss)
    registry.add_loss(PreheatLoss)
    registry.add_loss(SlotContrastLoss)
    registry.add_loss(TimeSimilarityLoss)
    registry.add_loss(AttentionDistillationLoss)
