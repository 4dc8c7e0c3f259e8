"""The chart of a probe's scores (``scores.png`` beside a trained probe): per property, the probe's score (blue)
and the guess's without slots (orange), accuracy or R² on the 0-1 scale."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from downstream.probes.scores import PropertyScore
from plugins.files import write_atomically
from training.bar_chart import BarRow, draw_paired_bars


def draw_probe_chart(scores: list[PropertyScore], title: str = "", subtitle: str = "") -> Image.Image:
    """One line per property: the probe's accuracy (categorical) or R² (continuous) and the guess's, with both
    values written on the right (R² below 0 is drawn as 0 and written as it is)."""
    rows = [
        BarRow(
            f"{score.name} ({'accuracy' if score.kind == 'categorical' else 'R^2'})",
            score.score,
            score.baseline,
            f"{_two_places(score.score)} / {_two_places(score.baseline)}",
        )
        for score in scores
    ]
    return draw_paired_bars(rows, ("probe on the slots", "guess without them"), title, subtitle)


def _two_places(value: float) -> str:
    """``value`` to two decimal places, without a minus sign on a value that rounds to zero."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def save_probe_chart(scores: list[PropertyScore], path: Path, title: str = "", subtitle: str = "") -> Path:
    """Draw the chart (:func:`draw_probe_chart`) and write it to ``path`` as a PNG, atomically; returns ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    chart = draw_probe_chart(scores, title, subtitle)
    write_atomically(path, lambda temporary: chart.save(temporary, format="PNG"), through_links=True)
    return path


__all__ = ["draw_probe_chart", "save_probe_chart"]
