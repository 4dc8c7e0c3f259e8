"""A bar chart of per-group object recall (``training.object_recall --plot``), drawn with Pillow alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from training.object_recall import GroupRecall

_ROW_HEIGHT = 18
_LABEL_WIDTH = 130
_BAR_WIDTH = 300
_MARGIN = 8
_FOUND_COLOUR = (52, 120, 200)
_IOU_COLOUR = (235, 150, 40)


def draw_recall_chart(rows: Sequence[GroupRecall], title: str = "") -> Image.Image:
    """One line per group: the fraction found (blue) and the mean best IoU (orange), both on a 0-1 scale."""
    header = 2 * _ROW_HEIGHT
    height = header + _ROW_HEIGHT * len(rows) + _MARGIN
    width = _LABEL_WIDTH + _BAR_WIDTH + 90
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN, 4), title, fill="black")
    draw.text((_LABEL_WIDTH, 4 + _ROW_HEIGHT // 2 + 2), "found", fill=_FOUND_COLOUR)
    draw.text((_LABEL_WIDTH + 50, 4 + _ROW_HEIGHT // 2 + 2), "mean best IoU", fill=_IOU_COLOUR)
    for index, row in enumerate(rows):
        top = header + index * _ROW_HEIGHT
        draw.text((_MARGIN, top + 3), f"{row.label} ({row.objects})", fill="black")
        half = (_ROW_HEIGHT - 4) // 2
        for offset, value, colour in ((0, row.found, _FOUND_COLOUR), (half, row.mean_best_iou, _IOU_COLOUR)):
            right = _LABEL_WIDTH + round(_BAR_WIDTH * min(max(value, 0.0), 1.0))
            box = (_LABEL_WIDTH, top + 2 + offset, max(right, _LABEL_WIDTH + 1), top + 1 + offset + half)
            draw.rectangle(box, fill=colour)
        draw.text((_LABEL_WIDTH + _BAR_WIDTH + 6, top + 3), f"{row.found:.2f} / {row.mean_best_iou:.2f}", fill="black")
    draw.line((_LABEL_WIDTH + _BAR_WIDTH, header, _LABEL_WIDTH + _BAR_WIDTH, height - _MARGIN), fill="grey")
    return image


def save_recall_chart(rows: Sequence[GroupRecall], path: Path, title: str = "") -> Path:
    """Draw the chart and write it as a PNG; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_recall_chart(rows, title).save(path)
    return path
