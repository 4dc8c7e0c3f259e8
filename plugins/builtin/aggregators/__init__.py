"""Built-in aggregators."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in aggregators."""
    registry.add_aggregator(SlotAttention)
