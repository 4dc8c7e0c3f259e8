"""Evaluation cut to its first frames (``training.evaluate --frames N``, a run's sample frames) reads only those
frames and their masks, and the frame and mask transforms widen full-size data a chunk at a time, with the same
numbers as converting the whole clip at once."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.overrides import TorchFunctionMode

from plugins.frame_fit import crop_box
from training.configs import get_config
from training.datasets import build_dataset
from training.datasets import transforms as transforms_module
from training.datasets.export import write_labelled_mp4, write_mask_png
from training.datasets.selection import FirstFrames, evaluation_videos
from training.datasets.synthetic import generate_video
from training.datasets.transforms import frames_to_tensor, masks_to_tensor
from training.metrics.masks import resize_gt_ids
from training.run_data import validation_data

FRAMES = 6
KEPT = 3


def _davis(root: Path, frames: int, labelled: bool) -> Path:
    """A DAVIS folder of one synthetic sequence ``seq`` of ``frames`` 24x32 frames (with palette masks when
    ``labelled``); returns the folder of its frames."""
    video = generate_video("easy", 5, frames, (24, 32))
    images = root / "JPEGImages" / "480p" / "seq"
    images.mkdir(parents=True)
    for t in range(frames):
        Image.fromarray(video.frames[t]).save(images / f"{t:05d}.jpg", quality=95)
    if labelled:
        annotations = root / "Annotations" / "480p" / "seq"
        annotations.mkdir(parents=True)
        for t in range(frames):
            write_mask_png(annotations / f"{t:05d}.png", video.masks[t])
    return images


def test_evaluation_frames_of_a_davis_sequence_read_only_those_frames_and_masks(tmp_path: Path) -> None:
    images = _davis(tmp_path, FRAMES, labelled=True)
    expected = build_dataset(f"davis:{tmp_path}", "val", KEPT, (16, 16))[0]  # the first KEPT, read before the damage
    (images / f"{KEPT + 1:05d}.jpg").write_bytes(b"not a jpeg")  # frames and masks past the first KEPT: unreadable
    (tmp_path / "Annotations" / "480p" / "seq" / f"{KEPT + 2:05d}.png").write_bytes(b"not a png")
    clip = evaluation_videos(f"davis:{tmp_path}", (16, 16), KEPT)[0]
    assert clip.masks is not None and expected.masks is not None
    assert clip.frames.shape == (KEPT, 3, 16, 16) and torch.equal(clip.frames, expected.frames)
    assert torch.equal(clip.masks, expected.masks)


def test_evaluation_frames_of_a_video_file_read_only_their_masks(tmp_path: Path) -> None:
    video = generate_video("easy", 3, FRAMES, (32, 64))
    write_labelled_mp4(tmp_path, "clip", video.frames, video.masks)
    expected = build_dataset(f"videos:{tmp_path}", "val", KEPT, (16, 16))[0]
    (tmp_path / "clip" / f"{KEPT + 1:05d}.png").write_bytes(b"not a png")  # a mask past the first KEPT frames
    clip = evaluation_videos(f"videos:{tmp_path}", (16, 16), KEPT)[0]
    assert clip.masks is not None and expected.masks is not None
    assert clip.frames.shape == (KEPT, 3, 16, 16) and torch.equal(clip.frames, expected.frames)
    assert torch.equal(clip.masks, expected.masks)


def test_first_frames_of_a_short_video_are_the_whole_video(tmp_path: Path) -> None:
    _davis(tmp_path, KEPT, labelled=True)
    whole = build_dataset(f"davis:{tmp_path}", "val", None, (16, 16))
    clip = FirstFrames(whole, FRAMES)[0]
    assert clip.frames.shape[0] == KEPT and torch.equal(clip.frames, whole[0].frames)


def test_the_sample_frames_of_an_unlabelled_run_over_whole_videos_read_only_those_frames(tmp_path: Path) -> None:
    images = _davis(tmp_path, 10, labelled=False)
    (images / "00009.jpg").write_bytes(b"not a jpeg")  # past the 8 sample frames
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=f"davis:{tmp_path}", num_workers=0, val_frames=None)
    preview = validation_data(dataclasses.replace(tiny, data=data)).preview
    assert preview is not None and preview[0].frames.shape[0] == 8


class _WideTensors(TorchFunctionMode):
    """Records the bytes of the largest float or int64 tensor a torch call returns (a widened copy of frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        for tensor in _tensors(result):
            if tensor.dtype in (torch.float32, torch.float64, torch.int64):
                self.largest = max(self.largest, tensor.numel() * tensor.element_size())
        return result


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def test_frames_and_masks_are_widened_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (24, 96, 128, 3), dtype=np.uint8)
    masks = rng.integers(0, 4, (24, 96, 128)).astype(np.int16)
    chunk = 6 * 96 * 128  # values: two frames, or six masks
    monkeypatch.setattr(transforms_module, "CHUNK_VALUES", chunk)
    with _WideTensors() as frames_mode:
        frames_to_tensor(frames, (16, 16), center_crop=True)
    with _WideTensors() as masks_mode:
        masks_to_tensor(masks, (16, 16), center_crop=True)
    assert frames_mode.largest <= chunk * 4  # float32 copies of two frames, not of the 24 of the clip
    assert masks_mode.largest <= chunk * 8  # float64 copies (nearest-exact resizing) of six masks, not of 24


def test_frames_given_one_by_one_are_stacked_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = list(np.random.default_rng(1).integers(0, 256, (24, 96, 128, 3), dtype=np.uint8))
    monkeypatch.setattr(transforms_module, "CHUNK_VALUES", 2 * 3 * 96 * 128)
    tracemalloc.start()
    try:
        frames_to_tensor(frames, (16, 16), center_crop=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 3 * 96 * 128  # a chunk or two of uint8 frames stacked at a time, not the 24 of the clip


def _whole_clip_frames(frames: np.ndarray, size: tuple[int, int], center_crop: bool) -> torch.Tensor:
    """The conversion of :func:`frames_to_tensor` done on the whole clip at once (the reference numbers)."""
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)  # [T, H, W, 3] -> [T, 3, H, W]
    if center_crop:
        top, left, h, w = crop_box(video.shape[2], video.shape[3], size)
        video = video[:, :, top : top + h, left : left + w]  # [T, 3, h', w']
    out = video.float().div_(255.0)
    if tuple(out.shape[2:]) != size:
        out = F.interpolate(out, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)
    return out


def _whole_clip_masks(masks: np.ndarray, size: tuple[int, int], center_crop: bool) -> torch.Tensor:
    """The conversion of :func:`masks_to_tensor` done on the whole clip at once, widened first (the reference)."""
    ids = torch.from_numpy(masks).long()  # [T, H, W]
    if center_crop:
        top, left, h, w = crop_box(ids.shape[1], ids.shape[2], size)
        ids = ids[:, top : top + h, left : left + w]  # [T, h', w']
    return resize_gt_ids(ids, size)


@pytest.mark.parametrize(("height", "width", "size"), [(72, 128, (32, 48)), (37, 91, (17, 9)), (64, 48, (64, 48))])
@pytest.mark.parametrize("center_crop", [True, False])
@pytest.mark.parametrize("chunk_values", [1, 3 * 72 * 128 * 2, transforms_module.CHUNK_VALUES])
def test_chunked_conversion_gives_the_numbers_of_a_whole_clip(
    monkeypatch: pytest.MonkeyPatch,
    height: int,
    width: int,
    size: tuple[int, int],
    center_crop: bool,
    chunk_values: int,
) -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (7, height, width, 3), dtype=np.uint8)
    masks = rng.integers(-1, 6, (7, height, width)).astype(np.int16)
    monkeypatch.setattr(transforms_module, "CHUNK_VALUES", chunk_values)
    for given_frames, given_masks in ((frames, masks), (list(frames), list(masks))):
        converted = frames_to_tensor(given_frames, size, center_crop)
        ids = masks_to_tensor(given_masks, size, center_crop)
        assert converted.dtype == torch.float32 and converted.is_contiguous()
        assert torch.equal(converted, _whole_clip_frames(frames, size, center_crop))
        assert ids.dtype == torch.int64 and torch.equal(ids, _whole_clip_masks(masks, size, center_crop))


def test_an_empty_clip_converts_to_empty_tensors() -> None:
    """No frames (an empty list or a [0, H, W, 3] array) give tensors with no frames, not an ``IndexError``."""
    assert frames_to_tensor([], (16, 16), center_crop=True).shape == (0, 3, 16, 16)
    assert frames_to_tensor(np.zeros((0, 24, 32, 3), np.uint8), (16, 16), True).shape == (0, 3, 16, 16)
    assert masks_to_tensor([], (16, 16), center_crop=True).shape == (0, 16, 16)
