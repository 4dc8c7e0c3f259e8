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

    Raises:
        DatasetError: If the file is missing, undecodable or in another image mode, or if it is a grayscale PNG
            whose non-zero values all lie below 128 (instance ids saved as gray levels, which the binary reading
            would silently turn into background).
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
        return (values >= 128).astype(np.int16)
    raise DatasetError(f"{path}: unsupported mask mode {mode!r}; expected palette 'P' (instance ids) or 'L' (binary)")


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
