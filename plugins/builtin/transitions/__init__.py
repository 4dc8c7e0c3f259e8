"""Built-in transitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.builtin.transitions.identity import IdentityTransition
from plugins.builtin.transitions.randsfq import RandSFQTransition
from plugins.builtin.transitions.transformer import TransformerTransition
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry


@hookimpl
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Register the built-in transitions."""
    registry.add_transition(RandSFQTransition)
    registry.add_transition(TransformerTransition)
    registry.add_transition(IdentityTransition)
