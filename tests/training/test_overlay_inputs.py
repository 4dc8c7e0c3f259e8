"""``save_overlay`` draws a model output computed with gradients (outside ``torch.no_grad()``), as a notebook
gets it from ``model(frames)``, and takes its path as a string too; the picture's rows are the ones it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from plugins import VideoSlotModel
from plugins.palette import slot_colours
from training.visualize import BACKGROUND_COLOUR, FRAME_GAP, overlay_rows, sample_row_names, save_overlay

SIDE = 16


def _frames() -> torch.Tensor:
    return torch.rand(1, 2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0), requires_grad=True)


def test_an_output_that_requires_grad_is_drawn_as_without_gradients(tiny_model: VideoSlotModel, tmp_path) -> None:
    frames = _frames()
    tiny_model.eval()
    output = tiny_model(frames)
    assert output.masks.requires_grad and output.reconstruction.requires_grad
    with torch.no_grad():
        expected = overlay_rows(frames, tiny_model(frames))
    np.testing.assert_array_equal(overlay_rows(frames, output), expected)
    path = save_overlay(frames, output, str(tmp_path / "pictures" / "overlay.png"), scale=1)
    assert path == tmp_path / "pictures" / "overlay.png" and isinstance(path, Path)
    saved = np.asarray(Image.open(path))
    assert saved.shape[0] == expected.shape[0] and saved.shape[1] > expected.shape[1]  # the row names' column
    np.testing.assert_array_equal(saved[:, -expected.shape[1] :], expected)


def _rows(picture: np.ndarray) -> list[np.ndarray]:
    """The rows of an :func:`overlay_rows` picture of two frames ``SIDE`` pixels square, each ``[SIDE, 2 * SIDE +
    gap, 3]``."""
    count = (picture.shape[0] + FRAME_GAP) // (SIDE + FRAME_GAP)
    assert picture.shape[0] == count * (SIDE + FRAME_GAP) - FRAME_GAP
    return [picture[row * (SIDE + FRAME_GAP) : row * (SIDE + FRAME_GAP) + SIDE] for row in range(count)]


def test_the_rows_drawn_are_the_rows_named(tiny_model: VideoSlotModel) -> None:
    frames = _frames().detach()
    truth = torch.zeros(2, SIDE, SIDE, dtype=torch.int64)
    truth[:, :4, :4] = 2
    truth[:, -1] = -1  # void: not scored
    with torch.no_grad():
        output = tiny_model.eval()(frames)
    assert sample_row_names() == ("frames", "reconstruction", "slot masks", "overlay")
    assert sample_row_names("features", truth=True) == ("frames", "ground truth", "slot masks", "overlay")
    plain = _rows(overlay_rows(frames, output))
    assert len(plain) == 4
    features = _rows(overlay_rows(frames, output, target_kind="features", truth=truth))
    assert len(features) == 4  # no reconstruction: a features decoder's output is no picture
    np.testing.assert_array_equal(features[0], plain[0])  # the frames
    truth_row = features[1][:, :SIDE]  # the first frame's ground truth
    np.testing.assert_array_equal(truth_row[:4, :4], np.broadcast_to(slot_colours([2])[0], (4, 4, 3)))
    np.testing.assert_array_equal(truth_row[5:-1, 5:], np.broadcast_to(BACKGROUND_COLOUR, (10, 11, 3)))
    np.testing.assert_array_equal(truth_row[-1], np.zeros((SIDE, 3), np.uint8))
    np.testing.assert_array_equal(features[2:], plain[2:])  # slot masks and overlay
    assert (features[0][:, SIDE] == 255).all()  # the white gap between the frames


def test_slot_k_has_the_colour_of_the_clients_overlay(tiny_model: VideoSlotModel) -> None:
    from service.slot_overlay import render_overlay

    frames = _frames().detach()
    with torch.no_grad():
        output = tiny_model.eval()(frames)
    slot_masks = _rows(overlay_rows(frames, output))[2][:, :SIDE]  # [H, W, 3] of the first frame
    palette = slot_colours(range(tiny_model.num_slots))  # [K, 3]
    assert {tuple(colour) for colour in slot_masks.reshape(-1, 3)} <= {tuple(colour) for colour in palette}
    slots = tiny_model.num_slots
    bands = np.repeat(np.arange(slots, dtype=np.uint8), 3)[None]  # [1, 3K]: slot k in columns 3k .. 3k + 2
    client = render_overlay(np.zeros((1, 3 * slots, 3), np.uint8), bands, tuple(range(slots)), alpha=1.0)
    np.testing.assert_array_equal(client[0, 1::3], palette)  # each band's middle: no boundary darkens it
