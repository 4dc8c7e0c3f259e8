"""Reading frame and mask image files with the conventions of DAVIS 2016 and DAVIS 2017."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from plugins.pixels import PixelRangeError, rgb_pixels
from training.datasets.errors import DatasetError

VOID_ID = 255
"""Palette index that DAVIS 2017 tools use for void pixels (object borders, unlabelled regions)."""

VOID_LABEL = -1
"""What :func:`read_mask` returns for void pixels: the metrics leave them out (``training.metrics.IGNORE_ID``)."""


def is_visible(path: Path) -> bool:
    """Whether ``path`` is not hidden (its name does not start with ``.``, as macOS's ``._`` resource files)."""
    return not path.name.startswith(".")


def read_frame(path: Path) -> np.ndarray:
    """Reads an image as uint8 [H, W, 3] RGB, by :func:`plugins.pixels.rgb_pixels` (as the server reads frames).

    8-bit images of any mode are converted to RGB. 16-bit grayscale images (PNG; Pillow modes ``I;16*``, or
    ``I`` as older Pillow versions read them) keep their top 8 bits (value >> 8), so full white stays white.

    Raises:
        DatasetError: If the file is missing or cannot be decoded, if it is a floating-point image (mode ``F``,
            whose range is unknown), or a 32-bit integer image (``I``) with values outside 0-65535.
    """
    try:
        with Image.open(path) as image:
            return rgb_pixels(image)  # [H, W, 3]
    except PixelRangeError as err:  # values with no 8-bit reading
        if err.mode == "F":
            raise DatasetError(
                f"{path}: floating-point frame image (mode 'F') has no known value range; save frames as 8-bit RGB"
            ) from err
        raise DatasetError(
            f"{path}: {err.mode!r} frame image with {err.detail}; save frames as 8-bit RGB or 16-bit grayscale"
        ) from err
    except (OSError, SyntaxError) as err:
        raise DatasetError(f"{path}: cannot read frame image ({err})") from err


def read_mask(path: Path) -> np.ndarray:
    """Reads an instance mask as int16 [H, W] ids (0 = background, ``VOID_LABEL`` = void, not scored).

    Palette (``P``) PNGs, as in DAVIS 2017, hold instance ids as palette indices (index 255 is void).
    Grayscale (``L`` or ``1``) PNGs, as in DAVIS 2016, are binary: values >= 128 are object 1, the rest background.
    A palette PNG whose used indices all show the gray of their own value (index ``v`` shows ``(v, v, v)``) and
    whose non-zero indices are all >= 128 is a binary grayscale mask that an editor saved with a palette, and is
    read as one: its 255 is the object, not void (the DAVIS 2017 palette shows void, index 255, as (224, 224,
    192)). Gray palette PNGs with smaller indices keep the palette reading (ids, 255 void).

    A grayscale mask holding instance ids as gray levels (``cv2.imwrite(ids * 85)``: 0, 85, 170, 255) has no binary
    reading (object 1 would turn into background, objects 2 and 3 merge), and is refused: a grayscale mask is taken
    for instance ids when two or more of its gray levels each cover an area (:func:`_gray_levels`), where the
    binary masks of DAVIS 2016 hold one, with anti-aliased or compression-blurred edges at most.

    Raises:
        DatasetError: If the file is missing, undecodable or in another image mode, or if it is a grayscale PNG
            whose non-zero values all lie below 128, or that holds two or more gray levels each covering an area
            (instance ids saved as gray levels, which the binary reading would silently turn into background or
            merge).
    """
    if not path.is_file():
        raise DatasetError(f"{path}: mask file is missing")
    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.asarray(image)  # [H, W]
            palette = image.getpalette() if mode == "P" else None
    except (OSError, SyntaxError) as err:
        raise DatasetError(f"{path}: cannot read mask image ({err})") from err
    if mode == "P" and palette is not None and _is_binary_gray(values, palette):
        mode = "L"
    if mode == "P":
        ids = values.astype(np.int16)
        ids[ids == VOID_ID] = VOID_LABEL
        return ids
    if mode == "1":
        return values.astype(np.int16)
    if mode == "L":
        if values.any() and values.max() < 128:
            present = np.unique(values[values > 0])  # the non-zero values
            found = ", ".join(str(v) for v in present[:5]) + (", ..." if len(present) > 5 else "")
            raise DatasetError(
                f"{path}: grayscale mask whose values ({found}) are all below 128; grayscale masks are binary "
                "(object >= 128, as in DAVIS 2016): save instance ids as a palette ('P') PNG, as in DAVIS 2017"
            )
        levels = _gray_levels(values)
        if len(levels) > 1:
            raise DatasetError(
                f"{path}: grayscale mask with {len(levels)} gray levels that each cover an area "
                f"({', '.join(str(v) for v in levels)}): instance ids saved as gray levels, which the binary reading "
                "of grayscale masks (object >= 128, as in DAVIS 2016) would merge or turn into background; save "
                "instance ids as a palette ('P') PNG, as in DAVIS 2017, or a single object as a binary 0/255 mask"
            )
        return (values >= 128).astype(np.int16)
    raise DatasetError(f"{path}: unsupported mask mode {mode!r}; expected palette 'P' (instance ids) or 'L' (binary)")


_NEAR_BLACK = 32
"""Gray values below this count as black (0) in :func:`_gray_levels`: the noise lossy compression leaves."""

_NEAR_WHITE = 224
"""Gray values from this up count as white (255) in :func:`_gray_levels`."""

_LEVEL_AREA = 1e-3
"""The fraction of a mask's pixels a gray level's inner pixels must cover to count as an area
(:func:`_gray_levels`)."""


def _gray_levels(values: np.ndarray) -> list[int]:
    """The non-zero gray levels of the grayscale mask ``values`` [H, W] that each cover an area, in increasing order.

    Values below :data:`_NEAR_BLACK` count as 0 and values from :data:`_NEAR_WHITE` up as 255 (the noise a binary mask
    that went through JPEG keeps near black and white). A level covers an area when its inner pixels (those whose
    four neighbours hold the same level) make at least :data:`_LEVEL_AREA` of the mask's pixels (and one pixel): the
    values along an anti-aliased, blurred or resampled edge form lines one or two pixels wide, which have next to
    no inner pixels, where an object drawn in a gray level is filled with it. A binary DAVIS 2016 mask gives
    ``[255]`` (or ``[]`` without an object), instance ids saved as ``ids * 85`` give ``[85, 170, 255]``.
    """
    levels = np.where(values < _NEAR_BLACK, 0, np.where(values >= _NEAR_WHITE, 255, values)).astype(np.uint8)
    inner = levels[1:-1, 1:-1]  # [H-2, W-2]: each pixel's four neighbours are the shifted views below
    same = (inner == levels[:-2, 1:-1]) & (inner == levels[2:, 1:-1]) & (inner == levels[1:-1, :-2])
    same &= inner == levels[1:-1, 2:]
    counts = np.bincount(inner[same], minlength=256)  # [256]: inner pixels per level
    enough = max(1.0, _LEVEL_AREA * values.size)
    return [level for level in range(1, 256) if counts[level] >= enough]


def _is_binary_gray(indices: np.ndarray, palette: list[int]) -> bool:
    """Whether the palette image ``indices`` [H, W] is a binary grayscale mask saved with a gray palette.

    True when every used index ``v`` shows the gray (v, v, v) in ``palette`` (Pillow's flattened [r0, g0, b0, r1,
    ...] list; an index beyond its end is not gray) and every non-zero used index is at least 128.
    """
    colours = np.asarray(palette, dtype=np.int64).reshape(-1, 3)  # [3*entries] -> [entries, 3]
    used = np.unique(indices).astype(np.int64)  # [U]
    if used.max() >= len(colours) or not (colours[used] == used[:, None]).all():  # [U, 3] == ([U] -> [U, 1])
        return False
    return bool((used[used > 0] >= 128).all())


def check_same_size(mask: np.ndarray, frame_shape: tuple[int, ...], mask_path: Path, frame_source: str) -> None:
    """Raises DatasetError naming ``mask_path`` if the mask's [H, W] differs from the frame's.

    Raises:
        DatasetError: the mask's ``[H, W]`` differs from the frame's.
    """
    if tuple(mask.shape[:2]) != tuple(frame_shape[:2]):
        raise DatasetError(
            f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} does not match frame size "
            f"{frame_shape[1]}x{frame_shape[0]} of {frame_source}"
        )


def mask_files(folder: Path) -> dict[str, Path]:
    """The visible PNG files of ``folder`` by stem, whatever the case of their extension (``00000.png`` or
    ``00000.PNG``); empty when ``folder`` is not a folder.

    Raises:
        DatasetError: two files with one stem (``00000.png`` and ``00000.PNG``): the message names both.
    """
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (is_visible(path) and path.suffix.lower() == ".png" and path.is_file()):
            continue
        if path.stem in found:
            raise DatasetError(f"{path}: a second mask file for frame {path.stem} ({found[path.stem].name}); keep one")
        found[path.stem] = path
    return found
