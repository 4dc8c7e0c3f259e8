"""Pictures of what a model sees: frames, reconstructions and slot masks side by side."""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from plugins import VideoOutput
from plugins.segmentation import segment


def slot_palette(num_slots: int) -> np.ndarray:
    """``[K, 3]`` uint8 well-separated colours; slot ``k`` always gets colour ``k``."""
    hues = [(0.61803398875 * k) % 1.0 for k in range(num_slots)]
    colours = [colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues]
    return (np.array(colours) * 255).astype(np.uint8)


def overlay_rows(frames: torch.Tensor, output: VideoOutput, index: int = 0, alpha: float = 0.55) -> np.ndarray:
    """An image with one column per frame and rows: frame, reconstruction (pixel models), slot map, overlay.

    Tensors may require grad (an output computed outside ``torch.no_grad()``) and live on any device: they are
    detached and copied to the CPU.

    Args:
        frames: ``[B, T, 3, H, W]`` in ``[0, 1]``.
        output: the model's output for ``frames``.
        index: which clip of the batch to draw.
        alpha: opacity of the slot colours in the overlay row.

    Returns:
        ``[rows * H, T * W, 3]`` uint8.
    """
    video = frames[index].detach().float().cpu()  # [T, 3, H, W]
    height, width = video.shape[-2:]
    masks = F.interpolate(
        output.masks[index].detach().float().cpu(), size=(height, width), mode="bilinear", align_corners=False
    )
    labels = segment(masks).numpy()  # [T, K, H, W] -> [T, H, W], as the service segments
    palette = slot_palette(masks.shape[1])
    colour = palette[labels].astype(np.float32)  # [T, H, W, 3]
    images = video.permute(0, 2, 3, 1).numpy() * 255.0  # [T, 3, H, W] -> [T, H, W, 3]
    rows = [images, colour, (1 - alpha) * images + alpha * colour]
    reconstruction = output.reconstruction[index].detach().float().cpu()  # [T, Pt, Ct]
    if reconstruction.shape[-1] == 3:
        grid = output.masks.shape[-2:]
        # [T, Pt, 3] -> [T, h, w, 3] -> [T, 3, h, w], then upsampled [T, 3, H, W] -> [T, H, W, 3]
        pixels = reconstruction.reshape(reconstruction.shape[0], *grid, 3).permute(0, 3, 1, 2)  # [T, 3, h, w]
        pixels = F.interpolate(pixels, size=(height, width), mode="nearest").permute(0, 2, 3, 1)
        rows.insert(1, pixels.clamp(0, 1).numpy() * 255.0)
    strips = [np.concatenate(list(row), axis=1) for row in rows]  # each [T, H, W, 3] -> [H, T*W, 3]
    return np.concatenate(strips, axis=0).clip(0, 255).astype(np.uint8)  # rows x [H, T*W, 3] -> [rows*H, T*W, 3]


def save_overlay(frames: torch.Tensor, output: VideoOutput, path: str | os.PathLike[str], scale: int = 2) -> Path:
    """Write :func:`overlay_rows` (``frames`` and ``output`` as there, so tensors that require grad or live on a GPU
    are fine) as a PNG at ``path`` (a path or a string; its folder is created), enlarged ``scale`` times with
    nearest-neighbour sampling; returns ``path`` as a ``Path``."""
    path = Path(path)
    picture = Image.fromarray(overlay_rows(frames, output))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path
