"""``plugins.frame_fit``: the crop and pad boxes shared by training and serving, on hand-computed cases, and
training's centre crop made of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugins import frame_fit
from plugins.frame_fit import FRAME_FITS, PAD_VALUE, crop_box, fit_box, pad_box
from training.datasets import transforms
from training.datasets.transforms import frames_to_tensor, masks_to_tensor

# (frame height, frame width, model size) -> expected box, worked out by hand in the comments.
CROPS = [
    ((48, 96, (24, 24)), (0, 24, 48, 48)),  # landscape: 48 of 96 columns kept, 24 cut each side
    ((96, 48, (24, 24)), (24, 0, 48, 48)),  # portrait: 48 of 96 rows kept, 24 cut above and below
    ((40, 40, (24, 24)), (0, 0, 40, 40)),  # square into square: the whole frame
    ((30, 40, (24, 32)), (0, 0, 30, 40)),  # same 3:4 ratio: the whole frame
    ((5, 8, (24, 24)), (0, 1, 5, 5)),  # odd surplus 3: 1 column cut on the left, 2 on the right
    ((8, 5, (24, 24)), (1, 0, 5, 5)),  # odd surplus 3: 1 row cut above, 2 below
    ((7, 10, (2, 3)), (0, 0, 7, 10)),  # 10 * 2 = 20 < 7 * 3 = 21: too tall; round(10 * 2 / 3) = round(6.67) = 7
    ((9, 10, (2, 3)), (1, 0, 7, 10)),  # too tall: 7 rows of 9, surplus 2, 1 above
    ((45, 100, (16, 9)), (0, 37, 45, 25)),  # into a portrait model: round(45 * 9 / 16) = round(25.3) = 25, 75 // 2
    ((10, 3, (1, 5)), (4, 0, 1, 3)),  # 3:1 into 5:1 is too tall: round(3 / 5) = round(0.6) = 1 row, (10 - 1) // 2
    ((1, 1000, (10, 10)), (0, 499, 1, 1)),  # one row: a 1x1 crop, (1000 - 1) // 2 = 499 on the left
    ((3, 1, (1, 10)), (1, 0, 1, 1)),  # max(1, round(0.1)) = 1 row at least
]
PADS = [
    ((48, 96, (24, 24)), (-24, 0, 96, 96)),  # landscape: a 96x96 canvas, 24 grey rows above and below
    ((96, 48, (24, 24)), (0, -24, 96, 96)),  # portrait: 24 grey columns left and right
    ((40, 40, (24, 24)), (0, 0, 40, 40)),  # no padding
    ((30, 40, (24, 32)), (0, 0, 30, 40)),  # same ratio: no padding
    ((5, 8, (24, 24)), (-1, 0, 8, 8)),  # odd surplus 3: 1 row above, 2 below
    ((8, 5, (24, 24)), (0, -1, 8, 8)),  # odd surplus 3: 1 column left, 2 right
    ((9, 10, (2, 3)), (0, -2, 9, 14)),  # too tall: round(9 * 3 / 2) = round(13.5) = 14 (even), surplus 4, 2 left
    ((7, 10, (2, 3)), (0, 0, 7, 10)),  # too tall by a hair: round(10.5) = 10 (even) = the width, no padding
    ((1, 1000, (10, 10)), (-499, 0, 1000, 1000)),  # one row: (1000 - 1) // 2 = 499 rows above, 500 below
]


@pytest.mark.parametrize(("args", "box"), CROPS, ids=[f"{h}x{w}->{s[0]}x{s[1]}" for (h, w, s), _ in CROPS])
def test_crop_box_on_hand_computed_cases(args, box):
    assert crop_box(*args) == box
    assert fit_box(*args, "crop") == box


@pytest.mark.parametrize(("args", "box"), PADS, ids=[f"{h}x{w}->{s[0]}x{s[1]}" for (h, w, s), _ in PADS])
def test_pad_box_on_hand_computed_cases(args, box):
    height, width, _ = args
    top, left, canvas_h, canvas_w = pad_box(*args)
    assert (top, left, canvas_h, canvas_w) == box
    assert fit_box(*args, "pad") == box
    assert top <= 0 and left <= 0 and -top + height <= canvas_h and -left + width <= canvas_w, "holds the frame"


@pytest.mark.parametrize("size", [(24, 24), (24, 40), (40, 24), (7, 3)])
@pytest.mark.parametrize("frame", [(48, 96), (96, 48), (31, 57), (57, 31), (1, 9), (13, 13)])
def test_boxes_keep_the_model_aspect_ratio_to_a_pixel_and_stay_centred(frame, size):
    height, width = frame
    top, left, box_h, box_w = crop_box(height, width, size)
    assert top >= 0 and left >= 0 and top + box_h <= height and left + box_w <= width
    assert (box_h == height or box_w == width) and min(box_h, box_w) >= 1
    assert abs(box_w * size[0] - box_h * size[1]) < max(size), "one side rounded to a whole pixel (at least 1)"
    assert top == (height - box_h) // 2 and left == (width - box_w) // 2
    top, left, box_h, box_w = pad_box(height, width, size)
    assert (box_h == height or box_w == width) and box_h >= height and box_w >= width
    assert abs(box_w * size[0] - box_h * size[1]) < max(size)
    assert -top == (box_h - height) // 2 and -left == (box_w - width) // 2


def test_stretch_is_the_whole_frame_and_unknown_fits_or_sizes_are_refused():
    assert FRAME_FITS == ("stretch", "crop", "pad") and PAD_VALUE == 128
    assert fit_box(48, 96, (24, 24), "stretch") == (0, 0, 48, 96)
    with pytest.raises(ValueError, match="frame fit must be one of stretch, crop, pad, got 'squash'"):
        fit_box(48, 96, (24, 24), "squash")  # type: ignore[arg-type]
    for function in (crop_box, pad_box):
        with pytest.raises(ValueError, match="a 0x96 frame for 24x24"):
            function(0, 96, (24, 24))


def test_training_crops_with_the_shared_box():
    """``frames_to_tensor`` and ``masks_to_tensor`` cut :func:`crop_box` (the very function, so training and the
    service cannot disagree), and the crop of an odd surplus drops the extra column on the right."""
    assert transforms.crop_box is frame_fit.crop_box
    assert not hasattr(transforms, "_crop_box"), "training has no crop box of its own"
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(2, 5, 8, 3), dtype=np.uint8)  # [T, H, W, 3], 3 columns too wide
    ids = rng.integers(0, 4, size=(2, 5, 8), dtype=np.int64)  # [T, H, W]
    top, left, height, width = crop_box(5, 8, (10, 10))
    assert (top, left, height, width) == (0, 1, 5, 5)
    cropped = torch.from_numpy(frames[:, top : top + height, left : left + width]).permute(0, 3, 1, 2)  # [T, 3, h, w]
    expected = F.interpolate(
        cropped.float() / 255, size=(10, 10), mode="bilinear", antialias=True, align_corners=False
    )
    torch.testing.assert_close(frames_to_tensor(frames, (10, 10), center_crop=True), expected.clamp(0, 1))
    assert torch.equal(masks_to_tensor(ids, (5, 5), center_crop=True), torch.from_numpy(ids[:, :, 1:6]))


def test_training_resizes_ground_truth_as_evaluation_does():
    """Training data and the metrics resize id maps with one function, exact for ids beyond float32's 2**24."""
    ids = np.array([[[2**24 + 1, 7], [3, 2**30 + 3]]], dtype=np.int64)  # [T, H, W] = [1, 2, 2]
    resized = masks_to_tensor(ids, (4, 4), center_crop=False)  # each id becomes a 2x2 block
    assert torch.equal(resized, torch.from_numpy(ids).repeat_interleave(2, 1).repeat_interleave(2, 2))
