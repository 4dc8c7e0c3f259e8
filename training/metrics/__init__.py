"""Object-discovery metrics for video slot models: ARI, FG-ARI, mBO and mIoU, in video and image mode.

Typical use, here the shipped model on the synthetic validation videos (``davis:<DAVIS root>`` as the spec scores
DAVIS; ``python -m training.evaluate`` does all of it for a model folder)::

    import torch
    from torch.utils.data import DataLoader

    from plugins import VideoSlotModel
    from training.datasets import build_dataset, collate_clips
    from training.metrics import ObjectDiscoveryMetrics

    model = VideoSlotModel.from_pretrained("service/models/default")
    dataset = build_dataset("synthetic:easy", "val", clip_length=8, image_size=model.image_size)
    metrics = ObjectDiscoveryMetrics(mask_source="decoder")  # a label for the report: the decoder's masks
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=8, collate_fn=collate_clips):
            out = model(batch.frames)
            metrics.update(out.masks, batch.masks)  # [B, T, K, h, w] soft masks, [B, T, H, W] ids
    report = metrics.compute().to_dict()

Conventions (those of martius-lab/videosaur and Genera1Z/SmoothSA): predicted masks are upsampled bilinearly to the GT
resolution and arg-maxed; GT id 0 is background, GT id -1 (DAVIS void) is left out of every score (``uint8`` GT
holding 255, a DAVIS 2017 palette mask read as stored, is refused rather than scored as an object); FG-ARI drops
background points and excludes samples without foreground; mBO / mIoU follow an explicit background policy whose
default is ``"ignore"`` and whose name is part of every report.
"""

from __future__ import annotations

from training.metrics.accumulator import DiscoveryScores, ObjectDiscoveryMetrics
from training.metrics.ari import adjusted_rand_index, ari_from_contingency, fg_adjusted_rand_index
from training.metrics.contingency import (
    BACKGROUND_ID,
    IGNORE_ID,
    Contingency,
    EvalMode,
    contingency_table,
    to_samples,
)
from training.metrics.masks import MASK_UPSAMPLING, resize_gt_ids, upsample_to_labels
from training.metrics.overlap import (
    BACKGROUND_CONVENTIONS,
    DEFAULT_BACKGROUND_POLICY,
    BackgroundPolicy,
    best_overlap_from_contingency,
    iou_from_contingency,
    matched_iou_from_contingency,
    mean_best_overlap,
    mean_matched_iou,
)
from training.metrics.scores import SampleScores

__all__ = [
    "BACKGROUND_CONVENTIONS",
    "BACKGROUND_ID",
    "DEFAULT_BACKGROUND_POLICY",
    "IGNORE_ID",
    "MASK_UPSAMPLING",
    "BackgroundPolicy",
    "Contingency",
    "DiscoveryScores",
    "EvalMode",
    "ObjectDiscoveryMetrics",
    "SampleScores",
    "adjusted_rand_index",
    "ari_from_contingency",
    "best_overlap_from_contingency",
    "contingency_table",
    "fg_adjusted_rand_index",
    "iou_from_contingency",
    "matched_iou_from_contingency",
    "mean_best_overlap",
    "mean_matched_iou",
    "resize_gt_ids",
    "to_samples",
    "upsample_to_labels",
]
