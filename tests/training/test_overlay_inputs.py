"""``save_overlay`` draws a model output computed with gradients (outside ``torch.no_grad()``), as a notebook
gets it from ``model(frames)``, and takes its path as a string too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from plugins import VideoSlotModel
from training.visualize import overlay_rows, save_overlay


def test_an_output_that_requires_grad_is_drawn_as_without_gradients(tiny_model: VideoSlotModel, tmp_path) -> None:
    frames = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    tiny_model.eval()
    output = tiny_model(frames)
    assert output.masks.requires_grad and output.reconstruction.requires_grad
    with torch.no_grad():
        expected = overlay_rows(frames, tiny_model(frames))
    np.testing.assert_array_equal(overlay_rows(frames, output), expected)
    path = save_overlay(frames, output, str(tmp_path / "pictures" / "overlay.png"), scale=1)
    assert path == tmp_path / "pictures" / "overlay.png" and isinstance(path, Path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
