"""The font the project's pictures write their text in (sample row names, chart labels)."""

from __future__ import annotations

from PIL import ImageFont


def text_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels where Pillow has FreeType, else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()
