"""``LocalStream`` runs a stream of the service in this process: its results are a server stream's, bitwise, for
the same frames, options and model at ``--max-batch-size 1``; refused frames keep the state; mistakes are named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, run

from service import LocalStream
from service.client import Client, FrameError, FrameResult, StreamOptions
from service.errors import ErrorCode, FrameRejected
from service.types import FrameFit, Output


def _wide(frame: np.ndarray) -> np.ndarray:
    """A frame of another aspect ratio than the model's input: the fits differ on it."""
    return np.concatenate([frame, frame[:, ::-1]], axis=1)  # [H, W, 3] -> [H, 2W, 3]


def _served(server, frames: list[np.ndarray], options: StreamOptions) -> list[FrameResult | FrameError]:
    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(options)
            return [await stream.process(frame) for frame in frames]

    return run(scenario())


@pytest.mark.parametrize("fit", [FrameFit.STRETCH, FrameFit.CROP])
def test_results_are_a_server_streams_bitwise(start_server, model_dir, fit):
    server = start_server(max_batch_size=1)
    frames = [_wide(frame) for frame in make_video(seed=111, frames=5)]
    mask_size = (24, 40)
    options = StreamOptions(
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION, Output.SOFT_MASKS}), mask_size=mask_size, frame_fit=fit
    )
    served = _served(server, frames, options)
    local = LocalStream.open(str(model_dir), frame_fit=fit.name.lower())
    for index, (frame, answer) in enumerate(zip(frames, served, strict=True)):
        result = local.process(frame, mask_size=mask_size, soft_masks=True)
        assert isinstance(answer, FrameResult) and result.frame_index == index
        np.testing.assert_array_equal(result.slots, answer.slots)
        np.testing.assert_array_equal(result.segmentation, answer.segmentation)
        np.testing.assert_array_equal(result.soft_masks, answer.soft_masks)
        assert result.segmentation.shape == mask_size and result.slots.dtype == np.float32


def test_a_refused_frame_counts_but_leaves_the_state_as_it_was(model_dir):
    frames = make_video(seed=112, frames=3)
    big = np.zeros((64, 65, 3), np.uint8)  # over the limit set below
    stream = LocalStream.open(model_dir)
    stream.max_image_pixels = 64 * 64
    first = stream.process(frames[0])
    with pytest.raises(FrameRejected) as refused:
        stream.process(big)
    assert refused.value.code == ErrorCode.IMAGE_TOO_LARGE, refused.value
    after = stream.process(frames[1])
    assert (first.frame_index, after.frame_index) == (0, 2)
    alone = LocalStream.open(model_dir)
    alone.process(frames[0])
    np.testing.assert_array_equal(after.slots, alone.process(frames[1]).slots)  # as if the big frame never came


def test_encoded_frames_are_decoded_as_a_server_decodes_them_and_reset_starts_again(model_dir):
    frame = make_video(seed=113, frames=1)[0]
    png = io.BytesIO()
    Image.fromarray(frame).save(png, format="PNG")
    stream = LocalStream.open(model_dir)
    from_array = stream.process(frame)
    stream.reset()
    assert stream.state is None
    from_png = stream.process(png.getvalue())
    assert from_png.frame_index == 0
    np.testing.assert_array_equal(from_array.slots, from_png.slots)
    assert stream.state is not None and stream.state.shape == (1, stream.card.num_slots, stream.card.slot_dim)


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),  # float frames (0-1 or 0-255)
        (np.zeros((3, 32, 32), np.uint8), "[H, W, 3]"),  # channels first
        (b"not an image", "JPEG"),
    ],
)
def test_what_is_no_image_is_refused_by_name_and_does_not_count(model_dir, image, words):
    stream = LocalStream.open(model_dir)
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        stream.process(image)
    assert stream.process(make_video(seed=114, frames=1)[0]).frame_index == 0


@pytest.mark.parametrize("mask_size", [(0, 8), (8.5, 8), (8,), "8x8"])
def test_a_mask_size_that_is_no_pair_of_positive_whole_numbers_is_refused(model_dir, mask_size):
    with pytest.raises(ValueError, match="mask_size"):
        LocalStream.open(model_dir).process(make_video(seed=115, frames=1)[0], mask_size=mask_size)


def test_a_model_folder_that_is_not_there_is_named(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises((FileNotFoundError, ValueError), match="no_such_model"):
        LocalStream.open(missing)
