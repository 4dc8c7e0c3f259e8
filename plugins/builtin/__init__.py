"""Built-in components, registered through the same hook as third-party plugins."""

from __future__ import annotations

DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.builtin.encoders",
    "plugins.builtin.initializers",
    "plugins.builtin.aggregators",
    "plugins.builtin.transitions",
    "plugins.builtin.decoders",
    "plugins.builtin.losses",
    "downstream.heads",
)
"""Module names of the built-in plugins, in registration order."""
