"""A property probe's settings (:class:`ProbeConfig`): which properties, on which videos, trained how."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from downstream.probes.pairs import MIN_IOU
from downstream.probes.properties import PROPERTIES, ObjectProperty, property_named


@dataclass(frozen=True)
class ProbeConfig:
    """How a ``property_probe`` head is trained and scored (methods.md, section 12.2: the LSD / CODA probe trains
    full-batch AdamW at 1e-3 for 4,000 steps, and scores held-out pairs).

    Attributes:
        properties: the properties read out (:data:`~downstream.probes.properties.PROPERTIES`' names).
        train_videos: train-split videos of the synthetic level whose matched slots the probe trains on.
        test_videos: validation videos whose matched slots it is scored on (the level's fixed validation set, 64
            videos, is the default; the train and validation videos never share a seed).
        steps: full-batch optimiser steps.
        lr: AdamW's learning rate (constant).
        weight_decay: AdamW's weight decay (PyTorch's default).
        min_iou: IoU a slot's mask must exceed with an object for the two to be a pair.
        seed: the train videos' dataset seed and the probe's initial weights.
    """

    properties: tuple[str, ...] = tuple(prop.name for prop in PROPERTIES)
    train_videos: int = 256
    test_videos: int = 64
    steps: int = 4000
    lr: float = 1e-3
    weight_decay: float = 0.01
    min_iou: float = MIN_IOU
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= 1, got {getattr(self, name)}"
            for name in ("train_videos", "test_videos", "steps")
            if getattr(self, name) < 1
        ]
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.min_iou < 1:
            problems.append(f"min_iou must be in [0, 1), got {self.min_iou}")
        if not self.properties:
            problems.append("properties must name at least one property")
        if len(set(self.properties)) < len(self.properties):
            problems.append(f"properties must not repeat a name, got {', '.join(self.properties)}")
        try:
            self.chosen()
        except ValueError as error:
            problems.append(str(error))
        if problems:
            raise ValueError("invalid probe config: " + "; ".join(problems))

    def chosen(self) -> tuple[ObjectProperty, ...]:
        """The properties read out, in :data:`~downstream.probes.properties.PROPERTIES`' order.

        Raises:
            ValueError: a name is not a property.
        """
        named = {property_named(name).name for name in self.properties}
        return tuple(prop for prop in PROPERTIES if prop.name in named)

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object."""
        return dataclasses.asdict(self) | {"properties": list(self.properties)}


__all__ = ["ProbeConfig"]
