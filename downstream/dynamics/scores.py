"""How well a dynamics head predicts slots (:func:`rollout_scores`): the mean squared error of its rollout at each
step ahead, next to the error of repeating the last observed frame's slots, the baseline any dynamics model must
beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from downstream.slotformer import SlotFormer


@dataclass(frozen=True)
class RolloutScores:
    """A head's rollout error on held-out windows.

    Attributes:
        windows: windows scored.
        mse: mean squared error of the predicted slots at each step ahead (``[rollout]``: 1, 2, ... frames).
        copy_last_mse: the same for the last observed frame's slots repeated.
    """

    windows: int
    mse: list[float]
    copy_last_mse: list[float]

    @property
    def mean_mse(self) -> float:
        """:attr:`mse` averaged over the steps."""
        return float(np.mean(self.mse))

    @property
    def mean_copy_last_mse(self) -> float:
        """:attr:`copy_last_mse` averaged over the steps."""
        return float(np.mean(self.copy_last_mse))

    def to_json(self) -> dict[str, Any]:
        """The scores as a JSON object (the means too)."""
        return {
            "windows": self.windows,
            "mse": self.mse,
            "copy_last_mse": self.copy_last_mse,
            "mean_mse": self.mean_mse,
            "mean_copy_last_mse": self.mean_copy_last_mse,
        }


def rollout_scores(head: SlotFormer, windows: np.ndarray, batch_size: int = 64) -> RolloutScores:
    """Score ``head`` on ``windows`` float32 ``[N, history + rollout, K, D]``: its rollout from the first
    ``history`` frames of each against the last ``rollout`` (in eval mode, without gradients).

    Raises:
        ValueError: no window, or windows of another length than the head's ``history + rollout``.
    """
    count, frames = windows.shape[:2]
    if count == 0 or frames != head.history + head.rollout:
        raise ValueError(
            f"scoring needs at least one window of {head.history + head.rollout} frames, got {list(windows.shape)}"
        )
    squared = np.zeros(head.rollout)
    copied = np.zeros(head.rollout)
    was_training = head.training
    head.eval()
    with torch.no_grad():
        for start in range(0, count, batch_size):
            batch = torch.from_numpy(windows[start : start + batch_size])  # [b, F, K, D]
            observed, future = batch[:, : head.history], batch[:, head.history :]  # [b, L, K, D], [b, R, K, D]
            predicted = head.roll_out(observed, head.rollout)  # [b, R, K, D]
            squared += ((predicted - future) ** 2).mean(dim=(2, 3)).sum(dim=0).numpy()  # [b, R] -> [R]
            copied += ((observed[:, -1:] - future) ** 2).mean(dim=(2, 3)).sum(dim=0).numpy()  # [b, R] -> [R]
    head.train(was_training)
    return RolloutScores(count, (squared / count).tolist(), (copied / count).tolist())


__all__ = ["RolloutScores", "rollout_scores"]
