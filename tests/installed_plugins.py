"""A third-party plugin as the plugin manager finds it once installed: a distribution with real ``.dist-info``
metadata (name, version, a ``slotstream`` entry point) whose module registers a transition or a loss; and a
transition such a plugin could ship."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path

import pytest
import torch

from plugins import ComponentRegistry, Loss, Transition, build_plugin_manager, hookimpl
from plugins.types import Features, Slots


class ProjectedPrevious(Transition):
    """A plugin's transition: the previous slots through a linear projection. Subclasses give it the registry
    ``name`` their tests install it under."""

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(slot_dim, slot_dim)

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Project the previous slots."""
        del past_features  # Unused.
        return self.projection(past_slots[-1])


def installed_transition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str, version: str, transition: type[Transition]
) -> ComponentRegistry:
    """The registry of a plugin manager that found distribution ``<plugin>-dist`` at ``version``, whose entry point
    ``plugin`` registers ``transition`` (the only entry point it finds, for the test)."""
    return _installed(tmp_path, monkeypatch, plugin, version, transition)


def installed_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str, version: str, loss: type[Loss]
) -> ComponentRegistry:
    """As :func:`installed_transition`, for a plugin whose entry point registers the loss ``loss``."""
    return _installed(tmp_path, monkeypatch, plugin, version, loss)


def _installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str, version: str, component: type[Transition | Loss]
) -> ComponentRegistry:
    module = types.ModuleType(f"{plugin}_plugin_{version.replace('.', '_')}_{component.__name__}")

    @hookimpl
    def slotstream_register_components(registry: ComponentRegistry) -> None:
        if issubclass(component, Loss):
            registry.add_loss(component)
        else:
            registry.add_transition(component)

    module.slotstream_register_components = slotstream_register_components  # type: ignore[attr-defined]
    info = tmp_path / "dists" / module.__name__ / f"{plugin}_dist-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {plugin}-dist\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[slotstream]\n{plugin} = {module.__name__}\n")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    entry_points = list(importlib.metadata.PathDistribution(info).entry_points)
    monkeypatch.setattr("plugins.manager._entry_points", lambda: entry_points)
    return build_plugin_manager().registry
