"""DAVIS-layout folders: frame naming and ordering, hidden files, masks in training, and messages that name the
right file, setting and folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets import DatasetError, build_dataset
from training.datasets.export import write_sequence
from training.datasets.synthetic import generate_video


def _davis_dir(tmp_path: Path, frames: int = 6) -> tuple[Path, Path, Path]:
    """A one-sequence DAVIS 2017 layout; returns the root, the frames folder and the masks folder."""
    out = tmp_path / "gen"
    write_sequence(out, "seq", generate_video("medium", 100, frames, (32, 32)))
    return out, out / "JPEGImages" / "32p" / "seq", out / "Annotations" / "32p" / "seq"


def _gray_frames(folder: Path, names: list[str]) -> None:
    """One frame per name, brighter in the order given."""
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), 20 * index, np.uint8)).save(folder / name)


def test_frames_with_a_name_prefix_are_read_in_numeric_order(tmp_path):
    _gray_frames(tmp_path / "JPEGImages" / "480p" / "s", [f"frame_{index}.png" for index in range(12)])
    clip = build_dataset(f"davis:{tmp_path}", "val", None, (8, 8))[0]
    means = clip.frames.mean(dim=(1, 2, 3))  # [T]
    assert torch.all(means[1:] > means[:-1]), "frame_10 must come after frame_9, not after frame_1"


def test_a_gap_in_prefixed_frame_numbers_names_the_missing_file(tmp_path):
    seq = tmp_path / "JPEGImages" / "480p" / "s"
    _gray_frames(seq, ["frame_8.png", "frame_9.png", "frame_11.png"])
    with pytest.raises(DatasetError, match=rf"{seq / 'frame_10.png'}: frame is missing"):
        build_dataset(f"davis:{tmp_path}", "val", None, (8, 8))


def test_hidden_files_are_ignored(tmp_path):
    """macOS writes ``._<name>`` resource files next to the files it copies."""
    out, frames, masks = _davis_dir(tmp_path)
    (frames / "._00000.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (masks / "._00000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    clip = build_dataset(f"davis:{out}", "val", None, (32, 32))[0]
    assert clip.frames.shape == (6, 3, 32, 32) and clip.masks is not None


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["00000.png", "00001.png", "cover.png"], r"must end in the frame number .*, but cover\.png do not"),
        (["a_00000.png", "a_00001.png", "b_00002.png"], r"do not follow one pattern <prefix><number>: 2 different"),
    ],
)
def test_frame_names_of_more_than_one_pattern_are_refused_naming_the_folder(tmp_path, names, message):
    seq = tmp_path / "JPEGImages" / "480p" / "s"
    _gray_frames(seq, names)
    with pytest.raises(DatasetError, match=rf"{seq}: frame names {message}"):
        build_dataset(f"davis:{tmp_path}", "val", None, (8, 8))


def test_a_second_file_for_one_frame_is_named(tmp_path):
    out, frames, _ = _davis_dir(tmp_path)
    Image.open(frames / "00003.jpg").save(frames / "00003.png")
    with pytest.raises(DatasetError, match=rf"{frames / '00003.png'}: a second file for frame 00003\.jpg"):
        build_dataset(f"davis:{out}", "train", 2, (32, 32))


def test_a_sequence_too_short_for_validation_names_val_frames(tmp_path):
    out, frames, _ = _davis_dir(tmp_path)
    with pytest.raises(DatasetError, match=rf"{frames}: 6 frames, fewer than val_frames=8"):
        build_dataset(f"davis:{out}", "val", 8, (32, 32))
    with pytest.raises(DatasetError, match=rf"{frames}: 6 frames, fewer than clip_length=8"):
        build_dataset(f"davis:{out}", "train", 8, (32, 32))


def test_annotations_at_another_resolution_than_the_frames_are_named(tmp_path):
    out, _, _ = _davis_dir(tmp_path)
    (out / "Annotations" / "32p").rename(out / "Annotations" / "Full-Resolution")
    message = rf"{out / 'Annotations'}: masks for resolution Full-Resolution/ only, .*{out / 'JPEGImages' / '32p'}"
    with pytest.raises(DatasetError, match=message):
        build_dataset(f"davis:{out}", "val", None, (32, 32))
    shutil.rmtree(out / "Annotations" / "Full-Resolution")  # an empty Annotations/: frames only
    assert build_dataset(f"davis:{out}", "val", None, (32, 32))[0].masks is None


def test_training_clips_carry_no_masks_so_a_bad_mask_stops_only_evaluation(tmp_path):
    out, _, masks = _davis_dir(tmp_path)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / "00004.png")
    train = build_dataset(f"davis:{out}", "train", 2, (32, 32))
    torch.manual_seed(0)
    clips = [train[0] for _ in range(20)]
    assert {clip.start for clip in clips} == {0, 2, 4} and all(clip.masks is None for clip in clips)
    with pytest.raises(DatasetError, match=rf"{masks / '00004.png'}: mask size 16x16 does not match"):
        build_dataset(f"davis:{out}", "val", None, (32, 32))[0]


def test_sequences_straight_in_jpegimages_are_named_as_a_missing_resolution_folder(tmp_path):
    """The YouTube-VOS layout, ``JPEGImages/<seq>/00000.jpg``: the first sequence folder would be taken for the
    resolution folder, and reported as holding no sequences."""
    for name in ("seqA", "seqB"):
        _gray_frames(tmp_path / "JPEGImages" / name, ["00000.jpg", "00005.jpg"])
    for split in ("train", "val"):
        with pytest.raises(
            DatasetError,
            match=rf"^{tmp_path / 'JPEGImages' / 'seqA'}: holds frame images, so JPEGImages/<seq>/ was found where "
            r"JPEGImages/<res>/<seq>/ is expected",
        ):
            build_dataset(f"davis:{tmp_path}", split, None, (8, 8))
