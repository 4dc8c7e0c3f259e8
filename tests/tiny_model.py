"""The tiny model config shared by the plugin and model tests (a plain module: ``conftest`` names are not unique)."""

from __future__ import annotations

from plugins.testing import TINY_MODEL

__all__ = ["TINY_MODEL"]
