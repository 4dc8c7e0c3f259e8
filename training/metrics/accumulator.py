"""Streaming object-discovery evaluation over many batches of videos."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from training.metrics.ari import ari_from_contingency
from training.metrics.contingency import Contingency, contingency_table
from training.metrics.masks import MASK_UPSAMPLING, upsample_to_labels
from training.metrics.overlap import (
    BACKGROUND_CONVENTIONS,
    DEFAULT_BACKGROUND_POLICY,
    BackgroundPolicy,
    best_overlap_from_contingency,
    matched_iou_from_contingency,
)
from training.metrics.scores import SampleScores

__all__ = ["DiscoveryScores", "ObjectDiscoveryMetrics"]

_METRICS = ("ari", "fg_ari", "mbo", "miou")
_MODES = ("video", "image")


@dataclass(frozen=True)
class DiscoveryScores:
    """Object-discovery scores of a whole evaluation set.

    ``video_*`` treat each video as one clustering of its ``T*H*W`` points (slots must keep object identity over
    time); ``image_*`` score every frame separately and average over all frames of all videos. Each value is the
    mean over valid samples, NaN if none was valid. Invalid samples have an empty foreground: they are excluded from
    FG-ARI always, and from mBO / mIoU under the ``"ignore"`` background policy. Void points (``IGNORE_ID``) are
    scored nowhere, and a sample with no other point (a frame without a mask in a sparsely annotated video, whose
    mask is all void, or a video without any annotated frame) is no sample: it is neither scored nor counted in
    ``num_*``.

    Attributes:
        background_policy: ``"ignore"`` or ``"segment"``; which GT segments mBO / mIoU score.
        background_convention: Human-readable description of ``background_policy`` and the papers that use it.
        mask_source: Which model output the masks came from (caller-supplied, e.g. ``"decoder"`` or ``"attention"``).
        mask_upsampling: How soft masks and GT were brought to the evaluation resolution.
    """

    video_ari: float
    video_fg_ari: float
    video_mbo: float
    video_miou: float
    image_ari: float
    image_fg_ari: float
    image_mbo: float
    image_miou: float
    num_videos: int
    num_frames: int
    num_invalid_videos: int
    num_invalid_frames: int
    background_policy: BackgroundPolicy
    background_convention: str
    mask_source: str
    mask_upsampling: str

    def to_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready dict; NaN scores become ``None``."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


@dataclass
class _Running:
    """Running sum and count of valid per-sample scores."""

    total: float = 0.0
    count: int = 0

    def add(self, scores: SampleScores) -> None:
        self.total += scores.total()
        self.count += scores.num_valid

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


@dataclass
class _ModeState:
    """Accumulated state of one evaluation mode: ``num_samples`` counts the samples with a scored point,
    ``num_invalid`` those of them without foreground."""

    metrics: dict[str, _Running] = field(default_factory=lambda: {name: _Running() for name in _METRICS})
    num_samples: int = 0
    num_invalid: int = 0


class ObjectDiscoveryMetrics:
    """Accumulates ARI, FG-ARI, mBO and mIoU in video and image mode over batches of videos.

    Predicted soft masks are upsampled to the GT resolution (bilinear, ``align_corners=False``) and arg-maxed over
    slots; the GT resolution is the evaluation resolution (resize GT beforehand with ``resize_gt_ids`` if needed).
    Videos must have the same length within one ``update`` call, not across calls.

    Example:
        >>> import torch
        >>> metrics = ObjectDiscoveryMetrics()
        >>> gt = torch.zeros(1, 2, 4, 4, dtype=torch.long)
        >>> gt[..., :2, :2] = 3
        >>> masks = torch.stack([(gt == 0).float(), (gt == 3).float()], dim=2)  # K x [B, T, H, W] -> [B, T, K, H, W]
        >>> metrics.update(masks, gt)
        >>> metrics.compute().video_fg_ari
        1.0

    Args:
        background: Background policy of mBO / mIoU (see ``training.metrics.overlap``).
        mask_source: Free-text name of the model output the masks come from, copied into the report.

    Raises:
        ValueError: ``background`` is not a known background policy.
    """

    def __init__(
        self, background: BackgroundPolicy = DEFAULT_BACKGROUND_POLICY, mask_source: str = "unspecified"
    ) -> None:
        if background not in BACKGROUND_CONVENTIONS:
            raise ValueError(
                f"unknown background policy {background!r}; expected one of {list(BACKGROUND_CONVENTIONS)}"
            )
        self.background: BackgroundPolicy = background
        self.mask_source = mask_source
        self._state: dict[str, _ModeState] = {}
        self._updated = False
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._state = {mode: _ModeState() for mode in _MODES}
        self._updated = False

    def update(self, pred_masks: Tensor, gt_ids: Tensor) -> None:
        """Add a batch of videos.

        Args:
            pred_masks: Soft slot masks ``[B, T, K, h, w]`` at any resolution.
            gt_ids: GT instance ids ``[B, T, H, W]`` (0 = background, any non-negative ids).

        Raises:
            ValueError: For inputs of the wrong shape, or masks that are not all finite.
        """
        if pred_masks.dim() != 5 or gt_ids.dim() != 4 or pred_masks.shape[:2] != gt_ids.shape[:2]:
            raise ValueError(
                f"expected masks [B, T, K, h, w] and gt [B, T, H, W], got {pred_masks.shape}, {gt_ids.shape}"
            )
        if not bool(torch.isfinite(pred_masks).all()):
            raise ValueError("pred_masks hold NaN or infinite values; the model's masks cannot be scored")
        height, width = gt_ids.shape[-2:]
        labels = upsample_to_labels(pred_masks, (height, width))  # [B, T, H, W]
        self.update_labels(labels, gt_ids, num_slots=pred_masks.shape[2])

    def update_labels(self, pred_labels: Tensor, gt_ids: Tensor, num_slots: int | None = None) -> None:
        """Add a batch of videos given hard predicted labels.

        Args:
            pred_labels: Hard labels ``[B, T, H, W]`` in ``[0, num_slots)``.
            gt_ids: GT instance ids ``[B, T, H, W]``.
            num_slots: Number of slots ``K``; inferred from the labels when omitted.

        Raises:
            ValueError: ``pred_labels`` is not 4-D or its shape differs from ``gt_ids``'s.
        """
        if pred_labels.dim() != 4 or pred_labels.shape != gt_ids.shape:
            raise ValueError(f"expected two [B, T, H, W] maps, got {pred_labels.shape}, {gt_ids.shape}")
        batch, frames, height, width = gt_ids.shape
        frame_table = contingency_table(
            pred_labels.reshape(batch * frames, height * width),  # [B, T, H, W] -> [B*T, H*W]
            gt_ids.reshape(batch * frames, height * width),  # [B, T, H, W] -> [B*T, H*W]
            num_labels=num_slots,
        )
        self._add("image", frame_table)
        self._add("video", frame_table.group(frames))
        self._updated = True

    def _add(self, mode: str, table: Contingency) -> None:
        """Score every sample of ``table`` and fold the results into ``mode``'s running means; a sample without a
        scored point (all void) is invalid for every metric and is not counted."""
        state = self._state[mode]
        fg_ari = ari_from_contingency(table.foreground())
        scored = table.counts.sum(dim=(1, 2)) > 0  # [S]: samples with a point that is not void
        state.num_samples += int(scored.sum())
        state.num_invalid += int((scored & ~fg_ari.valid).sum())
        state.metrics["ari"].add(ari_from_contingency(table))
        state.metrics["fg_ari"].add(fg_ari)
        state.metrics["mbo"].add(best_overlap_from_contingency(table, self.background))
        state.metrics["miou"].add(matched_iou_from_contingency(table, self.background))

    def compute(self) -> DiscoveryScores:
        """Scores of everything added since the last ``reset``.

        Raises:
            RuntimeError: If no video has been added.
        """
        video, image = self._state["video"], self._state["image"]
        if not self._updated:
            raise RuntimeError("ObjectDiscoveryMetrics.compute() called before any update()")
        return DiscoveryScores(
            video_ari=video.metrics["ari"].mean(),
            video_fg_ari=video.metrics["fg_ari"].mean(),
            video_mbo=video.metrics["mbo"].mean(),
            video_miou=video.metrics["miou"].mean(),
            image_ari=image.metrics["ari"].mean(),
            image_fg_ari=image.metrics["fg_ari"].mean(),
            image_mbo=image.metrics["mbo"].mean(),
            image_miou=image.metrics["miou"].mean(),
            num_videos=video.num_samples,
            num_frames=image.num_samples,
            num_invalid_videos=video.num_invalid,
            num_invalid_frames=image.num_invalid,
            background_policy=self.background,
            background_convention=BACKGROUND_CONVENTIONS[self.background],
            mask_source=self.mask_source,
            mask_upsampling=MASK_UPSAMPLING,
        )
