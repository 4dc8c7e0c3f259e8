"""Adjusted Rand Index (ARI) and foreground ARI (FG-ARI) on hard label maps.

With GT segment sizes ``a_j``, predicted segment sizes ``b_k``, contingency ``n_jk`` and ``N`` points (as in
google-research/slot-attention-video ``savi/lib/metrics.py`` and martius-lab/videosaur), using ``x(x-1)`` in place of
``C(x, 2)`` (the factor 2 cancels)::

    E   = sum_j a_j(a_j-1) * sum_k b_k(b_k-1) / (N(N-1))
    ARI = (sum_jk n_jk(n_jk-1) - E) / ((sum_j a_j(a_j-1) + sum_k b_k(b_k-1)) / 2 - E)

The denominator is zero exactly when both partitions are trivial in the same way (both a single cluster, both all
singletons, or ``N < 2``); ARI is then 1.0, as in SAVi, Genera1Z and videosaur. That condition is detected on the
exact int64 pair counts rather than by comparing a float to zero.

FG-ARI removes every point whose GT is background before building the table (predictions there are irrelevant).
**Invalid-sample policy** (Genera1Z): a sample with no foreground point has no FG-ARI; it is marked invalid and
excluded from the mean (videosaur instead scores such a frame 1.0 by the zero-denominator rule, which inflates
image-mode FG-ARI on frames where all objects left the view). ARI over all points is valid for every non-empty
sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.metrics.contingency import Contingency, EvalMode, contingency_table, to_samples
from training.metrics.scores import SampleScores

__all__ = ["adjusted_rand_index", "ari_from_contingency", "fg_adjusted_rand_index"]


def _pairs(x: Tensor) -> Tensor:
    """Ordered pair count ``x(x-1)`` (exact in int64)."""
    return x * (x - 1)


def ari_from_contingency(table: Contingency) -> SampleScores:
    """ARI of every sample of ``table``; pass ``table.foreground()`` for FG-ARI.

    Returns:
        Scores ``[S]``; a sample is valid iff it has at least one point.
    """
    counts = table.counts  # [S, M, K] int64
    num_points = counts.sum(dim=(1, 2))  # [S]
    sum_joint = _pairs(counts).sum(dim=(1, 2))  # [S]
    sum_gt = _pairs(table.gt_sizes).sum(dim=1)  # [S]
    sum_pred = _pairs(table.pred_sizes).sum(dim=1)  # [S]
    total = _pairs(num_points)  # [S]
    trivial = (total == 0) | ((sum_gt == 0) & (sum_pred == 0)) | ((sum_gt == total) & (sum_pred == total))
    joint, gt, pred = sum_joint.double(), sum_gt.double(), sum_pred.double()
    expected = gt * pred / total.clamp(min=1).double()
    denominator = torch.where(trivial, torch.ones_like(expected), (gt + pred) / 2 - expected)
    ari = torch.where(trivial, torch.ones_like(expected), (joint - expected) / denominator)
    valid = num_points > 0
    return SampleScores(values=torch.where(valid, ari, torch.full_like(ari, float("nan"))), valid=valid)


def adjusted_rand_index(pred_labels: Tensor, gt_ids: Tensor, mode: EvalMode = "video") -> SampleScores:
    """ARI over all points, background included as one GT cluster.

    Args:
        pred_labels: Hard labels ``[B, T, H, W]`` (e.g. from ``upsample_to_labels``).
        gt_ids: GT instance ids ``[B, T, H, W]``, 0 = background, ids need not be contiguous.
        mode: ``"video"`` scores each video as one clustering (``S = B``), ``"image"`` each frame (``S = B*T``).

    Returns:
        Per-sample scores.
    """
    return ari_from_contingency(contingency_table(to_samples(pred_labels, mode), to_samples(gt_ids, mode)))


def fg_adjusted_rand_index(pred_labels: Tensor, gt_ids: Tensor, mode: EvalMode = "video") -> SampleScores:
    """FG-ARI: ARI restricted to points whose GT id is not background.

    Args:
        pred_labels: Hard labels ``[B, T, H, W]``.
        gt_ids: GT instance ids ``[B, T, H, W]``, 0 = background.
        mode: ``"video"`` or ``"image"`` (see ``adjusted_rand_index``).

    Returns:
        Per-sample scores; samples without foreground are invalid (see module docstring).
    """
    table = contingency_table(to_samples(pred_labels, mode), to_samples(gt_ids, mode))
    return ari_from_contingency(table.foreground())
