"""Horizontal bar charts of pairs of values on a 0-1 scale, one line per row, drawn with Pillow alone (the object
recall chart, the property probe's chart)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from training.fonts import text_font

FONT_SIZE = 13
"""Text size in pixels (Pillow's built-in font; its small bitmap font where Pillow lacks FreeType)."""

FIRST_COLOUR = (52, 120, 200)
"""The colour of each row's first bar (blue)."""
SECOND_COLOUR = (235, 150, 40)
"""The colour of each row's second bar (orange)."""

_ROW_HEIGHT = 22
_BAR_WIDTH = 300
_MARGIN = 10
_SCALE = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class BarRow:
    """One line of the chart: its label, its two values (drawn clipped to 0-1) and the text written after them."""

    label: str
    first: float
    second: float
    text: str


def draw_paired_bars(
    rows: Sequence[BarRow], legend: tuple[str, str], title: str = "", subtitle: str = ""
) -> Image.Image:
    """One line per row: its first value (blue) and its second (orange) as bars on the 0-1 scale drawn under
    them, with the row's text on the right. ``title`` and ``subtitle`` head the chart, then ``legend`` names the
    two bars in their colours; the chart is wide enough for every text it holds."""
    font = text_font(FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    colours = dict(zip(legend, (FIRST_COLOUR, SECOND_COLOUR), strict=True))
    label_width = int(max((measure.textlength(row.label, font=font) for row in rows), default=0)) + 2 * _MARGIN
    value_width = int(max((measure.textlength(row.text, font=font) for row in rows), default=0)) + 2 * _MARGIN
    heading = [text for text in (title, subtitle) if text] + list(legend)
    heading_width = int(max(measure.textlength(text, font=font) for text in heading)) + 2 * _MARGIN
    width = max(label_width + _BAR_WIDTH + value_width, heading_width)
    header = _ROW_HEIGHT * len(heading) + _MARGIN
    height = header + _ROW_HEIGHT * len(rows) + 2 * _ROW_HEIGHT
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for line, text in enumerate(heading):
        draw.text((_MARGIN, _MARGIN // 2 + line * _ROW_HEIGHT), text, fill=colours.get(text, "black"), font=font)
    left, right = label_width, label_width + _BAR_WIDTH
    half = (_ROW_HEIGHT - 4) // 2
    for index, row in enumerate(rows):
        top = header + index * _ROW_HEIGHT
        draw.text((_MARGIN, top + 4), row.label, fill="black", font=font)
        for offset, value, colour in ((0, row.first, FIRST_COLOUR), (half, row.second, SECOND_COLOUR)):
            end = left + round(_BAR_WIDTH * min(max(value, 0.0), 1.0))
            draw.rectangle((left, top + 2 + offset, max(end, left + 1), top + 1 + offset + half), fill=colour)
        draw.text((right + _MARGIN, top + 4), row.text, fill="black", font=font)
    axis = header + _ROW_HEIGHT * len(rows) + 2
    draw.line((left, axis, right, axis), fill="grey")
    for tick in _SCALE:
        x = left + round(_BAR_WIDTH * tick)
        draw.line((x, header, x, axis + 3), fill=(200, 200, 200) if 0 < tick < 1 else "grey")
        text = f"{tick:g}"
        draw.text((x - measure.textlength(text, font=font) / 2, axis + 5), text, fill="black", font=font)
    return image


__all__ = ["FIRST_COLOUR", "FONT_SIZE", "SECOND_COLOUR", "BarRow", "draw_paired_bars"]
