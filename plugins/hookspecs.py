"""Hook specifications: the plugin author's reference.

A plugin is a module (or object) with functions named after these specs and decorated with
:data:`plugins.hookimpl`. Hooks are called with keyword arguments only; an implementation may accept fewer
arguments than its spec, so specs can grow without breaking plugins. Hooks are for wiring: they run when a
plugin manager is built, never per frame.

Packaging a plugin: declare an entry point in the ``slotstream`` group of your distribution, e.g. in its
``pyproject.toml``::

    [project.entry-points.slotstream]
    my_plugin = "my_package.plugin"

and implement a hook in ``my_package/plugin.py``::

    from plugins import hookimpl

    @hookimpl
    def slotstream_register_components(registry):
        registry.add_decoder(MyDecoder)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from plugins.registry import ComponentRegistry

PROJECT_NAME = "slotstream"
"""The pluggy project name: hook prefix ``slotstream_`` and entry-point group ``slotstream``."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------------------------
# Registration: runs once, while the plugin manager is built.
# -------------------------------------------------------------------------------------------------------------


@hookspec
def slotstream_register_components(registry: ComponentRegistry) -> None:
    """Add component classes (encoders, initializers, aggregators, transitions, decoders, losses, heads).

    Called once per plugin manager, for built-in and external plugins alike, in registration order
    (built-ins first, then installed plugins sorted by entry-point name and distribution). Each class carries
    its registry ``name``; adding a name a built-in plugin holds (or one the same plugin added) raises an error
    naming both plugins, which leaves the installed plugin out. A name that two installed plugins both add
    becomes ambiguous: both plugins load, and a model asking for that name fails, naming both plugins, until
    all but one are blocked.

    Args:
        registry: the :class:`~plugins.registry.ComponentRegistry` to fill, through ``registry.add_encoder``,
            ``add_initializer``, ``add_aggregator``, ``add_transition``, ``add_decoder``, ``add_loss`` and
            ``add_head``.

    Returns:
        Nothing; results are ignored. Not ``firstresult``: every plugin's implementation runs.

    .. versionadded:: 0.1
    """
