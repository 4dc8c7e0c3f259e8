"""``davis:`` clips of a generated folder carry its synthetic metadata only at the size it describes."""

from __future__ import annotations

import warnings

import pytest

from training.datasets import build_dataset
from training.datasets.__main__ import main as cli_main


def _generated(tmp_path, size: int):
    out = tmp_path / "data"
    argv = ["generate", "--level", "easy", "--videos", "2", "--frames", "3", "--size", str(size), "--out", str(out)]
    assert cli_main(argv) == 0
    return out


def test_clips_read_at_another_size_carry_no_metadata_and_say_so_once(tmp_path):
    out = _generated(tmp_path, 33)
    dataset = build_dataset(f"davis:{out}", "val", None, (64, 64))
    with pytest.warns(UserWarning, match=r"describes 33x33 frames, but clips are read at 64x64") as caught:
        clips = [dataset[0], dataset[1], dataset[0]]
    assert len([w for w in caught if "metadata left out" in str(w.message)]) == 1  # once per dataset
    assert all(clip.masks is not None and clip.masks.shape == (3, 64, 64) for clip in clips)
    assert all(clip.metadata is None for clip in clips)


def test_clips_read_at_the_written_size_keep_the_metadata_without_a_warning(tmp_path):
    out = _generated(tmp_path, 33)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = build_dataset(f"davis:{out}", "val", None, (33, 33))[1]
    assert clip.metadata is not None and (clip.metadata.height, clip.metadata.width) == (33, 33)
    assert clip.masks is not None and clip.masks.shape == (3, 33, 33)
    state = clip.metadata.frames[0][0]  # pixel fields on the clip's own grid: the object's pixels are in its box
    x0, y0, x1, y1 = state.bbox
    ids = clip.masks[0]
    assert int((ids == state.object_id).sum()) == state.visible_px
    assert bool((ids[max(y0, 0) : y1, max(x0, 0) : x1] == state.object_id).any())
