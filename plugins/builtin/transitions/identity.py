"""``identity``: the previous frame's slots are the next frame's queries."""

from __future__ import annotations

from plugins.interfaces import Transition
from plugins.types import Features, Slots


class IdentityTransition(Transition):
    """No dynamics: ``queries_t = slots_{t-1}``."""

    name = "identity"

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Return the last slot set unchanged."""
        del past_features  # Unused.
        return past_slots[-1]
