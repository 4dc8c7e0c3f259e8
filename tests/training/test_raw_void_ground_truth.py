"""A DAVIS 2017 palette mask read as stored (uint8, void = 255) is refused by the metrics, not scored as an object."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets.export import write_mask_png
from training.datasets.images import read_mask
from training.metrics import IGNORE_ID, ObjectDiscoveryMetrics, contingency_table, resize_gt_ids


def _palette_mask(tmp_path) -> np.ndarray:
    """An 8x8 palette PNG: object 1 on the left, a void border column, background on the right."""
    ids = np.zeros((8, 8), dtype=np.uint8)
    ids[:, :3] = 1
    ids[:, 3] = 255  # DAVIS 2017 void
    write_mask_png(tmp_path / "00000.png", ids)
    return ids


def test_uint8_ground_truth_with_the_void_index_is_refused_everywhere(tmp_path):
    _palette_mask(tmp_path)
    with Image.open(tmp_path / "00000.png") as image:
        raw = torch.from_numpy(np.array(image))  # uint8, void still 255
    gt = raw.expand(1, 2, 8, 8)  # [B, T, H, W]
    labels = (gt == 1).long()  # a model that finds the object exactly
    with pytest.raises(ValueError, match=r"uint8 and holds 255.*read_mask.*IGNORE_ID \(-1\)"):
        contingency_table(labels.reshape(2, 64), gt.reshape(2, 64))
    with pytest.raises(ValueError, match=r"uint8 and holds 255"):
        ObjectDiscoveryMetrics().update_labels(labels, gt, num_slots=2)
    with pytest.raises(ValueError, match=r"uint8 and holds 255"):
        resize_gt_ids(gt, (16, 16))  # its int64 result would hide the void


def test_void_read_with_read_mask_is_left_out_and_other_ids_are_accepted(tmp_path):
    _palette_mask(tmp_path)
    gt = torch.from_numpy(read_mask(tmp_path / "00000.png")).expand(1, 2, 8, 8)  # void -> IGNORE_ID
    assert int(gt.min()) == IGNORE_ID
    metrics = ObjectDiscoveryMetrics()
    metrics.update_labels((gt == 1).long(), gt, num_slots=2)
    assert metrics.compute().video_mbo == 1.0  # the void column scores nothing either way
    small = torch.tensor([[0, 1, 254]], dtype=torch.uint8)  # uint8 ids without the void index
    assert contingency_table(torch.tensor([[0, 1, 1]]), small).gt_ids.tolist() == [0, 1, 254]
    wide = torch.tensor([[0, 1, 255]], dtype=torch.int16)  # object 255 of a wider id map
    assert contingency_table(torch.tensor([[0, 1, 1]]), wide).gt_ids.tolist() == [0, 1, 255]


def test_a_binary_mask_stored_as_0_and_255_is_scored_as_one_object():
    """DAVIS 2016 stores its single object as 255 in a grayscale PNG: a uint8 map of 0 and 255 alone is a binary
    mask, not a palette mask's void, and a model that finds the object scores 1."""
    gt = torch.zeros((1, 2, 8, 8), dtype=torch.uint8)
    gt[..., 2:6, 2:6] = 255
    labels = (gt == 255).long()
    metrics = ObjectDiscoveryMetrics()
    metrics.update_labels(labels, gt, num_slots=2)
    assert metrics.compute().video_mbo == 1.0
