"""Scores computed the plain way (each clip through the model in eval mode, decoder masks into the metric), for
tests that check the evaluation functions against them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plugins import VideoSlotModel
from training.datasets import VideoClip
from training.metrics import ObjectDiscoveryMetrics
from training.metrics.overlap import BackgroundPolicy


def reference_scores(
    model: VideoSlotModel, clips: Sequence[VideoClip], keys: Sequence[str], background: BackgroundPolicy = "ignore"
) -> dict[str, float]:
    """The ``keys`` of the scores of the model's decoder masks on ``clips``, one video at a time, under
    ``background``, with the model in eval mode; the model's training mode is restored afterwards, so a test that
    then calls the evaluation on it still checks that the evaluation switches to eval mode itself."""
    was_training = model.training
    model.eval()
    try:
        metrics = ObjectDiscoveryMetrics(background=background)
        for clip in clips:
            with torch.inference_mode():
                output = model(clip.frames.unsqueeze(0))  # [1, T, 3, H, W]
            assert clip.masks is not None
            metrics.update(output.masks.float(), clip.masks.unsqueeze(0))
    finally:
        model.train(was_training)
    scores = metrics.compute()
    return {key: getattr(scores, key) for key in keys}
