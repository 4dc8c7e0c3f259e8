"""Proto <-> domain conversion round-trips, and the Python enums mirror the proto's."""

from __future__ import annotations

import numpy as np
import pytest

from service import wire
from service.errors import ErrorCode, FrameRejected
from service.generated import pb
from service.images import decode_image
from service.types import (
    CloseReason,
    CloseRequest,
    DropReason,
    EncodedImage,
    FrameDropped,
    FrameError,
    FrameRequest,
    FrameResult,
    ImageEncoding,
    LatencyBreakdown,
    OpenKind,
    OpenRequest,
    Output,
    ResumeRequest,
    StateHandoff,
    StreamClosed,
    StreamOpened,
    StreamOptions,
)


@pytest.mark.parametrize(
    ("python_enum", "proto_enum", "prefix"),
    [
        (ErrorCode, pb.ErrorCode, "ERROR_CODE_"),
        (Output, pb.Output, "OUTPUT_"),
        (ImageEncoding, pb.ImageEncoding, "IMAGE_ENCODING_"),
        (OpenKind, pb.OpenKind, "OPEN_KIND_"),
        (DropReason, pb.DropReason, "DROP_REASON_"),
        (CloseReason, pb.CloseReason, "CLOSE_REASON_"),
    ],
)
def test_python_enums_mirror_the_proto(python_enum, proto_enum, prefix):
    proto = {name.removeprefix(prefix): value for name, value in proto_enum.items() if value != 0}
    python = {member.name: int(member) for member in python_enum if int(member) != 0}
    assert python == proto


def test_tensors_round_trip_and_malformed_ones_are_rejected():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(wire.tensor_from_proto(wire.tensor_to_proto(array)), array)
    with pytest.raises(ValueError, match="needs 48 bytes"):
        wire.tensor_from_proto(pb.Tensor(shape=[3, 4], dtype=pb.DTYPE_FLOAT32, data=b"\0" * 47))
    with pytest.raises(ValueError, match="unknown tensor dtype"):
        wire.tensor_from_proto(pb.Tensor(shape=[1], dtype=0, data=b"\0"))


def test_requests_round_trip():
    handoff = StateHandoff("s", "m", "v", 4, np.ones((2, 3), np.float32), (5, 6))
    requests = [
        OpenRequest("s", "m", StreamOptions(3.0, True, frozenset({Output.SLOTS}), (8, 9), True, 2.0)),
        OpenRequest("s", resume=ResumeRequest("t", 7)),
        OpenRequest("s", resume=ResumeRequest("t", None)),
        FrameRequest(3, EncodedImage(ImageEncoding.RAW_RGB8, b"abc", 1, 1, 3), 99, "cam"),
        CloseRequest(True),
    ]
    for request in requests:
        assert wire.request_from_proto(wire.request_to_proto(request)) == request
    back = wire.request_from_proto(wire.request_to_proto(OpenRequest(handoff=handoff)))
    assert back.handoff.slot_ids == (5, 6) and back.handoff.last_frame_index == 4
    np.testing.assert_array_equal(back.handoff.state, handoff.state)


def test_an_unknown_image_encoding_is_rejected_with_the_value_the_client_sent():
    message = pb.StreamRequest(frame=pb.Frame(frame_index=1, image=pb.Image(encoding=7, data=b"x")))
    request = wire.request_from_proto(message)
    assert request.image.encoding == 7
    with pytest.raises(FrameRejected, match="unknown image encoding 7") as rejected:
        decode_image(request.image, max_pixels=64 * 64)
    assert rejected.value.code == ErrorCode.UNKNOWN_ENCODING


def test_responses_round_trip():
    latency = LatencyBreakdown(1.0, 2.0, 3.0, 4.0, 10.0, 5)
    result = FrameResult(
        "s", 3, 7, "cam", 8, 9, "v", (0, 1), latency,
        slots=np.ones((2, 4), np.float32), segmentation=np.zeros((3, 5), np.uint8),
    )  # fmt: skip
    back = wire.response_from_proto(wire.response_to_proto(result))
    assert back.latency == latency and back.slot_ids == (0, 1) and back.soft_masks is None
    np.testing.assert_array_equal(back.segmentation, result.segmentation)
    simple = [
        FrameDropped("s", 1, 2, DropReason.SUPERSEDED, "m", "cam"),
        FrameError("s", 1, ErrorCode.WRONG_CHANNELS, "m", 3, "cam"),
        StreamClosed("s", CloseReason.CLIENT_CLOSED, None, "bye"),
        StreamOpened("s", "t", "m", "v", StreamOptions(mask_size=(4, 4)), OpenKind.NEW, None, (0,)),
    ]
    for response in simple:
        assert wire.response_from_proto(wire.response_to_proto(response)) == response


@pytest.mark.parametrize("value", [0, 99])
def test_unknown_enum_values_in_responses_are_ignored_not_fatal(value):
    """A newer server's enum value (or the never-sent 0) must not stop the client reading the stream: the
    message is delivered, with the value as its enum's UNSPECIFIED member."""
    messages = [
        pb.StreamResponse(dropped=pb.FrameDropped(stream_id="s", frame_index=1, reason=value, message="m")),
        pb.StreamResponse(error=pb.FrameError(stream_id="s", frame_index=2, code=value, message="m")),
        pb.StreamResponse(opened=pb.StreamOpened(stream_id="s", resume_token="t", kind=value)),
        pb.StreamResponse(closed=pb.StreamClosed(stream_id="s", reason=value, message="bye")),
    ]
    dropped, error, opened, closed = (
        wire.response_from_proto(pb.StreamResponse.FromString(m.SerializeToString())) for m in messages
    )
    assert dropped == FrameDropped("s", 1, 0, DropReason.UNSPECIFIED, "m")
    assert error == FrameError("s", 2, ErrorCode.UNSPECIFIED, "m")
    assert isinstance(opened, StreamOpened) and opened.kind == OpenKind.UNSPECIFIED and opened.resume_token == "t"
    assert closed == StreamClosed("s", CloseReason.UNSPECIFIED, None, "bye")
