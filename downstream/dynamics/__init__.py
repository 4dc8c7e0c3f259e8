"""A dynamics head for slot trajectories: SlotFormer's rollouter (:class:`~downstream.slotformer.SlotFormer`)
trained on the ``.npz`` trajectories the service writes (``python -m downstream.dynamics``).

Example:
    >>> from pathlib import Path
    >>> from downstream.dynamics import DynamicsConfig, fit_dynamics, trajectory_files
    >>> result = fit_dynamics(trajectory_files(Path("trajectories")), Path("runs/dynamics"), DynamicsConfig())
    ... # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from downstream.dynamics.config import DynamicsConfig
    from downstream.dynamics.folder import load_dynamics, save_dynamics
    from downstream.dynamics.scores import RolloutScores, rollout_scores
    from downstream.dynamics.training import DynamicsResult, fit_dynamics
    from downstream.dynamics.windows import TrajectoryError, Windows, trajectory_files, trajectory_windows

_EXPORTS = {
    "DynamicsConfig": "downstream.dynamics.config",
    "DynamicsResult": "downstream.dynamics.training",
    "fit_dynamics": "downstream.dynamics.training",
    "load_dynamics": "downstream.dynamics.folder",
    "RolloutScores": "downstream.dynamics.scores",
    "rollout_scores": "downstream.dynamics.scores",
    "save_dynamics": "downstream.dynamics.folder",
    "trajectory_files": "downstream.dynamics.windows",
    "trajectory_windows": "downstream.dynamics.windows",
    "TrajectoryError": "downstream.dynamics.windows",
    "Windows": "downstream.dynamics.windows",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "DynamicsConfig",
    "DynamicsResult",
    "RolloutScores",
    "TrajectoryError",
    "Windows",
    "fit_dynamics",
    "load_dynamics",
    "rollout_scores",
    "save_dynamics",
    "trajectory_files",
    "trajectory_windows",
]
