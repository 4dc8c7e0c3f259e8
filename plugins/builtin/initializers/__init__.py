"""Built-in first-frame query initializers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.builtin.initializers.gaussian import GaussianPerSlot, GaussianShared
from plugins.builtin.initializers.preheat import SmoothSAPreheat
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in initializers."""
    registry.add_initializer(GaussianShared)
    registry.add_initializer(GaussianPerSlot)
    registry.add_initializer(SmoothSAPreheat)
