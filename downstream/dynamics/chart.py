"""A line chart of a dynamics head's rollout error by frames ahead, beside repeating the last observed frame
(``python -m downstream.dynamics``' ``rollout.png`` and ``evaluate --plot``), drawn with Pillow alone."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from downstream.dynamics.scores import RolloutScores
from plugins.files import write_atomically
from training.fonts import text_font

_SIZE = (480, 300)
_PLOT = (60, 40, 460, 250)  # left, top, right, bottom of the plotting area
_HEAD_COLOUR = (52, 120, 200)
_COPY_COLOUR = (235, 150, 40)
_AXIS_COLOUR = (90, 90, 90)


def draw_rollout_chart(scores: RolloutScores, title: str = "") -> Image.Image:
    """The mean squared error at each step ahead: the head's (blue) and repeating the last frame's (orange), on a
    scale from 0 to the larger of the two, with the steps along the bottom."""
    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = text_font(12)
    left, top, right, bottom = _PLOT
    steps = len(scores.mse)
    highest = max(*scores.mse, *scores.copy_last_mse) or 1.0

    def point(step: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * (step / max(steps - 1, 1))
        return x, bottom - (bottom - top) * value / highest

    draw.line([(left, top), (left, bottom), (right, bottom)], fill=_AXIS_COLOUR)
    for fraction in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * fraction
        draw.text((4, y - 6), f"{highest * fraction:.3g}", fill=_AXIS_COLOUR, font=font)
    for step in range(steps):
        draw.text((point(step, 0)[0] - 3, bottom + 4), str(step + 1), fill=_AXIS_COLOUR, font=font)
    draw.text((left, bottom + 20), "frames ahead", fill=_AXIS_COLOUR, font=font)
    for values, colour, label, row in (
        (scores.mse, _HEAD_COLOUR, f"head (mean {scores.mean_mse:.3g})", 0),
        (scores.copy_last_mse, _COPY_COLOUR, f"repeating the last frame (mean {scores.mean_copy_last_mse:.3g})", 1),
    ):
        line = [point(step, value) for step, value in enumerate(values)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for x, y in line:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((left + 10, top + 4 + 16 * row), label, fill=colour, font=font)
    heading = title or f"mean squared error of the slots, {scores.windows} windows"
    draw.text((left, 12), heading, fill=(0, 0, 0), font=font)
    return image


def save_rollout_chart(scores: RolloutScores, path: Path, title: str = "") -> Path:
    """Draw the chart (:func:`draw_rollout_chart`) and write it to ``path`` as a PNG, atomically; returns ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    chart = draw_rollout_chart(scores, title)
    write_atomically(path, lambda temporary: chart.save(temporary, format="PNG"), through_links=True)
    return path


__all__ = ["draw_rollout_chart", "save_rollout_chart"]
