"""Training a ``slotformer`` dynamics head on trajectory files (:func:`fit_dynamics`): windows of consecutive
frames from the training files, the rollout from each window's first ``history`` frames regressed onto the rest
(mean squared error over every step, the head's own predictions fed back), and the held-out files scored at the
end against repeating the last observed frame (their chart: :data:`ROLLOUT_CHART` in the head's folder)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from downstream.dynamics.chart import save_rollout_chart
from downstream.dynamics.config import DynamicsConfig
from downstream.dynamics.folder import save_dynamics
from downstream.dynamics.scores import RolloutScores, rollout_scores
from downstream.dynamics.windows import TrajectoryError, split_files, trajectory_windows
from downstream.head_folder import check_head_folder
from downstream.slotformer import SlotFormer
from training.schedule import warmup_cosine

ROLLOUT_CHART = "rollout.png"
"""The chart of the held-out scores that :func:`fit_dynamics` saves beside the head."""


@dataclass(frozen=True)
class DynamicsResult:
    """What :func:`fit_dynamics` trained.

    Attributes:
        folder: where the head was saved (:func:`~downstream.dynamics.folder.load_dynamics` reads it).
        train_files: trajectory files it trained on.
        held_out_files: trajectory files kept out and scored.
        train_windows: windows it trained on.
        final_loss: the training loss of the last step.
        seconds: training time.
        scores: its rollout error on the held-out files' windows (``None`` when none was held out or they have
            no window).
    """

    folder: Path
    train_files: list[Path]
    held_out_files: list[Path]
    train_windows: int
    final_loss: float
    seconds: float
    scores: RolloutScores | None


def fit_dynamics(files: Sequence[Path], out: Path, config: DynamicsConfig, progress: bool = True) -> DynamicsResult:
    """Train a ``slotformer`` head on the trajectory ``files`` and save it in ``out``.

    Raises:
        TrajectoryError: a file cannot be used, or the training files hold no window of ``history + rollout``
            consecutive frames (the message says how many frames that is).
        ValueError: ``out`` holds something else than a head (a model folder), checked before training
            (:func:`~downstream.head_folder.check_head_folder`).
    """
    check_head_folder(out, SlotFormer.name)
    train_files, held_out_files = split_files(files, config.held_out, config.seed)
    train = trajectory_windows(train_files, config.window, config.stride)
    held_out = trajectory_windows(held_out_files, config.window, config.window)  # read before training: a file
    train.check_same_model(held_out)  # of another model among them is refused now, not after every step
    if len(train.slots) == 0:
        raise TrajectoryError(
            f"no training file has {config.window} consecutive frames (history {config.history} + rollout "
            f"{config.rollout}): use longer trajectories, or a shorter --history or --rollout"
        )
    torch.manual_seed(config.seed)
    head = SlotFormer(**config.head_kwargs(train.slots.shape[-1]))
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, config.steps, config.warmup_fraction, 0.0)
    )
    windows = torch.from_numpy(train.slots)  # [N, F, K, D]
    batches = np.random.default_rng(config.seed)
    started, loss_value = time.perf_counter(), math.nan
    head.train()
    bar = tqdm(range(config.steps), desc="dynamics", disable=not progress)
    for _ in bar:
        batch = windows[batches.integers(0, len(windows), config.batch_size)]  # [B, F, K, D]
        observed, future = batch[:, : config.history], batch[:, config.history :]
        loss: torch.Tensor = F.mse_loss(head.roll_out(observed, config.rollout), future)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        loss_value = loss.detach().item()
        bar.set_postfix(loss=f"{loss_value:.4g}")
    seconds = time.perf_counter() - started
    scores = rollout_scores(head, held_out.slots) if len(held_out.slots) else None
    record = {
        "training": config.to_json(),
        "train_files": [path.name for path in train_files],
        "held_out_files": [path.name for path in held_out_files],
        "train_windows": len(train.slots),
        "final_loss": loss_value,
        "seconds": round(seconds, 1),
        "held_out_scores": scores.to_json() if scores is not None else None,
    }
    save_dynamics(head, out, record)
    if scores is not None:
        save_rollout_chart(scores, out / ROLLOUT_CHART, f"held-out rollout error, {scores.windows} windows")
    else:  # a head saved over an earlier one: its chart would stand for this head
        (out / ROLLOUT_CHART).unlink(missing_ok=True)
    return DynamicsResult(out, train_files, held_out_files, len(train.slots), loss_value, seconds, scores)


__all__ = ["DynamicsResult", "fit_dynamics"]
