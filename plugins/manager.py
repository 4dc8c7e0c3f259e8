"""Building the plugin manager and the registry it fills.

Everything happens inside :func:`build_plugin_manager`; importing this module does nothing.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

import pluggy

from plugins import hookspecs
from plugins.builtin import DEFAULT_PLUGINS
from plugins.registry import ComponentRegistry

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
"""Distributions advertise plugins in this entry-point group."""

BLOCK_ENV_VAR = "SLOTSTREAM_DISABLE_PLUGINS"
"""Comma-separated plugin names (entry-point names or built-in module names) that must not load."""


@dataclass
class PluginSetup:
    """A built plugin manager and the registry it filled.

    Attributes:
        manager: the pluggy manager; plugins are registered under their entry-point or module names.
        registry: every component the plugins registered.
        external: names of plugins loaded from entry points.
        blocked: names that were blocked.
    """

    manager: pluggy.PluginManager
    registry: ComponentRegistry
    external: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def build_plugin_manager(*, load_entry_points: bool = True, blocked: list[str] | None = None) -> PluginSetup:
    """Create a plugin manager with the built-ins and installed plugins, and fill a registry.

    Steps: add the hook specs; register the built-in plugin modules of :data:`plugins.builtin.DEFAULT_PLUGINS`
    (through the same hook as third-party plugins); block the names given in ``blocked`` and in the
    ``SLOTSTREAM_DISABLE_PLUGINS`` environment variable; load entry points of the ``slotstream`` group;
    ``check_pending()`` (an implementation without a matching spec is an error); then call
    ``slotstream_register_components`` once per plugin, in registration order.

    Args:
        load_entry_points: load installed third-party plugins (tests turn this off for a clean slate).
        blocked: extra plugin names to block.

    Returns:
        The manager and the filled registry.

    Example:
        >>> setup = build_plugin_manager()
        >>> "slot_attention" in setup.registry.names("aggregators")
        True
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    blocked_names = sorted({*(blocked or []), *_names_from_env()})
    for name in blocked_names:
        manager.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        if not manager.is_blocked(module_name):
            manager.register(importlib.import_module(module_name), name=module_name)
    external: list[str] = []
    if load_entry_points:
        before = set(manager.get_plugins())
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        external = sorted(str(manager.get_name(plugin)) for plugin in manager.get_plugins() if plugin not in before)
    manager.check_pending()
    registry = ComponentRegistry()
    plugins_in_order = manager.list_name_plugin()
    for name, plugin in plugins_in_order:
        if plugin is None or not hasattr(plugin, "slotstream_register_components"):
            continue
        # One hook call per plugin, through pluggy, so a duplicate name can be blamed on the plugin adding it.
        others = [other for _, other in plugins_in_order if other is not None and other is not plugin]
        registry.current_plugin = name or repr(plugin)
        manager.subset_hook_caller("slotstream_register_components", remove_plugins=others)(registry=registry)
    registry.current_plugin = "<direct>"
    return PluginSetup(manager=manager, registry=registry, external=external, blocked=blocked_names)


def _names_from_env() -> list[str]:
    raw = os.environ.get(BLOCK_ENV_VAR, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


_default_registry: ComponentRegistry | None = None


def default_registry() -> ComponentRegistry:
    """The registry of a plugin manager built once per process with the default options (lazily)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = build_plugin_manager().registry
    return _default_registry
