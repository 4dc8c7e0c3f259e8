"""A bar chart of per-group object recall (``training.object_recall --plot``, the model card's
``object_recall.png``), drawn with Pillow alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from training.bar_chart import BarRow, draw_paired_bars

if TYPE_CHECKING:
    from training.object_recall import GroupRecall


def draw_recall_chart(rows: Sequence[GroupRecall], title: str = "", subtitle: str = "") -> Image.Image:
    """One line per group: the fraction of its objects found (blue) and their mean best IoU (orange), both on the
    0-1 scale drawn under the bars, with the two values written on the right. ``title`` and ``subtitle`` (what
    was measured, such as the mask source and the number of videos) head the chart, which is wide enough for
    every text it holds."""
    from training.object_recall import FOUND_IOU

    bars = [
        BarRow(
            f"{row.label} ({row.objects} object{'' if row.objects == 1 else 's'})",
            row.found,
            row.mean_best_iou,
            f"{row.found:.2f} / {row.mean_best_iou:.2f}",
        )
        for row in rows
    ]
    legend = (f"found: best IoU above {FOUND_IOU:g} over the video", "mean best IoU")
    return draw_paired_bars(bars, legend, title, subtitle)


def save_recall_chart(rows: Sequence[GroupRecall], path: Path, title: str = "", subtitle: str = "") -> Path:
    """Draw the chart (:func:`draw_recall_chart`) and write it as a PNG; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_recall_chart(rows, title, subtitle).save(path)
    return path


__all__ = ["draw_recall_chart", "save_recall_chart"]
