"""``training.datasets.augment``: one random crop and flip per clip, applied alike to every frame and the masks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from training.datasets import VideoClip, build_dataset
from training.datasets.augment import AugmentedClips, CropFlip, augmented


def _clip(frames: int = 3) -> VideoClip:
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 20).expand(frames, -1, -1, -1).clone()  # the same image in every frame
    masks = torch.zeros(frames, 16, 20, dtype=torch.long)
    masks[:, 2:8, 3:9] = 4
    return VideoClip(frames=image, masks=masks, name="clip")


def test_full_area_crop_with_a_certain_flip_mirrors_frames_and_masks() -> None:
    clip = _clip()
    flipped = CropFlip(area_range=(1.0, 1.0), ratio_range=(1.0, 1.0), flip_p=1.0)(clip)  # the frame's own ratio
    torch.testing.assert_close(flipped.frames, clip.frames.flip(-1))
    assert flipped.masks is not None and torch.equal(flipped.masks, clip.masks.flip(-1))
    kept = CropFlip(area_range=(1.0, 1.0), ratio_range=(20 / 16, 20 / 16), flip_p=0.0)(clip)
    torch.testing.assert_close(kept.frames, clip.frames)


def test_a_cropped_or_flipped_clip_drops_the_metadata_of_the_frames_it_came_from() -> None:
    """Boxes, centres and velocities describe the source frames; kept on a mirrored clip, they put each object on
    the other side of its mask."""
    from training.datasets.synthetic import generate_video

    video = generate_video("medium", seed=5, num_frames=2, size=(16, 20))
    clip = dataclasses.replace(_clip(frames=2), metadata=video.metadata)
    whole = {"area_range": (1.0, 1.0), "ratio_range": (1.0, 1.0)}
    assert CropFlip(**whole, flip_p=0.0)(clip).metadata is video.metadata, "nothing changed: the metadata holds"
    assert CropFlip(**whole, flip_p=1.0)(clip).metadata is None
    torch.manual_seed(3)
    assert CropFlip(area_range=(0.5, 0.6), flip_p=0.0)(clip).metadata is None


def test_every_frame_gets_the_same_crop_and_the_clip_keeps_its_shape() -> None:
    clip = _clip()
    torch.manual_seed(3)
    out = CropFlip(area_range=(0.5, 0.6))(clip)
    assert out.frames.shape == clip.frames.shape and out.masks is not None and out.masks.shape == clip.masks.shape
    assert out.frames.min() >= 0.0 and out.frames.max() <= 1.0
    for t in range(1, 3):
        torch.testing.assert_close(out.frames[t], out.frames[0])
        assert torch.equal(out.masks[t], out.masks[0])
    assert not torch.allclose(out.frames, clip.frames), "a half-area crop changes the frames"
    assert set(out.masks.unique().tolist()) <= {0, 4}


def test_crops_stay_inside_the_frame_and_cover_the_drawn_area() -> None:
    torch.manual_seed(0)
    augmentation = CropFlip()
    for _ in range(200):
        top, left, height, width = augmentation.crop_box(64, 48)
        assert top >= 0 and top + height <= 64 and left >= 0 and left + width <= 48
        assert 0.73 <= height * width / (64 * 48) <= 1.0  # 75-100 % of the area, up to rounding


@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 64), (72, 128)])
def test_crops_of_any_frame_shape_rarely_fall_back_and_stretch_both_ways(height: int, width: int) -> None:
    """The ratio is drawn relative to the frame's: on a 16:9 frame an absolute ratio of at most 4/3 had fitted in
    0.5 % of the draws (the rest kept the whole frame), and each crop that fitted, resized back, widened objects."""
    augmentation = CropFlip()
    torch.manual_seed(0)
    boxes = [augmentation.crop_box(height, width) for _ in range(2000)]
    whole = sum(box == (0, 0, height, width) for box in boxes) / len(boxes)
    # how much resizing the crop back stretches an object horizontally relative to vertically
    stretch = torch.tensor([(width / crop_width) / (height / crop_height) for _, _, crop_height, crop_width in boxes])
    assert whole < 0.05, whole
    assert 0.9 < stretch.median().item() < 1.1, stretch.median()
    assert stretch.min().item() < 0.85 and stretch.max().item() > 1.15, (stretch.min(), stretch.max())


def test_named_augmentations() -> None:
    dataset = build_dataset("synthetic:easy", "train", 2, (32, 32), 0)
    assert augmented(dataset, "none") is dataset
    wrapped = augmented(dataset, "crop_flip")
    assert isinstance(wrapped, AugmentedClips) and len(wrapped) == len(dataset)
    assert wrapped[0].frames.shape == dataset[0].frames.shape
    with pytest.raises(ValueError, match="crop_flip"):
        augmented(dataset, "mixup")


def test_an_augmented_run_resumes_exactly(tmp_path) -> None:
    from safetensors.torch import load_file

    from training.configs import get_config
    from training.loop import fit

    config = get_config("tiny")
    data = dataclasses.replace(config.data, augment="crop_flip", val_videos=0)
    config = dataclasses.replace(config, steps=4, data=data, eval_every=0, checkpoint_every=2)
    straight = fit(config, tmp_path / "straight", progress=False)
    fit(config, tmp_path / "resumed", progress=False, stop_after=2)
    resumed = fit(config, tmp_path / "resumed", progress=False, resume=True)
    expected = load_file(str(straight.model_dir / "model.safetensors"))
    actual = load_file(str(resumed.model_dir / "model.safetensors"))
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    plain = dataclasses.replace(config, data=dataclasses.replace(data, augment="none"))
    unaugmented = load_file(str(fit(plain, tmp_path / "plain", progress=False).model_dir / "model.safetensors"))
    assert any(not torch.equal(expected[key], unaugmented[key]) for key in expected), "the run used augment"
