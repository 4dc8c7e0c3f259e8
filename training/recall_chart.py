"""A bar chart of per-group object recall (``training.object_recall --plot``, the model card's
``object_recall.png``), drawn with Pillow alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from training.fonts import text_font

if TYPE_CHECKING:
    from training.object_recall import GroupRecall

FONT_SIZE = 13
"""Text size in pixels (Pillow's built-in font; its small bitmap font where Pillow lacks FreeType)."""

_ROW_HEIGHT = 22
_BAR_WIDTH = 300
_MARGIN = 10
_FOUND_COLOUR = (52, 120, 200)
_IOU_COLOUR = (235, 150, 40)
_SCALE = (0.0, 0.25, 0.5, 0.75, 1.0)


def draw_recall_chart(rows: Sequence[GroupRecall], title: str = "", subtitle: str = "") -> Image.Image:
    """One line per group: the fraction of its objects found (blue) and their mean best IoU (orange), both on the
    0-1 scale drawn under the bars, with the two values written on the right. ``title`` and ``subtitle`` (what
    was measured, such as the mask source and the number of videos) head the chart, which is wide enough for
    every text it holds."""
    from training.object_recall import FOUND_IOU

    font = text_font(FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [f"{row.label} ({row.objects} object{'' if row.objects == 1 else 's'})" for row in rows]
    values = [f"{row.found:.2f} / {row.mean_best_iou:.2f}" for row in rows]
    legend = [
        (f"found: best IoU above {FOUND_IOU:g} over the video", _FOUND_COLOUR),
        ("mean best IoU", _IOU_COLOUR),
    ]
    label_width = int(max((measure.textlength(text, font=font) for text in labels), default=0)) + 2 * _MARGIN
    value_width = int(max((measure.textlength(text, font=font) for text in values), default=0)) + 2 * _MARGIN
    heading = [text for text in (title, subtitle) if text] + [text for text, _ in legend]
    heading_width = int(max(measure.textlength(text, font=font) for text in heading)) + 2 * _MARGIN
    width = max(label_width + _BAR_WIDTH + value_width, heading_width)
    header = _ROW_HEIGHT * len(heading) + _MARGIN
    height = header + _ROW_HEIGHT * len(rows) + 2 * _ROW_HEIGHT
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for line, text in enumerate(heading):
        colour = dict(legend).get(text, "black")
        draw.text((_MARGIN, _MARGIN // 2 + line * _ROW_HEIGHT), text, fill=colour, font=font)
    left, right = label_width, label_width + _BAR_WIDTH
    for index, row in enumerate(rows):
        top = header + index * _ROW_HEIGHT
        draw.text((_MARGIN, top + 4), labels[index], fill="black", font=font)
        half = (_ROW_HEIGHT - 4) // 2
        for offset, value, colour in ((0, row.found, _FOUND_COLOUR), (half, row.mean_best_iou, _IOU_COLOUR)):
            end = left + round(_BAR_WIDTH * min(max(value, 0.0), 1.0))
            draw.rectangle((left, top + 2 + offset, max(end, left + 1), top + 1 + offset + half), fill=colour)
        draw.text((right + _MARGIN, top + 4), values[index], fill="black", font=font)
    axis = header + _ROW_HEIGHT * len(rows) + 2
    draw.line((left, axis, right, axis), fill="grey")
    for tick in _SCALE:
        x = left + round(_BAR_WIDTH * tick)
        draw.line((x, header, x, axis + 3), fill=(200, 200, 200) if 0 < tick < 1 else "grey")
        text = f"{tick:g}"
        draw.text((x - measure.textlength(text, font=font) / 2, axis + 5), text, fill="black", font=font)
    return image


def save_recall_chart(rows: Sequence[GroupRecall], path: Path, title: str = "", subtitle: str = "") -> Path:
    """Draw the chart (:func:`draw_recall_chart`) and write it as a PNG; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_recall_chart(rows, title, subtitle).save(path)
    return path
