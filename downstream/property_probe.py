"""``property_probe``: what an object's slot says about the object, read out per slot (methods.md, section 12.2).

Each property has a read-out of its own on the slot vector: a categorical property (an object's shape, colour,
size class, texture) a single linear layer whose outputs are the classes' logits, trained with cross-entropy; a
continuous one (its position, velocity, box) ``Linear(D, D) -> ReLU -> Linear(D, k)``, trained with the mean
squared error, as the LSD / CODA probe does. The read-outs share nothing, so training them together is training
each alone. How well they do, on slots matched to objects they were not trained on, is how much of each property
the slots hold in a form a small network can read (:mod:`downstream.probes` trains and scores them).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from plugins.interfaces import Head


class PropertyProbe(Head):
    """Reads object properties out of each slot.

    Contract: ``forward(slots [..., D]) -> [..., P]`` (``[B, T, K, D]`` slot trajectories, or any leading axes):
    for each slot, the categorical properties' logits and then the continuous properties' values, in the order of
    :attr:`categorical` and then :attr:`continuous`, ``P`` the sum of their widths; :meth:`split` names them.

    Args:
        slot_dim: D, the width of the slots it reads.
        categorical: property name -> number of classes (a linear read-out each).
        continuous: property name -> number of values (an MLP of width ``slot_dim`` each).
    """

    name = "property_probe"

    def __init__(
        self,
        slot_dim: int,
        categorical: Mapping[str, int] | None = None,
        continuous: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.categorical = dict(categorical or {})
        self.continuous = dict(continuous or {})
        widths = {**self.categorical, **self.continuous}
        if slot_dim < 1 or not widths or min(widths.values()) < 1:
            raise ValueError("property_probe needs slot_dim >= 1 and at least one property, each of width >= 1")
        if len(widths) < len(self.categorical) + len(self.continuous):
            raise ValueError("a property cannot be both categorical and continuous")
        self.slot_dim = slot_dim
        self._widths = widths  # name -> output width, categorical properties first
        self.readouts = nn.ModuleDict()
        for name, classes in self.categorical.items():
            self.readouts[name] = nn.Linear(slot_dim, classes)
        for name, values in self.continuous.items():
            self.readouts[name] = nn.Sequential(nn.Linear(slot_dim, slot_dim), nn.ReLU(), nn.Linear(slot_dim, values))

    def constructor_kwargs(self) -> dict[str, int | dict[str, int]]:
        """The arguments this head was built with (what a saved head is built from again)."""
        return {"slot_dim": self.slot_dim, "categorical": dict(self.categorical), "continuous": dict(self.continuous)}

    def forward(self, slots: Tensor) -> Tensor:
        """Every property's read-out of each slot of ``slots`` ``[..., D]``, side by side: ``[..., P]``.

        Raises:
            ValueError: the slots are not this head's width.
        """
        if slots.ndim < 1 or slots.shape[-1] != self.slot_dim:
            raise ValueError(f"property_probe reads slots [..., {self.slot_dim}], got {list(slots.shape)}")
        return torch.cat([self.readouts[name](slots) for name in self._widths], dim=-1)

    def split(self, outputs: Tensor) -> dict[str, Tensor]:
        """:meth:`forward`'s ``[..., P]`` as one tensor ``[..., width]`` per property: logits for a categorical
        property, values for a continuous one."""
        return dict(zip(self._widths, torch.split(outputs, list(self._widths.values()), dim=-1), strict=True))


__all__ = ["PropertyProbe"]
