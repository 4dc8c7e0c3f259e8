"""Object-discovery evaluation of a model on a dataset (shared by training and ``training.evaluate``)."""

from __future__ import annotations

import argparse
from collections.abc import Generator
from contextlib import closing
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from plugins import VideoOutput, VideoSlotModel
from training.datasets import VideoBatch, VideoClip, collate_clips
from training.metrics import DiscoveryScores, ObjectDiscoveryMetrics
from training.metrics.masks import upsample_to_labels
from training.metrics.overlap import BackgroundPolicy

MaskSource = Literal["decoder", "attention"]
MASK_SOURCES: dict[str, str] = {
    "decoder": "the decoder's masks, at the decoder's resolution",
    "attention": "Slot Attention weights of the last iteration, on the encoder grid",
}


def mask_source_label(model: VideoSlotModel, source: MaskSource) -> str:
    """What the scored masks are, for reports: the decoder says what kind of masks it makes (``mask_kind``)."""
    if source == "decoder":
        return f"decoder {model.decoder.mask_kind}, at the decoder's resolution"
    return MASK_SOURCES[source]


def add_mask_source_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--mask-source`` (one of :data:`MASK_SOURCES`, default ``decoder``) to a command's ``parser``."""
    parser.add_argument(
        "--mask-source",
        choices=sorted(MASK_SOURCES),
        default="decoder",
        help="which masks are scored: the decoder's masks (alpha masks for most decoders), or the last Slot "
        "Attention iteration's attention (default: %(default)s)",
    )


def predicted_masks(output: VideoOutput, source: MaskSource) -> torch.Tensor:
    """``[B, T, K, h, w]`` soft masks from the decoder or from the last Slot Attention iteration."""
    if source == "decoder":
        return output.masks
    grid = output.steps[0].grid
    last = torch.stack([step.attention[:, -1] for step in output.steps], dim=1)  # T x [B, K, P] -> [B, T, K, P]
    return last.reshape(*last.shape[:3], *grid)  # [B, T, K, P] -> [B, T, K, h, w]


def model_outputs(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    max_videos: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "evaluate",
) -> Generator[tuple[VideoBatch, VideoOutput], None, None]:
    """Run the model in eval mode (and inference mode) over whole videos, one at a time: yields each one-video
    batch and the model's output on it. The model's training mode is restored when the iteration ends or the
    generator is closed (iterate under ``contextlib.closing`` when the loop may stop early).
    """
    if max_videos is not None:
        dataset = Subset(dataset, range(min(max_videos, len(dataset))))  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_clips)
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            with torch.inference_mode():
                output = model(batch.frames.to(device))
            yield batch, output
    finally:
        model.train(was_training)


def predicted_videos(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    max_videos: int | None = None,
    mask_source: MaskSource = "decoder",
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "evaluate",
) -> Generator[tuple[VideoBatch, torch.Tensor], None, None]:
    """Run the model in eval mode over whole videos, one at a time (:func:`model_outputs`): yields each one-video
    batch and its soft masks ``[1, T, K, h, w]`` (float32, on the CPU). The model's training mode is restored when
    the iteration ends or the generator is closed (iterate under ``contextlib.closing`` when the loop may stop
    early).
    """
    with closing(model_outputs(model, dataset, max_videos, device, progress, desc)) as outputs:
        for batch, output in outputs:
            yield batch, predicted_masks(output, mask_source).float().cpu()  # [1, T, K, h, w]


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
        ValueError: the dataset has no masks, or the model's masks are not finite (the argmax of NaN masks would
            give finite, meaningless scores).
    """
    scores, _ = _scored(model, dataset, max_videos, mask_source, background, device, progress, by_count=False)
    return scores


def evaluate_by_object_count(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    max_videos: int | None = None,
    mask_source: MaskSource = "decoder",
    background: BackgroundPolicy = "ignore",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[DiscoveryScores, dict[int, DiscoveryScores]]:
    """:func:`evaluate`, plus the scores of the videos with each number of ground-truth objects.

    Returns:
        The scores of all videos, and for each object count (distinct non-zero, non-void ids over the whole
        video, see :func:`object_count`) the scores of the videos that have it, in increasing order of count.
        Every score is a mean over valid videos (or frames), so the groups' means weighted by their numbers of
        valid samples give the overall means (a group without foreground has no valid FG-ARI).

    Raises:
        ValueError: as :func:`evaluate`.
    """
    return _scored(model, dataset, max_videos, mask_source, background, device, progress, by_count=True)


def _scored(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    max_videos: int | None,
    mask_source: MaskSource,
    background: BackgroundPolicy,
    device: str | torch.device,
    progress: bool,
    by_count: bool,
) -> tuple[DiscoveryScores, dict[int, DiscoveryScores]]:
    """The scores of all videos and, when ``by_count``, of each object count's videos (else no groups)."""

    def new_metrics() -> ObjectDiscoveryMetrics:
        return ObjectDiscoveryMetrics(background=background, mask_source=mask_source_label(model, mask_source))

    overall = new_metrics()
    groups: dict[int, ObjectDiscoveryMetrics] = {}
    with closing(predicted_videos(model, dataset, max_videos, mask_source, device, progress)) as videos:
        for batch, masks in videos:
            if batch.masks is None:
                raise ValueError(f"cannot evaluate on unlabelled data ({batch.names[0]} has no masks)")
            if not bool(torch.isfinite(masks).all()):
                raise ValueError(
                    f"the model's masks for {batch.names[0]} contain NaN or infinite values: its weights or its "
                    "input are not finite (a diverged run?)"
                )
            height, width = batch.masks.shape[-2:]
            labels = upsample_to_labels(masks, (height, width))  # [1, T, H, W]: upsampled once for both groups
            num_slots = masks.shape[2]
            overall.update_labels(labels, batch.masks, num_slots)
            if by_count:
                group = groups.setdefault(object_count(batch.masks[0]), new_metrics())
                group.update_labels(labels, batch.masks, num_slots)
    return overall.compute(), {count: groups[count].compute() for count in sorted(groups)}


def object_count(ids: torch.Tensor) -> int:
    """Objects in one video's ground truth ``[T, H, W]``: distinct ids other than background (0) and void (< 0)."""
    return int((torch.unique(ids) > 0).sum())
