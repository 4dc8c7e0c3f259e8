"""Training, evaluation and export of slotstream models.

Public surface: :class:`TrainConfig` (an experiment, as ``training/configs/`` ships them), :func:`fit` (the training
loop ``python -m training.run`` runs) and its :class:`FitResult`, and :class:`DiscoveryScores` (what ``python -m
training.evaluate`` reports; :func:`training.evaluation.evaluate` computes them: the name ``evaluate`` is the
command's module here). Exports are in :mod:`training.export`, datasets in :mod:`training.datasets`. Names are
imported on first use, so ``import training`` loads no torch.

Example:
    >>> from training import TrainConfig, fit
    >>> from training.configs import tiny
    >>> result = fit(tiny.get_config(), "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.loop import FitResult, fit
    from training.metrics import DiscoveryScores

_EXPORTS = {
    "DiscoveryScores": "training.metrics",
    "fit": "training.loop",
    "FitResult": "training.loop",
    "TrainConfig": "training.config",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["DiscoveryScores", "FitResult", "TrainConfig", "fit"]
