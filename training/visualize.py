"""Pictures of what a model sees: frames, ground truth, reconstructions and slot masks side by side, each row
named in a label column.

Slot ``k`` has the colour :func:`plugins.palette.slot_colours` gives it, as in the client's overlays, and the
overlay row is drawn as the client draws it (:func:`service.slot_overlay.render_overlay`: boundaries darkened).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from plugins import VideoOutput
from plugins.files import write_atomically
from plugins.palette import slot_colours
from plugins.segmentation import segment
from service.slot_overlay import render_overlay
from training.fonts import text_font

TargetKind = Literal["pixels", "features"]

BACKGROUND_COLOUR = (48, 48, 48)
"""Ground-truth background (id 0) in the ground-truth row; void pixels (-1, not scored) are black."""

FRAME_GAP = 1
"""White pixels between frames and between rows, before the picture is enlarged."""

LABEL_FONT_SIZE = 14
"""Size of the row names in pixels, in the enlarged picture."""


def sample_row_names(target_kind: TargetKind = "pixels", truth: bool = False) -> tuple[str, ...]:
    """The rows :func:`overlay_rows` draws, top to bottom, for a decoder of ``target_kind`` (a ``features`` decoder
    has no picture to show as its reconstruction) and with or without ground truth masks."""
    return (
        "frames",
        *(("ground truth",) if truth else ()),
        *(("reconstruction",) if target_kind == "pixels" else ()),
        "slot masks",
        "overlay",
    )


def overlay_rows(
    frames: torch.Tensor,
    output: VideoOutput,
    index: int = 0,
    alpha: float = 0.55,
    *,
    target_kind: TargetKind = "pixels",
    truth: torch.Tensor | None = None,
) -> np.ndarray:
    """An image with one column per frame and the rows :func:`sample_row_names` lists, separated by
    :data:`FRAME_GAP` white pixels.

    Tensors may require grad (an output computed outside ``torch.no_grad()``) and live on any device: they are
    detached and copied to the CPU.

    Args:
        frames: ``[B, T, 3, H, W]`` in ``[0, 1]``.
        output: the model's output for ``frames``.
        index: which clip of the batch to draw.
        alpha: opacity of the slot colours in the overlay row.
        target_kind: the decoder's ``target_kind``: a ``pixels`` decoder's reconstruction is drawn.
        truth: ``[T, H, W]`` ground-truth instance ids of clip ``index`` (0 background, -1 void), drawn as a row.

    Returns:
        ``[rows * (H + gap) - gap, T * (W + gap) - gap, 3]`` uint8.
    """
    video = frames[index].detach().float().cpu()  # [T, 3, H, W]
    steps, height, width = video.shape[0], *video.shape[-2:]
    masks = F.interpolate(
        output.masks[index].detach().float().cpu(), size=(height, width), mode="bilinear", align_corners=False
    )
    labels = segment(masks).numpy().astype(np.uint8)  # [T, K, H, W] -> [T, H, W], as the service segments
    slot_count = masks.shape[1]
    images = (video.permute(0, 2, 3, 1).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)  # [T, H, W, 3]
    rows = {"frames": images, "slot masks": slot_colours(range(slot_count))[labels]}  # [T, H, W] -> [T, H, W, 3]
    slot_ids = tuple(range(slot_count))
    overlays = [render_overlay(image, label, slot_ids, alpha) for image, label in zip(images, labels, strict=True)]
    rows["overlay"] = np.stack(overlays)  # T x [H, W, 3] -> [T, H, W, 3]
    if truth is not None:
        rows["ground truth"] = _truth_colours(truth.detach().cpu().numpy())
    if target_kind == "pixels":
        reconstruction = output.reconstruction[index].detach().float().cpu()  # [T, Pt, 3]
        grid = output.masks.shape[-2:]
        # [T, Pt, 3] -> [T, h, w, 3] -> [T, 3, h, w], then upsampled [T, 3, H, W] -> [T, H, W, 3]
        pixels = reconstruction.reshape(steps, *grid, 3).permute(0, 3, 1, 2)  # [T, 3, h, w]
        pixels = F.interpolate(pixels, size=(height, width), mode="nearest").permute(0, 2, 3, 1)
        rows["reconstruction"] = (pixels.clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)
    names = sample_row_names(target_kind, truth is not None)
    picture = np.full(
        (len(names) * (height + FRAME_GAP) - FRAME_GAP, steps * (width + FRAME_GAP) - FRAME_GAP, 3), 255, np.uint8
    )
    for row, name in enumerate(names):
        for step in range(steps):
            top, left = row * (height + FRAME_GAP), step * (width + FRAME_GAP)
            picture[top : top + height, left : left + width] = rows[name][step]
    return picture


def _truth_colours(truth: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` instance ids (0 background, -1 void) as ``[T, H, W, 3]`` uint8: object ``i`` in slot colour
    ``i``, the background in :data:`BACKGROUND_COLOUR`, void black."""
    ids = truth.astype(np.int64)
    colours = slot_colours(np.maximum(ids, 0))  # [T, H, W] -> [T, H, W, 3]
    colours[ids == 0] = BACKGROUND_COLOUR
    colours[ids < 0] = 0
    return colours


def save_overlay(
    frames: torch.Tensor,
    output: VideoOutput,
    path: str | os.PathLike[str],
    scale: int = 2,
    *,
    target_kind: TargetKind = "pixels",
    truth: torch.Tensor | None = None,
) -> Path:
    """Write :func:`overlay_rows` (``frames``, ``output``, ``target_kind`` and ``truth`` as there, so tensors that
    require grad or live on a GPU are fine) as a PNG at ``path`` (a path or a string; its folder is created),
    enlarged ``scale`` times with nearest-neighbour sampling, with the name of each row in a column on its left;
    returns ``path`` as a ``Path``. The file is written under a temporary name and renamed, so a failed write (a
    full disk) leaves no cut-off picture.

    Raises:
        OSError: the picture cannot be written.
    """
    path = Path(path)
    names = sample_row_names(target_kind, truth is not None)
    picture = Image.fromarray(overlay_rows(frames, output, target_kind=target_kind, truth=truth))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled = _labelled(picture, names)
    write_atomically(path, lambda temporary: labelled.save(temporary, format="PNG"))  # never a cut-off picture
    return path


def _labelled(picture: Image.Image, names: tuple[str, ...]) -> Image.Image:
    """``picture`` (its rows equally tall, ``names`` top to bottom) with a white column on its left naming each
    row, centred on it."""
    font = text_font(LABEL_FONT_SIZE)
    draw = ImageDraw.Draw(picture)
    widths = [draw.textlength(name, font=font) for name in names]
    column = int(max(widths)) + 12
    labelled = Image.new("RGB", (picture.width + column, picture.height), "white")
    labelled.paste(picture, (column, 0))
    row_height = picture.height / len(names)
    text = ImageDraw.Draw(labelled)
    for row, name in enumerate(names):
        _, top, _, bottom = text.textbbox((0, 0), name, font=font)  # the name's ink, from its top-left origin
        text.text((6, round((row + 0.5) * row_height - (top + bottom) / 2)), name, fill="black", font=font)
    return labelled
