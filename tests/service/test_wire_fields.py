"""Every field of the wire conversions survives a trip through the proto bytes: a ``StreamOpened`` with
non-default options, a ``FrameResult`` whose scalar fields all differ from one another (so two swapped fields
cannot pass for each other), and a model card whose sizes are not square."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from service import wire
from service.engine import ModelCard
from service.generated import pb
from service.types import (
    FrameFit,
    FrameResult,
    LatencyBreakdown,
    OpenKind,
    Output,
    StateHandoff,
    StreamOpened,
    StreamOptions,
)


def _through_bytes(response):
    """``response`` converted to a proto message, serialized, parsed and converted back."""
    data = wire.response_to_proto(response).SerializeToString()
    return wire.response_from_proto(pb.StreamResponse.FromString(data))


def test_stream_opened_keeps_every_option_and_field():
    options = StreamOptions(
        idle_timeout_s=12.5,
        live=True,
        outputs=frozenset({Output.SLOTS, Output.SOFT_MASKS, Output.STATE}),
        mask_size=(6, 10),
        soft_masks_uint8=True,
        resume_window_s=3.25,
        frame_fit=FrameFit.PAD,
    )
    opened = StreamOpened(
        "stream-1", "token-2", "tiny", "v3", options, OpenKind.RESUMED, 41, (4, 9, 2), 123_456, 32, 7
    )
    back = _through_bytes(opened)
    assert back == opened
    assert (back.resume_history, back.max_frames_ahead) == (32, 7)
    assert back.options.soft_masks_uint8 is True and back.options.mask_size == (6, 10)
    assert back.options.frame_fit == FrameFit.PAD


def test_stream_opened_with_float_soft_masks_says_so():
    options = StreamOptions(outputs=frozenset({Output.SOFT_MASKS}), mask_size=(3, 2), soft_masks_uint8=False)
    opened = StreamOpened("s", "t", "m", "v", options, OpenKind.NEW, None, (0, 1), 0)
    assert _through_bytes(opened) == opened


def test_frame_result_keeps_every_scalar_field_and_array():
    latency = LatencyBreakdown(
        decode_ms=1.5, queue_ms=2.25, inference_ms=3.75, postprocess_ms=4.125, total_ms=11.625, batch_size=6
    )
    handoff = StateHandoff("stream-7", "tiny", "v8", 17, np.arange(6, dtype=np.float32).reshape(2, 3), (3, 5))
    result = FrameResult(
        stream_id="stream-7",
        frame_index=17,
        capture_time_ns=1_000_000_001,
        camera_frame_id="cam-4/frame-99",
        received_time_ns=2_000_000_002,
        completed_time_ns=3_000_000_003,
        model_version="v8",
        slot_ids=(3, 5),
        latency=latency,
        slots=np.array([[0.5, -1.0, 2.0], [3.5, 4.0, -0.25]], np.float32),  # [K=2, D=3]
        segmentation=np.array([[0, 1, 1, 0], [1, 1, 0, 0]], np.uint8),  # [H=2, W=4]
        soft_masks=np.arange(16, dtype=np.uint8).reshape(2, 2, 4) * 16,  # uint8 [K, H, W]
        state=handoff,
    )
    back = _through_bytes(result)
    assert isinstance(back, FrameResult)
    assert back.stream_id == "stream-7" and back.frame_index == 17
    assert back.capture_time_ns == 1_000_000_001
    assert back.camera_frame_id == "cam-4/frame-99"
    assert back.received_time_ns == 2_000_000_002
    assert back.completed_time_ns == 3_000_000_003
    assert back.model_version == "v8" and back.slot_ids == (3, 5)
    assert back.latency == latency
    for name in ("slots", "segmentation", "soft_masks"):
        original, received = getattr(result, name), getattr(back, name)
        assert received.dtype == original.dtype and received.shape == original.shape, name
        np.testing.assert_array_equal(received, original, err_msg=name)
    assert back.state is not None
    assert (back.state.stream_id, back.state.model, back.state.model_version) == ("stream-7", "tiny", "v8")
    assert back.state.last_frame_index == 17 and back.state.slot_ids == (3, 5)
    np.testing.assert_array_equal(back.state.state, handoff.state)


def test_frame_result_with_float_soft_masks_keeps_them_float():
    masks = np.array([[[0.25, 0.75]], [[0.75, 0.25]]], np.float32)  # [K=2, H=1, W=2]
    result = FrameResult("s", 0, 5, "", 6, 7, "v", (0, 1), LatencyBreakdown(), soft_masks=masks)
    back = _through_bytes(result)
    assert back.soft_masks.dtype == np.float32
    np.testing.assert_array_equal(back.soft_masks, masks)
    assert (back.capture_time_ns, back.received_time_ns, back.completed_time_ns) == (5, 6, 7)
    assert back.slots is None and back.segmentation is None and back.state is None


def test_model_card_keeps_non_square_sizes_and_every_field():
    card = ModelCard(
        name="tiny",
        version="abc123",
        backend="onnx",
        device="cpu",
        image_size=(24, 40),
        num_slots=5,
        slot_dim=16,
        mask_size=(12, 20),
        max_batch_size=8,
        preprocessing="resize to 24x40, scale to [0, 1]",
        frame_fit="crop",
        default_frame_fit="pad",
        max_request_bytes=3_000_001,
        max_image_pixels=2_000_002,
    )
    message = wire.card_to_proto(card, ["tiny", "other"])
    parsed = pb.ModelCard.FromString(message.SerializeToString())
    assert (parsed.max_request_bytes, parsed.max_image_pixels) == (3_000_001, 2_000_002)
    assert (parsed.input_height, parsed.input_width) == (24, 40)
    assert (parsed.mask_height, parsed.mask_width) == (12, 20)
    assert list(parsed.available_models) == ["tiny", "other"]
    assert (parsed.trained_frame_fit, parsed.default_frame_fit) == (pb.FRAME_FIT_CROP, pb.FRAME_FIT_PAD)
    assert wire.card_from_proto(parsed) == replace(card, available_models=("tiny", "other"))
    unrecorded = replace(card, frame_fit=None, default_frame_fit=None)
    parsed = pb.ModelCard.FromString(wire.card_to_proto(unrecorded, ["tiny"]).SerializeToString())
    assert parsed.trained_frame_fit == pb.FRAME_FIT_UNSPECIFIED
    assert wire.card_from_proto(parsed) == replace(unrecorded, available_models=("tiny",))
    parsed.trained_frame_fit = 9  # a newer server's fit: unknown here, read as no record
    assert wire.card_from_proto(parsed).frame_fit is None
