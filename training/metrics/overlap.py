"""Mean best overlap (mBO) and Hungarian-matched mean IoU (mIoU) on hard label maps.

For each scored GT segment ``g`` of a sample (OCLF's DINOSAUR metrics and martius-lab/videosaur):

* **mBO**: ``max_k IoU(g, p_k)``; a predicted mask may be the best match of several GT segments.
* **mIoU**: IoU of ``g``'s partner in a one-to-one assignment maximising the total IoU
  (``scipy.optimize.linear_sum_assignment``); when there are fewer predicted labels than GT segments the
  unmatched segments score 0.

Both average over the scored GT segments present in the sample, then over samples. Predicted masks are the full
argmax masks (they may cover background pixels), as in every reference code base.

**Background policy** (published numbers differ on this):

* ``"ignore"`` (project default): only object instances are scored; a sample without foreground is invalid.
  This is the DINOSAUR / VideoSAUR / SlotContrast convention and the one that measures *object* discovery: the
  background is usually the largest and easiest segment and would otherwise dominate the average (with one object
  per frame, as on DAVIS 2016, it would be half of the score). It is also the convention consistent with FG-ARI.
* ``"segment"``: background (id 0) is one more GT segment (Genera1Z ``skip=[]``, used for SmoothSA / RandSF.Q /
  DIAS numbers); every non-empty sample is valid. Use it only to compare with those papers.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from training.metrics.contingency import Contingency, EvalMode, contingency_table, to_samples
from training.metrics.scores import SampleScores

__all__ = [
    "BACKGROUND_CONVENTIONS",
    "DEFAULT_BACKGROUND_POLICY",
    "BackgroundPolicy",
    "best_overlap_from_contingency",
    "iou_from_contingency",
    "matched_iou_from_contingency",
    "mean_best_overlap",
    "mean_matched_iou",
]

BackgroundPolicy = Literal["ignore", "segment"]
"""How mBO / mIoU treat GT background: ``"ignore"`` (objects only) or ``"segment"`` (background is a segment)."""

DEFAULT_BACKGROUND_POLICY: Final[BackgroundPolicy] = "ignore"

BACKGROUND_CONVENTIONS: Final[dict[str, str]] = {
    "ignore": "background excluded from GT segments, the DINOSAUR/VideoSAUR/SlotContrast convention",
    "segment": "background counted as a GT segment, the Genera1Z/SmoothSA/RandSF.Q convention",
}
"""Report-ready description of each background policy."""


def iou_from_contingency(table: Contingency) -> Tensor:
    """IoU between every GT segment and every predicted label.

    Returns:
        ``[S, M, K]`` float64; 0 where both masks are empty.
    """
    inter = table.counts.double()  # [S, M, K]
    # GT sizes [S, M] -> [S, M, 1], predicted sizes [S, K] -> [S, 1, K]
    union = table.gt_sizes.double().unsqueeze(2) + table.pred_sizes.double().unsqueeze(1) - inter  # [S, M, K]
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def _scored_rows(table: Contingency, background: BackgroundPolicy) -> Tensor:
    """GT segments that count for ``background``: present in the sample, ``[S, M]`` bool."""
    if background not in BACKGROUND_CONVENTIONS:
        raise ValueError(f"unknown background policy {background!r}; expected one of {list(BACKGROUND_CONVENTIONS)}")
    scored = table.gt_sizes > 0  # [S, M]
    row = table.background_row
    if background == "ignore" and row is not None:
        scored[:, row] = False
    return scored


def _average_rows(per_row: Tensor, scored: Tensor) -> SampleScores:
    """Mean of ``per_row`` ``[S, M]`` over ``scored`` rows; samples with no scored row are invalid."""
    num_scored = scored.sum(dim=1)  # [S]
    total = torch.where(scored, per_row, torch.zeros_like(per_row)).sum(dim=1)  # [S]
    valid = num_scored > 0
    values = torch.where(valid, total / num_scored.clamp(min=1), torch.full_like(total, float("nan")))
    return SampleScores(values=values, valid=valid)


def best_overlap_from_contingency(table: Contingency, background: BackgroundPolicy) -> SampleScores:
    """Per-sample mBO (see module docstring)."""
    scored = _scored_rows(table, background)  # [S, M]
    best = iou_from_contingency(table).amax(dim=2)  # [S, M]
    return _average_rows(best, scored)


def matched_iou_from_contingency(table: Contingency, background: BackgroundPolicy) -> SampleScores:
    """Per-sample Hungarian mIoU (see module docstring); one small assignment problem per sample, on CPU."""
    scored = _scored_rows(table, background).cpu()  # [S, M]
    iou = iou_from_contingency(table).cpu().numpy()  # [S, M, K]
    matched = np.zeros(scored.shape, dtype=np.float64)  # [S, M]
    for sample, rows in enumerate(scored.numpy()):
        row_ids = np.flatnonzero(rows)
        if row_ids.size == 0:
            continue
        cost = iou[sample, row_ids]  # [M_scored, K]
        gt_index, pred_index = linear_sum_assignment(cost, maximize=True)
        matched[sample, row_ids[gt_index]] = cost[gt_index, pred_index]
    return _average_rows(torch.from_numpy(matched), scored)


def mean_best_overlap(
    pred_labels: Tensor,
    gt_ids: Tensor,
    mode: EvalMode = "video",
    background: BackgroundPolicy = DEFAULT_BACKGROUND_POLICY,
) -> SampleScores:
    """mBO per sample.

    Args:
        pred_labels: Hard labels ``[B, T, H, W]``.
        gt_ids: GT instance ids ``[B, T, H, W]``, 0 = background, ids need not be contiguous.
        mode: ``"video"`` (IoU of spatio-temporal tubes, ``S = B``) or ``"image"`` (per frame, ``S = B*T``).
        background: Background policy (see module docstring).
    """
    table = contingency_table(to_samples(pred_labels, mode), to_samples(gt_ids, mode))
    return best_overlap_from_contingency(table, background)


def mean_matched_iou(
    pred_labels: Tensor,
    gt_ids: Tensor,
    mode: EvalMode = "video",
    background: BackgroundPolicy = DEFAULT_BACKGROUND_POLICY,
) -> SampleScores:
    """Hungarian-matched mIoU per sample; arguments as in ``mean_best_overlap``."""
    table = contingency_table(to_samples(pred_labels, mode), to_samples(gt_ids, mode))
    return matched_iou_from_contingency(table, background)
