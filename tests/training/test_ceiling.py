"""``training.ceiling``: the scores of the ground truth itself sent through low-resolution masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.ceiling import downsampled_instances, fitted_instances, keep_largest_objects, main, mask_size_ceiling
from training.datasets import VideoClip, build_dataset
from training.run_data import LoadedClips


def _two_objects(small_side: int) -> VideoClip:
    """One 16x16 frame: a 6x6 object (id 3) and a ``small_side`` square object (id 7) on background."""
    ids = torch.zeros(1, 16, 16, dtype=torch.long)
    ids[0, 1:7, 1:7] = 3
    ids[0, 10 : 10 + small_side, 10 : 10 + small_side] = 7
    return VideoClip(frames=torch.zeros(1, 3, 16, 16), masks=ids, name="two_objects")


def test_downsampled_instances_are_area_fractions_over_the_ids_present() -> None:
    ids = _two_objects(2).masks
    assert ids is not None
    soft = downsampled_instances(ids, (4, 4))
    assert soft.shape == (1, 3, 4, 4)  # background, id 3, id 7 (ids need not be contiguous)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(1, 4, 4))
    assert soft[0, 2].max().item() == pytest.approx(4 / 16)  # the 2x2 object fills a quarter of one 4x4 cell
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        downsampled_instances(ids[0], (4, 4))


def test_a_small_object_is_lost_at_a_coarse_mask_size_and_kept_at_full_size() -> None:
    clips = LoadedClips([_two_objects(2)])
    coarse = mask_size_ceiling(clips, (4, 4))
    full = mask_size_ceiling(clips, (16, 16))
    # at 4x4 the 2x2 object never wins a pixel: its best overlap is 0, the 6x6 one keeps a positive overlap
    assert 0.0 < coarse.video_mbo < 0.5
    assert full.video_mbo == pytest.approx(1.0) and full.video_fg_ari == pytest.approx(1.0)
    assert "4x4" in coarse.mask_source


def test_with_fewer_slots_than_segments_the_smallest_objects_join_the_background() -> None:
    """Two slots hold the background and one object: the 2x2 object goes to the background, so the perfect
    two-slot model scores its best overlap as its share of the background, where three slots score it 1."""
    clip = _two_objects(2)
    assert clip.masks is not None
    merged = keep_largest_objects(clip.masks, keep=1)
    assert set(merged.unique().tolist()) == {0, 3} and bool((merged[clip.masks == 3] == 3).all())
    assert torch.equal(keep_largest_objects(clip.masks, keep=2), clip.masks)
    two, three = (mask_size_ceiling(LoadedClips([clip]), (16, 16), num_slots=n) for n in (2, 3))
    # the 2x2 object (id 7) overlaps only the background segment: IoU 4 / (256 - 36); the 6x6 one scores 1
    assert two.video_mbo == pytest.approx((1 + 4 / 220) / 2) and three.video_mbo == pytest.approx(1.0)
    assert "at most 2 segments" in two.mask_source
    with pytest.raises(ValueError, match="num_slots must be at least 1"):
        mask_size_ceiling(LoadedClips([clip]), (16, 16), num_slots=0)


def test_ceiling_grows_with_mask_size_on_synthetic_videos() -> None:
    dataset = build_dataset("synthetic:medium", "val", 4, (64, 64))
    scores = [mask_size_ceiling(dataset, (size, size), max_videos=3) for size in (8, 16, 64)]
    mbo = [s.video_mbo for s in scores]
    assert mbo[0] < mbo[1] < mbo[2] == pytest.approx(1.0)
    assert scores[2].video_fg_ari == pytest.approx(1.0)


def test_ceiling_rejects_unlabelled_data_and_bad_sizes() -> None:
    unlabelled = LoadedClips([VideoClip(frames=torch.zeros(1, 3, 8, 8), masks=None, name="camera.mp4")])
    with pytest.raises(ValueError, match=r"camera\.mp4 has no masks"):
        mask_size_ceiling(unlabelled, (4, 4))
    with pytest.raises(ValueError, match="positive"):
        mask_size_ceiling(LoadedClips([_two_objects(2)]), (4, 0))


def test_ceiling_cli_writes_one_entry_per_mask_size(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ceiling.json"
    argv = ["--data", "synthetic:easy", "--mask-size", "16", "32", "--videos", "2", "--json", str(out)]
    assert main(argv) == 0
    ceilings = json.loads(out.read_text())["ceilings"]
    assert set(ceilings) == {"16", "32"} and ceilings["16"]["num_videos"] == 2
    assert ceilings["16"]["video_mbo"] < ceilings["32"]["video_mbo"] <= 1.0
    assert "masks 16x16" in capsys.readouterr().out
    assert main(["--data", "nowhere:medium"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_fitted_masks_recover_an_object_that_area_averaging_loses() -> None:
    """The area-averaged ceiling is a reference, not a bound: sharper 4x4 masks can keep a 2x2 object."""
    clips = LoadedClips([_two_objects(2)])
    averaged = mask_size_ceiling(clips, (4, 4))
    fitted = mask_size_ceiling(clips, (4, 4), fit_steps=300)
    assert fitted.video_fg_ari > averaged.video_fg_ari + 0.5 and fitted.video_mbo > averaged.video_mbo + 0.05
    assert "fitted at 4x4" in fitted.mask_source
    soft = fitted_instances(_two_objects(2).masks, (4, 4), steps=5)
    assert soft.shape == (1, 3, 4, 4)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="fit_steps"):
        mask_size_ceiling(clips, (4, 4), fit_steps=-1)


def test_the_ceiling_scores_real_frames_with_the_frame_fit_given(tmp_path: Path, capsys) -> None:
    """A model card of a run trained with --frame-fit stretch scores its ceiling stretched; the command its card
    names could only crop, so the row could not be reproduced."""
    frames_dir, masks_dir = (tmp_path / kind / "480p" / "wide" for kind in ("JPEGImages", "Annotations"))
    frames_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    for t in range(2):
        Image.fromarray(np.full((16, 64, 3), 90, np.uint8)).save(frames_dir / f"{t:05d}.jpg")
        mask = np.zeros((16, 64), np.uint8)
        mask[4:12, 2:10] = 255  # near the left edge: a centre crop cuts it off
        Image.fromarray(mask, mode="L").save(masks_dir / f"{t:05d}.png")
    scores = {}
    for fit in ("crop", "stretch"):
        out = tmp_path / f"{fit}.json"
        args = ["--data", f"davis:{tmp_path}", "--mask-size", "4", "--image-size", "16", "--json", str(out)]
        assert main([*args, "--frame-fit", fit]) == 0
        scores[fit] = json.loads(out.read_text())["ceilings"]["4"]
    assert scores["crop"]["num_invalid_videos"] == 1, "the crop leaves no object"
    assert scores["stretch"]["num_invalid_videos"] == 0 and scores["stretch"]["video_mbo"] > 0
