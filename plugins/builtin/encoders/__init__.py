"""Built-in encoders: ``small_cnn`` (CPU default) and ``dinov2`` (frozen DINOv2 ViT-S/14 with registers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.builtin.encoders.dinov2 import DINOv2Encoder
from plugins.builtin.encoders.small_cnn import SmallCNNEncoder
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in encoders."""
    registry.add_encoder(SmallCNNEncoder)
    registry.add_encoder(DINOv2Encoder)
