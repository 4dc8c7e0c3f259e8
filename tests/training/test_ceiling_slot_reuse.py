"""The ceiling's image mode keeps each frame's largest objects: a model scored frame by frame reuses its slots."""

from __future__ import annotations

import pytest
import torch

from training.ceiling import keep_largest_objects, keep_largest_objects_per_frame, mask_size_ceiling
from training.datasets import VideoClip
from training.run_data import LoadedClips


def _one_object_per_frame() -> VideoClip:
    """Two 16x16 frames: a 6x6 object (id 1) only in frame 0, a 4x4 object (id 2) only in frame 1."""
    ids = torch.zeros(2, 16, 16, dtype=torch.long)
    ids[0, 1:7, 1:7] = 1
    ids[1, 10:14, 10:14] = 2
    return VideoClip(frames=torch.zeros(2, 3, 16, 16), masks=ids, name="one_object_per_frame")


def test_two_slots_reach_every_object_frame_by_frame_but_not_over_the_video() -> None:
    clip = _one_object_per_frame()
    assert clip.masks is not None
    scores = mask_size_ceiling(LoadedClips([clip]), (16, 16), num_slots=2)
    # frame by frame one slot per frame holds the only object: every object is found exactly
    assert scores.image_mbo == pytest.approx(1.0) and scores.image_fg_ari == pytest.approx(1.0)
    assert scores.num_frames == 2 and scores.num_invalid_frames == 0
    # over the video the 4x4 object joins the background segment: its best overlap is 16 / (512 - 36)
    assert scores.video_mbo == pytest.approx((1 + 16 / 476) / 2)
    assert "per frame in image mode" in scores.mask_source
    unmerged = mask_size_ceiling(LoadedClips([clip]), (16, 16))
    assert unmerged.image_mbo == pytest.approx(1.0) and unmerged.video_mbo == pytest.approx(1.0)


def test_keep_largest_per_frame_ranks_each_frame_alone() -> None:
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    ids[0, :2, :3], ids[0, 3, 3] = 5, 6  # frame 0: 5 is larger
    ids[1, :1, :1], ids[1, 2:, 2:] = 5, 6  # frame 1: 6 is larger, and 5 the larger over both frames
    per_frame = keep_largest_objects_per_frame(ids, keep=1)
    assert per_frame[0].unique().tolist() == [0, 5] and per_frame[1].unique().tolist() == [0, 6]
    assert keep_largest_objects(ids, keep=1).unique().tolist() == [0, 5]
    assert torch.equal(keep_largest_objects_per_frame(ids, keep=2), ids)
