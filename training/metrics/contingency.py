"""Contingency tables between ground-truth segments and predicted labels: the sufficient statistic of all metrics.

Every metric in this package (ARI, FG-ARI, mBO, mIoU) is a function of the per-sample table
``n[j, k] = #points with GT id j and predicted label k``. Tables are built once per batch with a single
``bincount`` and then shared by all metrics and both evaluation modes (a video table is the sum of its frame tables).

A *sample* is one clustering: in **video** mode all ``T*H*W`` points of a video (spatio-temporal tubes), in
**image** mode the ``H*W`` points of one frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "BACKGROUND_ID",
    "IGNORE_ID",
    "RAW_VOID_ID",
    "Contingency",
    "EvalMode",
    "check_no_raw_void",
    "contingency_table",
    "to_samples",
]

EvalMode = Literal["video", "image"]
"""``"video"``: one sample per video (all ``T*H*W`` points); ``"image"``: one sample per frame."""

BACKGROUND_ID = 0
"""Ground-truth id of the background; every other non-negative id is an object instance."""

IGNORE_ID = -1
"""Ground-truth id of points no metric scores (DAVIS void pixels: object borders and unlabelled regions), as the
DAVIS benchmark leaves them out of its region similarity."""

RAW_VOID_ID = 255
"""Palette index of void pixels in DAVIS 2017 masks. ``uint8`` ground truth holding it is refused (see
:func:`check_no_raw_void`): it is a palette mask read as it is stored, whose void would be scored as object 255."""

_MAX_LOOKUP_ID = 1 << 16


def check_no_raw_void(gt_ids: Tensor) -> None:
    """Refuse ``uint8`` ground truth that holds :data:`RAW_VOID_ID` beside other object ids: what a DAVIS 2017
    palette PNG gives when read as it is stored (``np.array(Image.open(path))``), where index 255 is void, not an
    object. A map of 0 and 255 alone passes: it is a binary mask as DAVIS 2016 stores it (255 the object), and
    is scored as one object. Only ``uint8`` is checked: it cannot hold ``IGNORE_ID``, and a palette holds 255 ids
    at most besides void; wider id maps may number an object 255.

    Raises:
        ValueError: ``gt_ids`` is ``uint8`` and holds 255 and another non-zero id; the message says how to mark
            void points.
    """
    if gt_ids.dtype != torch.uint8 or not gt_ids.numel() or int(gt_ids.max()) != RAW_VOID_ID:
        return
    if bool(((gt_ids > 0) & (gt_ids < RAW_VOID_ID)).any()):
        raise ValueError(
            f"gt_ids is uint8 and holds {RAW_VOID_ID} beside other object ids, as a DAVIS 2017 palette mask read as "
            f"it is stored does, where {RAW_VOID_ID} is void; it would be scored as an object: read masks with "
            f"training.datasets.images.read_mask (void becomes {IGNORE_ID}), or set void points to IGNORE_ID "
            f"({IGNORE_ID}) in a signed integer tensor"
        )


@dataclass(frozen=True)
class Contingency:
    """Per-sample contingency tables.

    Attributes:
        counts: ``[S, M, K]`` int64; ``counts[s, j, k]`` is the number of points of sample ``s`` whose GT id is
            ``gt_ids[j]`` and whose predicted label is ``k``. Rows of ids absent from a sample are zero.
        gt_ids: ``[M]`` int64, sorted distinct GT ids over all samples of the batch; row ``j`` is ``gt_ids[j]``.
    """

    counts: Tensor
    gt_ids: Tensor

    @property
    def background_row(self) -> int | None:
        """Row index of ``BACKGROUND_ID``, or ``None`` when no point of the batch is background."""
        hits = (self.gt_ids == BACKGROUND_ID).nonzero()
        return int(hits[0, 0]) if hits.numel() else None

    @property
    def gt_sizes(self) -> Tensor:
        """Points per GT segment, ``[S, M]`` int64."""
        return self.counts.sum(dim=2)

    @property
    def pred_sizes(self) -> Tensor:
        """Points per predicted label, ``[S, K]`` int64."""
        return self.counts.sum(dim=1)

    def foreground(self) -> Contingency:
        """The table restricted to points whose GT is not background (the FG-ARI point set)."""
        row = self.background_row
        if row is None:
            return self
        keep = torch.arange(self.gt_ids.numel(), device=self.gt_ids.device) != row
        return Contingency(counts=self.counts[:, keep], gt_ids=self.gt_ids[keep])

    def group(self, size: int) -> Contingency:
        """Merge runs of ``size`` consecutive samples into one sample (frame tables -> video tables).

        Args:
            size: Number of consecutive samples per merged sample; must divide ``S``.

        Raises:
            ValueError: ``size`` is not positive or does not divide ``S``.
        """
        num_samples, num_gt, num_labels = self.counts.shape
        if size <= 0 or num_samples % size:
            raise ValueError(f"group size {size} does not divide the {num_samples} samples")
        # [S, M, K] -> [S/size, size, M, K]
        grouped = self.counts.reshape(num_samples // size, size, num_gt, num_labels)  # [S/size, size, M, K]
        return Contingency(counts=grouped.sum(dim=1), gt_ids=self.gt_ids)


def to_samples(x: Tensor, mode: EvalMode) -> Tensor:
    """Flatten a ``[B, T, H, W]`` label or id map into ``[S, P]`` samples x points for ``mode``.

    Returns:
        ``[B, T*H*W]`` in video mode, ``[B*T, H*W]`` in image mode.

    Raises:
        ValueError: ``x`` is not 4-D, or ``mode`` is neither ``"video"`` nor ``"image"``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a [B, T, H, W] map, got {tuple(x.shape)}")
    batch, frames, height, width = x.shape
    if mode == "video":
        return x.reshape(batch, frames * height * width)  # [B, T, H, W] -> [B, T*H*W]
    if mode == "image":
        return x.reshape(batch * frames, height * width)  # [B, T, H, W] -> [B*T, H*W]
    raise ValueError(f"unknown mode {mode!r}; expected 'video' or 'image'")


def contingency_table(pred_labels: Tensor, gt_ids: Tensor, num_labels: int | None = None) -> Contingency:
    """Count co-occurrences of GT ids and predicted labels for every sample.

    Args:
        pred_labels: Hard predicted labels ``[S, ...]`` (integer, ``>= 0``); dim 0 indexes samples and all other
            dims are the points of one clustering.
        gt_ids: GT instance ids with the same shape; any non-negative integers (need not be contiguous),
            ``BACKGROUND_ID`` is background, and ``IGNORE_ID`` marks points left out of the table.
        num_labels: Number of predicted labels ``K``; defaults to ``pred_labels.max() + 1``. Labels that never
            occur only add zero columns, which change no metric.

    Returns:
        The per-sample tables.

    Raises:
        ValueError: the shapes differ or are 0-D, a predicted label is negative or ``>= num_labels``, a GT id
            is negative other than ``IGNORE_ID``, or ``gt_ids`` is ``uint8`` holding 255 (an undecoded DAVIS void:
            :func:`check_no_raw_void`).
        TypeError: ``pred_labels`` or ``gt_ids`` is a floating-point or bool tensor.
    """
    if pred_labels.shape != gt_ids.shape or pred_labels.dim() < 1:
        raise ValueError(f"shape mismatch: pred {tuple(pred_labels.shape)} vs gt {tuple(gt_ids.shape)}")
    for name, x in (("pred_labels", pred_labels), ("gt_ids", gt_ids)):
        if x.is_floating_point() or x.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    check_no_raw_void(gt_ids)
    num_samples = pred_labels.shape[0]
    pred = pred_labels.detach().reshape(num_samples, -1).long()  # [S, ...] -> [S, P]
    gt = gt_ids.detach().reshape(num_samples, -1).long()  # [S, ...] -> [S, P]
    if pred.numel() and int(pred.min()) < 0:
        raise ValueError("pred_labels must be non-negative")
    if num_labels is None:
        num_labels = int(pred.max()) + 1 if pred.numel() else 1
    if pred.numel() and int(pred.max()) >= num_labels:
        raise ValueError(f"pred_labels contain a label >= num_labels={num_labels}")

    if gt.numel() and int(gt.min()) < IGNORE_ID:
        raise ValueError(f"gt_ids must be non-negative, or {IGNORE_ID} for ignored points")

    unique_ids, gt_rows = _dense_ids(gt)  # [M], [S, P]
    num_gt = unique_ids.numel()
    sample = torch.arange(num_samples, device=pred.device).unsqueeze(1)  # [S] -> [S, 1]
    flat_index = (sample * num_gt + gt_rows) * num_labels + pred  # [S, P] index into [S, M, K]
    # flat_index [S, P] -> [S*P]; counts [S*M*K]
    counts = torch.bincount(flat_index.reshape(-1), minlength=num_samples * num_gt * num_labels)
    counts = counts.reshape(num_samples, num_gt, num_labels)  # [S*M*K] -> [S, M, K]
    if num_gt and int(unique_ids[0]) == IGNORE_ID:  # sorted: the ignored points are row 0
        counts, unique_ids = counts[:, 1:], unique_ids[1:]  # [S, M-1, K], [M-1]
    return Contingency(counts=counts, gt_ids=unique_ids)


def _dense_ids(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted distinct ids ``[M]`` and every id's position among them (same shape as ``ids``).

    Equivalent to ``torch.unique(ids, return_inverse=True)``, but linear-time through a lookup table when the ids
    are small non-negative integers (the usual case), avoiding a sort of every point.
    """
    if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) > max(_MAX_LOOKUP_ID, ids.numel()):
        unique_ids, inverse = torch.unique(ids, return_inverse=True)  # [M], same shape as ids
        return unique_ids, inverse
    present = torch.bincount(ids.reshape(-1)) > 0  # ids [S, P] -> [S*P]; [max_id + 1]
    lookup = present.long().cumsum(dim=0) - 1  # [max_id + 1], position of each present id
    return present.nonzero().squeeze(1), lookup[ids]  # [M, 1] -> [M], and [S, P]
