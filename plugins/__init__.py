"""slotstream's plugin contract and the recurrent video slot model.

Public surface: the ``hookimpl`` marker for plugin authors, the registry and plugin manager, the component
base classes, the typed outputs and :class:`VideoSlotModel`. Everything else is internal.
"""

from __future__ import annotations

from plugins.config import ComponentSpec
from plugins.hookspecs import hookimpl
from plugins.interfaces import (
    Aggregator,
    Component,
    ContractViolation,
    Decoder,
    Encoder,
    Head,
    Initializer,
    Loss,
    Transition,
)
from plugins.manager import PluginSetup, build_plugin_manager, default_registry
from plugins.model import VideoSlotModel
from plugins.registry import ComponentBuildError, ComponentKind, ComponentRegistry, RegistryError
from plugins.types import (
    AggregatorOutput,
    DecoderOutput,
    EncoderOutput,
    InitializerOutput,
    SlotState,
    StepOutput,
    VideoOutput,
)

__all__ = [
    "Aggregator",
    "AggregatorOutput",
    "Component",
    "ComponentBuildError",
    "ComponentKind",
    "ComponentRegistry",
    "ComponentSpec",
    "ContractViolation",
    "Decoder",
    "DecoderOutput",
    "Encoder",
    "EncoderOutput",
    "Head",
    "Initializer",
    "InitializerOutput",
    "Loss",
    "PluginSetup",
    "RegistryError",
    "SlotState",
    "StepOutput",
    "Transition",
    "VideoOutput",
    "VideoSlotModel",
    "build_plugin_manager",
    "default_registry",
    "hookimpl",
]
