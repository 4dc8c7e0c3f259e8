"""``training.datasets.augment.CropFlip`` keeps the masks aligned with the frames: after the crop, the resize and
the flip, every mask pixel holds the id that the frame's pixel there shows.

The frames encode the mask: each pixel's value is ``id / 20`` in every channel, on a layout of 8x8 blocks with
scattered ids (no symmetry), different in each frame. Frames are resized bilinearly and masks by nearest
neighbour, so ids are compared where the resized frame is constant over the pixel's 3x3 neighbourhood (inside a
block, away from the blended boundaries).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.datasets import VideoClip
from training.datasets.augment import AugmentedClips, CropFlip

HEIGHT, WIDTH, BLOCK = 32, 40, 8
SCALE = 20  # frame value = id / SCALE, at most 19 / 20 (frames are clamped to [0, 1])


def _encoded_clip() -> VideoClip:
    """Two frames whose pixel values are their mask ids / SCALE; ids 0..19 on 4x5 blocks, shuffled per frame."""
    rows, cols = HEIGHT // BLOCK, WIDTH // BLOCK
    layouts = [torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)]
    blocks = torch.stack([layout.reshape(rows, cols) for layout in layouts])  # [T, 4, 5]
    masks = blocks.repeat_interleave(BLOCK, dim=1).repeat_interleave(BLOCK, dim=2)  # [T, H, W]
    assert not torch.equal(masks, masks.flip(-1)) and not torch.equal(masks[0], masks[1])
    frames = (masks.float() / SCALE).unsqueeze(1).expand(-1, 3, -1, -1).clone()  # [T, 3, H, W]
    return VideoClip(frames=frames, masks=masks, name="encoded")


def _assert_aligned(out: VideoClip) -> None:
    """Every mask pixel inside a constant 3x3 patch of the frame holds the id that the frame shows there."""
    assert out.masks is not None and out.masks.shape == (2, HEIGHT, WIDTH)
    frame = out.frames[:, 0]  # [T, H, W], all channels alike
    torch.testing.assert_close(out.frames, frame.unsqueeze(1).expand_as(out.frames))
    padded = frame.unsqueeze(1)  # [T, 1, H, W]
    spread = F.max_pool2d(padded, 3, 1, 1) + F.max_pool2d(-padded, 3, 1, 1)  # max - min over 3x3
    inside = spread[:, 0] < 1e-5  # [T, H, W]
    assert inside.float().mean() > 0.4, "too few pixels away from block boundaries to compare"
    ids = torch.round(frame * SCALE).long()  # [T, H, W]
    torch.testing.assert_close((frame * SCALE)[inside], ids[inside].float(), atol=1e-4, rtol=0)
    mismatched = (out.masks != ids) & inside
    assert not mismatched.any(), f"{int(mismatched.sum())} of {int(inside.sum())} mask pixels do not match the frame"


@pytest.mark.parametrize("flip_p", [0.0, 1.0], ids=["never-flipped", "always-flipped"])
def test_cropped_masks_show_the_ids_the_cropped_frames_show(flip_p: float) -> None:
    clip = _encoded_clip()
    augmentation = CropFlip(area_range=(0.5, 0.7), flip_p=flip_p)
    boxes = []
    for seed in range(8):
        torch.manual_seed(seed)
        boxes.append(augmentation.crop_box(HEIGHT, WIDTH))
        torch.manual_seed(seed)
        out = augmentation(clip)
        _assert_aligned(out)
    assert any(top > 0 for top, *_ in boxes) and any(left > 0 for _, left, *_ in boxes), boxes
    assert all(height < HEIGHT or width < WIDTH for _, _, height, width in boxes), "real crops, not the whole frame"


def test_default_crop_flip_keeps_masks_aligned_whether_or_not_it_flips() -> None:
    """The default augmentation over many clips: both flipped and unflipped clips occur, all aligned."""
    clip = _encoded_clip()
    dataset = AugmentedClips([clip], CropFlip())
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = dataset[0]
        _assert_aligned(out)
        assert out.masks is not None
        # Flipped or not, told apart by the left-most column's ids: an unflipped crop's left edge lies in the
        # frame's left half (the crop keeps >= 75 % of the area), a flipped one's in the right half.
        left_ids = set(out.masks[0, :, 0].tolist())
        from_left = left_ids <= set(clip.masks[0, :, : WIDTH // 2].flatten().tolist())  # type: ignore[index]
        from_right = left_ids <= set(clip.masks[0, :, WIDTH // 2 :].flatten().tolist())  # type: ignore[index]
        flips.add("kept" if from_left and not from_right else "flipped" if from_right and not from_left else "?")
    assert {"kept", "flipped"} <= flips, flips
