"""The object properties a probe reads out of slots, from the synthetic videos' ground truth
(:mod:`training.datasets.synthetic.metadata`): four categorical ones, the object's static attributes, and three
continuous ones, its state in the frame, in normalised image coordinates (x to the right, y down)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from training.datasets.synthetic.levels import COLOURS, SHAPES, SIZES, TEXTURES
from training.datasets.synthetic.metadata import ObjectInfo, ObjectState


@dataclass(frozen=True)
class ObjectProperty:
    """One property of an object in a frame.

    Attributes:
        name: its name in reports and in the probe.
        classes: the values of a categorical property, in class-index order; empty for a continuous one.
        width: the number of values of a continuous property (the number of classes of a categorical one).
        read: its value for an object and its state in the frame: a class name, or ``width`` floats.
        meaning: what it is, for reports.
    """

    name: str
    classes: tuple[str, ...]
    width: int
    read: Callable[[ObjectInfo, ObjectState], str | tuple[float, ...]]
    meaning: str

    @property
    def categorical(self) -> bool:
        """Whether the property is a class (else a vector of numbers)."""
        return bool(self.classes)


def _categorical(name: str, classes: tuple[str, ...], read: Callable[[ObjectInfo], str]) -> ObjectProperty:
    return ObjectProperty(name, classes, len(classes), lambda info, state: read(info), f"one of {len(classes)}")


PROPERTIES: tuple[ObjectProperty, ...] = (
    _categorical("shape", SHAPES, lambda info: info.shape),
    _categorical("colour", tuple(COLOURS), lambda info: info.colour),
    _categorical("size", tuple(SIZES), lambda info: info.size),
    _categorical("texture", TEXTURES, lambda info: info.texture),
    ObjectProperty("position", (), 2, lambda info, state: state.center_norm, "centre (x, y), normalised"),
    ObjectProperty("velocity", (), 2, lambda info, state: state.velocity_norm, "(vx, vy) per frame, normalised"),
    ObjectProperty("box", (), 4, lambda info, state: state.bbox_norm, "amodal box (x0, y0, x1, y1), normalised"),
)
"""Every property, categorical ones first."""


def property_named(name: str) -> ObjectProperty:
    """The property called ``name``.

    Raises:
        ValueError: no such property (the message lists them).
    """
    for prop in PROPERTIES:
        if prop.name == name:
            return prop
    raise ValueError(f"no property {name!r}; the properties are {', '.join(p.name for p in PROPERTIES)}")


__all__ = ["PROPERTIES", "ObjectProperty", "property_named"]
