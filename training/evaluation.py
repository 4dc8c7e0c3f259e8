"""Object-discovery evaluation of a model on a dataset (shared by training and ``training.evaluate``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from plugins import VideoOutput, VideoSlotModel
from training.datasets import VideoClip, collate_clips
from training.metrics import DiscoveryScores, ObjectDiscoveryMetrics
from training.metrics.overlap import BackgroundPolicy

MaskSource = Literal["decoder", "attention"]
MASK_SOURCES: dict[str, str] = {
    "decoder": "decoder alpha masks (softmax over slots), at the decoder's resolution",
    "attention": "Slot Attention weights of the last iteration, on the encoder grid",
}


def predicted_masks(output: VideoOutput, source: MaskSource) -> torch.Tensor:
    """``[B, T, K, h, w]`` soft masks from the decoder or from the last Slot Attention iteration."""
    if source == "decoder":
        return output.masks
    grid = output.steps[0].grid
    last = torch.stack([step.attention[:, -1] for step in output.steps], dim=1)  # [B, T, K, P]
    return last.reshape(*last.shape[:3], *grid)  # [B, T, K, h, w]


@torch.inference_mode()
def evaluate(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    max_videos: int | None = None,
    mask_source: MaskSource = "decoder",
    background: BackgroundPolicy = "ignore",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> DiscoveryScores:
    """Run the model over whole videos (one at a time) and score its masks against the ground truth.

    Raises:
        ValueError: the dataset has no masks.
    """
    if max_videos is not None:
        dataset = Subset(dataset, range(min(max_videos, len(dataset))))  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_clips)
    metrics = ObjectDiscoveryMetrics(background=background, mask_source=MASK_SOURCES[mask_source])
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            if batch.masks is None:
                raise ValueError(f"cannot evaluate on unlabelled data ({batch.names[0]} has no masks)")
            output = model(batch.frames.to(device))
            metrics.update(predicted_masks(output, mask_source).float().cpu(), batch.masks)
    finally:
        model.train(was_training)
    return metrics.compute()
