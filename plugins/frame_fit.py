"""How a frame of any size is fitted to a model's input size: the boxes shared by training and serving.

A frame ``height x width`` is fitted to a model input ``size = (H, W)`` in one of three ways (:data:`FRAME_FITS`):

- ``"stretch"``: the whole frame is resized to ``size``; the aspect ratio is not preserved.
- ``"crop"``: the largest centred box of the frame with the aspect ratio of ``size`` (:func:`crop_box`) is resized
  to ``size``; the rest of the frame is not seen. Training's ``--frame-fit crop`` (its default) and the service's
  ``FRAME_FIT_CROP`` both use :func:`crop_box`, so a model sees the same pixels in both.
- ``"pad"``: the frame is placed centred on the smallest canvas with the aspect ratio of ``size`` that holds it
  (:func:`pad_box`), the rest of the canvas filled with :data:`PAD_VALUE`, and the canvas is resized to ``size``.

Every function returns the *model's view*: the box ``(top, left, height, width)`` of the frame's pixel grid that
is resized to the model's input, in whole pixels, with ``(0, 0)`` the frame's top-left pixel, rows down and
columns right. For a crop the box lies inside the frame; for a pad it holds the frame, so ``top`` and ``left`` are
``<= 0`` (minus the padding above and to the left). The box's aspect ratio matches ``size`` up to the rounding of
one side to whole pixels:

- the side that is cut (crop) or extended (pad) is ``round(other side * ratio)`` (Python's ``round``: halves go to
  the even integer), at least 1 pixel for a crop and at least the frame's side for a pad;
- the offset is the surplus halved and rounded down (``//``): an odd surplus leaves the extra pixel on the
  bottom or right, for a crop (cut off there) and for a pad (padded there) alike.

Pure integer arithmetic: no torch or image library is needed.
"""

from __future__ import annotations

from typing import Literal

FrameFitName = Literal["stretch", "crop", "pad"]
Box = tuple[int, int, int, int]
"""``(top, left, height, width)`` in frame pixels."""

FRAME_FITS: tuple[FrameFitName, ...] = ("stretch", "crop", "pad")
"""The ways to fit a frame, as the service's ``--frame-fit`` flag spells them."""

PAD_VALUE = 128
"""The 8-bit value of every channel of the padding (mid-grey: 128 / 255 = 0.502 in the model's input)."""


def crop_box(height: int, width: int, size: tuple[int, int]) -> Box:
    """The largest centred box of a ``height x width`` frame with the aspect ratio of ``size``.

    A frame wider than ``size`` keeps its full height and loses columns on both sides; any other frame keeps its
    full width and loses rows above and below (none when the ratios are equal).

    Args:
        height: the frame's height in pixels (>= 1).
        width: the frame's width in pixels (>= 1).
        size: the model's input ``(H, W)`` (both >= 1).

    Returns:
        ``(top, left, crop_height, crop_width)``, inside the frame.

    Raises:
        ValueError: a size is below 1.
    """
    _check(height, width, size)
    out_h, out_w = size
    if width * out_h > height * out_w:  # too wide
        crop_w = max(1, round(height * out_w / out_h))
        return 0, (width - crop_w) // 2, height, crop_w
    crop_h = max(1, round(width * out_h / out_w))
    return (height - crop_h) // 2, 0, crop_h, width


def pad_box(height: int, width: int, size: tuple[int, int]) -> Box:
    """The smallest canvas with the aspect ratio of ``size`` that holds a ``height x width`` frame centred.

    A frame wider than ``size`` keeps its width and is padded above and below; any other frame keeps its height
    and is padded left and right (not at all when the ratios are equal).

    Args:
        height: the frame's height in pixels (>= 1).
        width: the frame's width in pixels (>= 1).
        size: the model's input ``(H, W)`` (both >= 1).

    Returns:
        ``(top, left, canvas_height, canvas_width)`` in the frame's pixel grid: ``-top`` rows of padding above the
        frame and ``-left`` columns to its left (``top, left <= 0``); the frame covers rows ``[0, height)`` and
        columns ``[0, width)`` of it.

    Raises:
        ValueError: a size is below 1.
    """
    _check(height, width, size)
    out_h, out_w = size
    if width * out_h > height * out_w:  # too wide: pad rows
        canvas_h = max(height, round(width * out_h / out_w))
        return -((canvas_h - height) // 2), 0, canvas_h, width
    canvas_w = max(width, round(height * out_w / out_h))
    return 0, -((canvas_w - width) // 2), height, canvas_w


def fit_box(height: int, width: int, size: tuple[int, int], fit: FrameFitName) -> Box:
    """The model's view of a ``height x width`` frame under ``fit``: the whole frame for ``"stretch"``,
    :func:`crop_box` for ``"crop"``, :func:`pad_box` for ``"pad"``.

    Raises:
        ValueError: ``fit`` is not one of :data:`FRAME_FITS`, or a size is below 1.
    """
    if fit == "stretch":
        _check(height, width, size)
        return 0, 0, height, width
    if fit == "crop":
        return crop_box(height, width, size)
    if fit == "pad":
        return pad_box(height, width, size)
    raise ValueError(f"frame fit must be one of {', '.join(FRAME_FITS)}, got {fit!r}")


def _check(height: int, width: int, size: tuple[int, int]) -> None:
    if height < 1 or width < 1 or size[0] < 1 or size[1] < 1:
        raise ValueError(f"frame and model sizes must be >= 1, got a {height}x{width} frame for {size[0]}x{size[1]}")
