"""The ``step`` graph's check that ``frames`` and ``prev_slots`` have the same batch size.

The model itself broadcasts a batch of one against a larger batch (a transition or attention op mixing a ``[1, ...]``
tensor with a ``[B, ...]`` one), so without a check a ``step`` call with one frame and four streams' slots, or
four frames and one stream's slots, answers four rows that mix the inputs instead of failing. ONNX's ``Concat``
broadcasts nothing: every input must have the same size on every axis but the one joined. :func:`same_batch`
passes the slots through a ``Concat`` with one value of each frame, joined on the slot axis, so the graph fails
in every runtime when the batch sizes differ, and gives the slots back unchanged (a copy, no arithmetic) when
they agree. It costs a ``Slice`` and a ``Reshape`` of the frames and a copy of ``K * D + 1`` values per row, and
adds only operators TensorRT parses (``Slice``, ``Reshape``, ``Concat``), every shape constant but the batch.

Run eagerly (not traced), it raises a ``ValueError`` naming both batch sizes before the ``Concat``.
"""

from __future__ import annotations

import torch


def same_batch(prev_slots: torch.Tensor, frames: torch.Tensor, num_slots: int, slot_dim: int) -> torch.Tensor:
    """``prev_slots`` ``[B, K, D]`` unchanged, through a ``Concat`` that needs ``frames`` ``[B, 3, H, W]`` to have the
    same batch size ``B``.

    Args:
        prev_slots: the previous slots ``[B, K, D]``.
        frames: the frames ``[B, 3, H, W]``.
        num_slots: ``K``, a Python int (a constant of the traced graph, not read from a shape).
        slot_dim: ``D``, likewise.

    Returns:
        A tensor equal to ``prev_slots``.

    Raises:
        ValueError: run eagerly, the batch sizes differ (traced, the graph's ``Concat`` fails when run instead).
    """
    tracing = torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
    if not tracing and prev_slots.shape[0] != frames.shape[0]:
        raise ValueError(
            f"step got {frames.shape[0]} frames but previous slots of {prev_slots.shape[0]} streams: each row of "
            "prev_slots is the slots of the stream whose frame is the same row of frames, so both need one batch size"
        )
    width = num_slots * slot_dim
    corner = frames[:, :1, :1, :1].reshape(-1, 1)  # [B, 3, H, W] -> [B, 1]
    joined = torch.cat([prev_slots.reshape(-1, width), corner], dim=1)  # [B, K*D + 1]: fails on another batch size
    return joined[:, :width].reshape(-1, num_slots, slot_dim)  # [B, K*D] -> [B, K, D]
