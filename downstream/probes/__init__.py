"""Property probes: how much of each object property a model's slots hold, read out by small networks
(:class:`~downstream.property_probe.PropertyProbe`) trained on slots matched to synthetic objects
(``python -m downstream.probes``).

Example:
    >>> from pathlib import Path
    >>> from downstream.probes import ProbeConfig, probe_model
    >>> result = probe_model(Path("service/models/default"), "medium", Path("runs/probe"), ProbeConfig())
    ... # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from downstream.probes.config import ProbeConfig
    from downstream.probes.pairs import MatchedSlots, collect_pairs, match_frame
    from downstream.probes.properties import PROPERTIES, ObjectProperty
    from downstream.probes.run import ProbeResult, load_probe, probe_model
    from downstream.probes.scores import PropertyScore, probe_scores
    from downstream.probes.training import fit_probe

_EXPORTS = {
    "collect_pairs": "downstream.probes.pairs",
    "fit_probe": "downstream.probes.training",
    "load_probe": "downstream.probes.run",
    "match_frame": "downstream.probes.pairs",
    "MatchedSlots": "downstream.probes.pairs",
    "ObjectProperty": "downstream.probes.properties",
    "probe_model": "downstream.probes.run",
    "probe_scores": "downstream.probes.scores",
    "ProbeConfig": "downstream.probes.config",
    "ProbeResult": "downstream.probes.run",
    "PROPERTIES": "downstream.probes.properties",
    "PropertyScore": "downstream.probes.scores",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "PROPERTIES",
    "MatchedSlots",
    "ObjectProperty",
    "ProbeConfig",
    "ProbeResult",
    "PropertyScore",
    "collect_pairs",
    "fit_probe",
    "load_probe",
    "match_frame",
    "probe_model",
    "probe_scores",
]
