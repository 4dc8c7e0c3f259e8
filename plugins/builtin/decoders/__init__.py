"""Built-in decoders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.builtin.decoders.ar_random import RandomOrderTransformerDecoder
from plugins.builtin.decoders.broadcast import SpatialBroadcastDecoder
from plugins.builtin.decoders.mlp import MLPFeatureDecoder
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in decoders."""
    registry.add_decoder(SpatialBroadcastDecoder)
    registry.add_decoder(MLPFeatureDecoder)
    registry.add_decoder(RandomOrderTransformerDecoder)
