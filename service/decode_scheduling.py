"""Where a stream's frame is decoded: on the event loop when that is cheaper than a hop to the decode pool
(:func:`cheap_to_decode`), else on the pool, timed there (:func:`run_timed`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from service.image_headers import header_size, image_format
from service.images import fitted_pixels
from service.types import EncodedImage, FrameFit, ImageEncoding

INLINE_RAW_PIXELS = 256 * 256
"""Largest frame (after fitting) decoded and fitted on the event loop."""
INLINE_ENCODED_BYTES = 16 * 1024
"""Largest encoded (PNG, JPEG) frame decoded on the event loop."""


def cheap_to_decode(image: EncodedImage, size: tuple[int, int], fit: FrameFit) -> bool:
    """Small frames are decoded and fitted on the event loop (well under a millisecond); larger ones on the decode
    pool.

    An encoded image is small when both its bytes and its pixels are: a few KB of PNG can hold millions of pixels.
    The pixels are those its header declares, read by :func:`header_size` with a few struct reads (not Pillow,
    whose header parse inflates a PNG's text chunks: 80 ms for 15 KB); counted after fitting to the model's input
    ``size``, which for ``PAD`` is the padded canvas (:func:`fitted_pixels`: a thin frame can make a large one).
    Data that is not a PNG or JPEG counts as small, since decoding refuses it at once; a PNG or JPEG whose header
    :func:`header_size` does not read counts as large.
    """
    if image.encoding == ImageEncoding.RAW_RGB8:
        return fitted_pixels(image.height, image.width, size, fit) <= INLINE_RAW_PIXELS
    if len(image.data) > INLINE_ENCODED_BYTES:
        return False
    declared = header_size(image.data)
    if declared is None:
        return image_format(image.data) is None
    width, height = declared
    return fitted_pixels(height, width, size, fit) <= INLINE_RAW_PIXELS


_T = TypeVar("_T")


async def run_timed(executor: Executor, function: Callable[..., _T], *args: object) -> tuple[_T, float]:
    """``function(*args)`` run on ``executor``, and the seconds it ran there: timed on the pool thread, so the wait for
    a free thread (and for the event loop to take the result) is not in it, and is left to the caller's queue time."""

    def timed() -> tuple[_T, float]:
        started = time.perf_counter()
        result = function(*args)
        return result, time.perf_counter() - started

    return await asyncio.get_running_loop().run_in_executor(executor, timed)


__all__ = ["INLINE_ENCODED_BYTES", "INLINE_RAW_PIXELS", "cheap_to_decode", "run_timed"]
