"""The built-in heads, registered through the same hook as third-party plugins (a module of
:data:`plugins.builtin.DEFAULT_PLUGINS`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from downstream.aloe import Aloe
from downstream.property_probe import PropertyProbe
from downstream.slotformer import SlotFormer
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in heads."""
    registry.add_head(SlotFormer)
    registry.add_head(PropertyProbe)
    registry.add_head(Aloe)
