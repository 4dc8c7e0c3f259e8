"""Held-out losses: the run's own weighted loss terms on evaluation videos that have no masks.

A run whose ``--val-data`` holds recordings without labels (``videos:<dir>`` of a camera's footage) cannot be
scored, so each of its evaluations computes instead the losses it trains with, on those videos: ``val_<term>``
per loss term (unweighted, as training lines log them) and ``val_loss``, the weighted total of the terms that
measure how the model fits the video, leaving out the terms in :data:`SELF_DISTILLATION`. The run's best model
(``best/``) is then the one with the lowest ``val_loss`` (:func:`training.best.update_best_by_loss`).

How they are computed, so that every evaluation measures the same thing and the numbers can be reproduced from a
saved model:

- The model runs in eval mode under ``torch.no_grad``, as it is served and scored: its initialisers use their
  fixed noise, the transition its inference path. The built-in losses only read what an eval-mode output holds.
  A loss that cannot be computed on an eval-mode output (one that needs an output only training makes) is left
  out with a note (:attr:`HeldOutLosses.skipped`) rather than computed in train mode: train mode draws noise and
  would make the number depend on the random state. What an output holds does not depend on the weights, so such
  a term is left out of every evaluation alike and ``val_loss`` stays comparable from one to the next.
- The random generators are seeded with the run's seed for the evaluation and restored afterwards, so a loss or
  component that draws random numbers draws the same ones every time, and the training randomness is not moved.
- Each loss is given the training progress 1 (training finished), so a loss with its own ramp (such as
  ``attention_distillation``) weighs the same at every evaluation: with the run's current progress a ramp that
  grows would make later evaluations look worse.
- Each video (cut to ``val_frames``, as the validation data is built) runs alone, as a batch of one; a term is
  the mean of its per-video values over the videos, and ``val_loss`` the sum of those means times the terms'
  weights, as the training step sums its terms, but without the :data:`SELF_DISTILLATION` terms. A
  batch-contrastive term (``slot_contrast``) therefore contrasts the slots of one video only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from plugins import VideoSlotModel
from plugins.interfaces import Loss
from training.datasets import VideoClip

LOSS_METRIC = "val_loss"
"""The name of the held-out weighted total on an evaluation line and in ``selection.json``."""

SELF_DISTILLATION = frozenset({"preheat_mse", "attention_distillation"})
"""Loss terms whose targets are the model's own outputs: SmoothSA's preheater regressed onto the slots, DIAS's first
iteration's attention onto the last's. A lower value says the model's parts agree with each other, not that it fits
unseen video better, and weighted as the recipes weight them (``preheat_mse`` at 100 against reconstruction's 1)
they would decide ``val_loss`` alone; they are recorded (``val_<term>``) but not summed into it."""

LOSS_PROGRESS = 1.0
"""The training progress every held-out loss is computed at (see the module docstring)."""


@dataclass(frozen=True)
class HeldOutLosses:
    """The losses of one evaluation on videos without masks.

    Attributes:
        total: the weighted sum of the terms' means, those of :data:`SELF_DISTILLATION` left out (NaN when it is
            not finite or no such term could be computed).
        terms: each loss term's mean over the videos, unweighted, by name (None for a term in ``skipped``).
        num_videos: the videos computed on.
        num_frames: their frames, all together.
        skipped: the terms that could not be computed on an eval-mode output, with the error each raised.
    """

    total: float
    terms: dict[str, float | None]
    num_videos: int
    num_frames: int
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float | int | None]:
        """What an evaluation line and ``selection.json`` record: ``val_loss``, ``val_<term>`` per term (None when
        skipped; NaN as None), ``num_videos`` and ``num_frames``."""
        values: dict[str, float | int | None] = {LOSS_METRIC: _finite_or_none(self.total)}
        values.update({f"val_{name}": _finite_or_none(value) for name, value in self.terms.items()})
        values.update(num_videos=self.num_videos, num_frames=self.num_frames)
        return values


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def held_out_losses(
    model: VideoSlotModel,
    losses: Sequence[tuple[str, float, Loss]],
    videos: Dataset[VideoClip],
    *,
    seed: int,
    device: str | torch.device = "cpu",
) -> HeldOutLosses:
    """The weighted ``losses`` (name, weight, loss: a run's ``Run.losses``) of ``model`` on each of ``videos``,
    as the module docstring describes. The model's training mode and the random generators' states are restored
    when it returns.

    Raises:
        ValueError: ``videos`` is empty.
    """
    count = len(videos)  # type: ignore[arg-type]
    if count == 0:
        raise ValueError("no video to compute the held-out losses on")
    sums = {name: 0.0 for name, _, _ in losses}
    skipped: dict[str, str] = {}
    frames_seen = 0
    was_training = model.training
    model.eval()
    try:
        with _seeded(seed, device), torch.no_grad():
            for index in range(count):
                frames = videos[index].frames.unsqueeze(0).to(device)  # [T, 3, H, W] -> [1, T, 3, H, W]
                frames_seen += frames.shape[1]
                output = model(frames)
                for name, _, loss in losses:
                    if name in skipped:
                        continue
                    try:
                        value = loss(output, LOSS_PROGRESS)
                        sums[name] += _scalar(name, value)
                    except Exception as error:  # a loss that needs what only training outputs hold: left out
                        skipped[name] = f"{type(error).__name__}: {error}"
    finally:
        model.train(was_training)
    terms: dict[str, float | None] = {name: None if name in skipped else sums[name] / count for name in sums}
    computed = [
        (weight, value)
        for name, weight, _ in losses
        if name not in SELF_DISTILLATION and (value := terms[name]) is not None
    ]
    total = sum(weight * value for weight, value in computed) if computed else math.nan  # as the training step sums
    return HeldOutLosses(total if math.isfinite(total) else math.nan, terms, count, frames_seen, skipped)


def _scalar(name: str, value: object) -> float:
    """The float of a loss's ``value``, which the loss contract makes a 0-dim tensor.

    Raises:
        ValueError: ``value`` is not a 0-dim tensor (the message names the loss).
    """
    if not (isinstance(value, torch.Tensor) and value.ndim == 0):
        raise ValueError(f"the loss {name!r} returned {type(value).__name__}, not a scalar tensor")
    return float(value.item())


@contextlib.contextmanager
def _seeded(seed: int, device: str | torch.device) -> Iterator[None]:
    """The CPU generator, and the current CUDA device's when ``device`` is a CUDA one, seeded with ``seed`` for the
    context and put back as they were afterwards."""
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)
        yield
