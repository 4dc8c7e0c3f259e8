"""8-bit RGB or grayscale from any Pillow image, as training and serving read frames.

Training (``training.datasets.images.read_frame``), the server (``service.images``) and the command-line client's
folder source (``service.client.sources``) all read a frame image through :func:`rgb_or_gray`, so a file gives the
same 8-bit values in each:

- ``RGB`` and 8-bit grayscale (``L``) are kept as they are (loaded in place, not copied);
- 16-bit grayscale (Pillow modes ``I;16*``, or ``I`` as older Pillow versions read 16-bit PNGs) keeps its top 8
  bits (value >> 8), so full white stays white; Pillow's own conversion would clip every value above 255 to 255;
- bilevel (``1``: 0 or 255) and grayscale with alpha (``LA``: the alpha dropped) become ``L``;
- every other mode (palette, RGBA with the alpha dropped, CMYK without a colour profile, ...) is converted to
  ``RGB`` by Pillow;
- values with no 8-bit reading are refused (:class:`PixelRangeError`): mode ``I`` beyond 0-65535, and
  floating-point images (``F``), whose range is unknown.

Video frames decoded by PyAV are turned upright the same way everywhere (:func:`upright_rgb`).

Pure numpy and Pillow: no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
"""16-bit grayscale as Pillow reads it (``I``: 32-bit integers, as older Pillow versions read 16-bit PNGs)."""
TO_GRAY_MODES = frozenset({"1", "LA"})
"""Modes converted to ``L`` by Pillow: bilevel (0 and 255), and grayscale with alpha (the alpha dropped)."""
KEPT_MODES = frozenset({"RGB", "L"})
"""Modes returned as they are."""


class PixelRangeError(ValueError):
    """An image whose values have no 8-bit reading: mode ``I`` outside 0-65535, or floating-point (``F``).

    Attributes:
        mode: the image's Pillow mode.
        detail: what is wrong with its values, e.g. ``"values 0-70000, outside the 16-bit range 0-65535"``
            (the message is ``"a '<mode>' image with <detail>"``).
    """

    def __init__(self, mode: str, detail: str) -> None:
        super().__init__(f"a {mode!r} image with {detail}")
        self.mode = mode
        self.detail = detail


def rgb_or_gray(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit ``RGB``, or as ``L`` when it is grayscale (the module docstring's rules).

    Args:
        image: a Pillow image of any mode, opened or loaded.

    Returns:
        ``image`` itself (loaded) when it is ``RGB`` or ``L``; otherwise a new ``RGB`` or ``L`` image.

    Raises:
        PixelRangeError: mode ``I`` with values outside 0-65535, or mode ``F``.
        OSError, ValueError, SyntaxError: Pillow cannot decode the image's data.
    """
    mode = image.mode
    if mode in KEPT_MODES:
        image.load()
        return image
    if mode == "F":
        raise PixelRangeError(mode, "floating-point values, whose range is unknown")
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)  # [H, W] uint16 (I;16*) or int32 (I)
        if values.size and (int(values.min()) < 0 or int(values.max()) > 65535):
            raise PixelRangeError(
                mode, f"values {int(values.min())}-{int(values.max())}, outside the 16-bit range 0-65535"
            )
        return Image.fromarray((values >> 8).astype(np.uint8))  # [H, W] uint8: mode L
    return image.convert("L" if mode in TO_GRAY_MODES else "RGB")


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """``image`` read by :func:`rgb_or_gray` as uint8 ``[H, W, 3]``, a grayscale one replicated into R, G and B.

    Raises:
        PixelRangeError, OSError, ValueError, SyntaxError: as :func:`rgb_or_gray`.
    """
    pixels = np.asarray(rgb_or_gray(image))  # [H, W, 3], or [H, W] for a grayscale image
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)  # [H, W] -> [H, W, 1] -> [H, W, 3]
    return pixels


def upright_rgb(frame: Any) -> np.ndarray:
    """The pixels of a PyAV video frame as a player shows them: uint8 ``[H, W, 3]`` RGB, turned by the rotation of
    the file's display matrix (``frame.rotation``: degrees counter-clockwise, rounded to quarter turns), as decord
    turns the frames it decodes. A phone video stored sideways with a 90-degree matrix thus reads upright (and
    ``H`` and ``W`` swap) in training with either backend (``training.datasets.decoding``), in the client and in
    ``service.extract`` (``service.client.sources``) alike. Mirroring in the matrix is not applied, as decord does
    not apply it."""
    rgb: np.ndarray = frame.to_ndarray(format="rgb24")  # [H, W, 3] as stored
    quarter_turns = round(float(frame.rotation or 0) / 90) % 4  # PyAV >= 14.1 (pyproject.toml)
    if not quarter_turns:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns))  # [H, W, 3], or [W, H, 3] for an odd quarter_turns
