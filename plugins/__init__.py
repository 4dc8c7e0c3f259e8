"""slotstream's plugin contract and the recurrent video slot model.

Public surface: the ``hookimpl`` marker for plugin authors, the registry and plugin manager, the component
base classes, the typed outputs and :class:`VideoSlotModel`. Everything else is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
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
    from plugins.registry import (
        AmbiguousNameError,
        ComponentBuildError,
        ComponentKind,
        ComponentRegistry,
        DuplicateNameError,
        RegistryError,
    )
    from plugins.types import (
        AggregatorOutput,
        DecoderOutput,
        EncoderOutput,
        InitializerOutput,
        SlotState,
        StepOutput,
        VideoOutput,
    )

_EXPORTS = {
    "Aggregator": "plugins.interfaces",
    "AggregatorOutput": "plugins.types",
    "AmbiguousNameError": "plugins.registry",
    "build_plugin_manager": "plugins.manager",
    "Component": "plugins.interfaces",
    "ComponentBuildError": "plugins.registry",
    "ComponentKind": "plugins.registry",
    "ComponentRegistry": "plugins.registry",
    "ComponentSpec": "plugins.config",
    "ContractViolation": "plugins.interfaces",
    "Decoder": "plugins.interfaces",
    "DecoderOutput": "plugins.types",
    "default_registry": "plugins.manager",
    "DuplicateNameError": "plugins.registry",
    "Encoder": "plugins.interfaces",
    "EncoderOutput": "plugins.types",
    "Head": "plugins.interfaces",
    "hookimpl": "plugins.hookspecs",
    "Initializer": "plugins.interfaces",
    "InitializerOutput": "plugins.types",
    "Loss": "plugins.interfaces",
    "PluginSetup": "plugins.manager",
    "RegistryError": "plugins.registry",
    "SlotState": "plugins.types",
    "StepOutput": "plugins.types",
    "Transition": "plugins.interfaces",
    "VideoOutput": "plugins.types",
    "VideoSlotModel": "plugins.model",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "Aggregator",
    "AggregatorOutput",
    "AmbiguousNameError",
    "Component",
    "ComponentBuildError",
    "ComponentKind",
    "ComponentRegistry",
    "ComponentSpec",
    "ContractViolation",
    "Decoder",
    "DecoderOutput",
    "DuplicateNameError",
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
