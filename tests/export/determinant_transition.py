"""A test-only transition whose graph has an operator TensorRT lacks: it shifts the slots by the determinant of
their first 2x2 block (ONNX ``Det``, which ONNX Runtime runs and TensorRT's parser does not take)."""

from __future__ import annotations

import torch

from plugins import ComponentRegistry, Transition, build_plugin_manager


class DeterminantTransition(Transition):
    """Shifts the slots by the determinant of their first 2x2 block (ONNX ``Det``)."""

    name = "determinant"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        slots = past_slots[-1]  # [B, K, D]
        return slots + 0.1 * torch.linalg.det(slots[:, :2, :2])[:, None, None]


def determinant_registry() -> ComponentRegistry:
    """The built-in components plus :class:`DeterminantTransition` (no installed plugins)."""
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_transition(DeterminantTransition)
    return registry
