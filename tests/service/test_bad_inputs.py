"""Every kind of bad input gets a specific answer, never crashes the server and never affects other streams.

Per-frame problems are answered in-band (``FrameError`` with a code) and the stream continues with its state
untouched; protocol problems end the stream with a gRPC status and the ``slotstream-error-code`` trailer.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import replace

import grpc
import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, raw_exchange, reference_outputs, run
from test_stream_service import assert_matches, stream_clip

from service.auth import ERROR_CODE_KEY
from service.client import Client, FrameError, FrameResult, Output, StreamError, StreamOptions
from service.config import ServiceConfig
from service.engine import Engine, EngineOutput
from service.errors import ErrorCode
from service.generated import pb, pb_grpc
from service.server import default_engine_factory
from service.types import EncodedImage, ImageEncoding, StateHandoff

GOOD = make_video(seed=21, frames=1)[0]


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


BAD_FRAMES = {
    "garbage bytes": (EncodedImage(ImageEncoding.JPEG, b"\xff\xd8 garbage"), ErrorCode.UNDECODABLE_IMAGE),
    "truncated jpeg": (EncodedImage(ImageEncoding.JPEG, _jpeg(GOOD)[:100]), ErrorCode.UNDECODABLE_IMAGE),
    "png labelled jpeg": (EncodedImage(ImageEncoding.JPEG, _png(GOOD)), ErrorCode.UNDECODABLE_IMAGE),
    "raw byte count": (EncodedImage(ImageEncoding.RAW_RGB8, GOOD.tobytes()[:-3], 30, 40, 3), ErrorCode.WRONG_RAW_SIZE),
    "raw without size": (EncodedImage(ImageEncoding.RAW_RGB8, GOOD.tobytes()), ErrorCode.WRONG_RAW_SIZE),
    "empty jpeg": (EncodedImage(ImageEncoding.JPEG, b""), ErrorCode.EMPTY_IMAGE),
    "zero-size raw": (EncodedImage(ImageEncoding.RAW_RGB8, b""), ErrorCode.EMPTY_IMAGE),
    "oversized raw": (
        EncodedImage(ImageEncoding.RAW_RGB8, bytes(100 * 100 * 3), 100, 100, 3),
        ErrorCode.IMAGE_TOO_LARGE,
    ),
    "oversized png": (
        EncodedImage(ImageEncoding.PNG, _png(np.zeros((100, 100, 3), np.uint8))),
        ErrorCode.IMAGE_TOO_LARGE,
    ),
    "four-channel raw": (
        EncodedImage(ImageEncoding.RAW_RGB8, bytes(30 * 40 * 4), 30, 40, 4),
        ErrorCode.WRONG_CHANNELS,
    ),
    "one-channel raw": (  # raw is RGB only; grayscale goes as PNG or JPEG (test_server_image_modes.py)
        EncodedImage(ImageEncoding.RAW_RGB8, bytes(30 * 40), 30, 40, 1),
        ErrorCode.WRONG_CHANNELS,
    ),
    "no encoding": (EncodedImage(ImageEncoding.UNSPECIFIED, _png(GOOD)), ErrorCode.UNKNOWN_ENCODING),
}


@pytest.fixture
def strict_server(start_server):
    """A server that accepts at most 64x64-pixel images and 1 MiB messages."""
    return start_server(max_image_pixels=64 * 64, max_message_bytes=1024 * 1024, resume_history=2)


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_is_answered_in_band_and_the_stream_continues(strict_server, case):
    image, code = BAD_FRAMES[case]
    reference = reference_outputs(strict_server.model_dir, [GOOD])

    async def scenario():
        async with Client(strict_server.target) as client:
            stream = await client.open()
            bad = await stream.process(image, capture_time_ns=1_234_567, camera_frame_id="cam0/frame17")
            good = await stream.process(GOOD)  # still the stream's first processed frame: first_step
            await stream.close()
            return bad, good

    bad, good = run(scenario())
    assert isinstance(bad, FrameError) and bad.code == code and bad.frame_index == 0, bad
    assert len(bad.message) > 10
    assert (bad.capture_time_ns, bad.camera_frame_id) == (1_234_567, "cam0/frame17"), "echoed like a result's"
    assert isinstance(good, FrameResult)
    assert_matches([good], reference)


def test_an_overlong_camera_frame_id_is_answered_in_band_and_the_stream_continues(server):
    reference = reference_outputs(server.model_dir, [GOOD])

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            bad = await stream.process(GOOD, camera_frame_id="x" * 257)
            good = await stream.process(GOOD, camera_frame_id="é" * 128)  # 256 bytes: the limit
            await stream.close()
            return bad, good

    bad, good = run(scenario())
    assert isinstance(bad, FrameError) and bad.code == ErrorCode.CAMERA_FRAME_ID_TOO_LONG, bad
    assert "257 bytes" in bad.message
    assert bad.camera_frame_id == "", "an id too long to echo is left out"
    assert isinstance(good, FrameResult) and good.camera_frame_id == "é" * 128
    assert_matches([good], reference)


@pytest.mark.parametrize("index", [3, 2], ids=["repeated", "decreasing"])
def test_frame_index_must_increase(server, index):
    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(GOOD, frame_index=3)
            answer = await stream.process(GOOD, frame_index=index)
            after = await stream.process(GOOD, frame_index=4)
            await stream.close()
            return answer, after

    answer, after = run(scenario())
    assert isinstance(answer, FrameError) and answer.code == ErrorCode.FRAME_INDEX_NOT_INCREASING
    assert "not larger than that of the last frame this stream accepted (3)" in answer.message
    assert isinstance(after, FrameResult)


def _frame(index: int = 0):
    height, width, _ = GOOD.shape
    image = pb.Image(encoding=pb.IMAGE_ENCODING_RAW_RGB8, data=GOOD.tobytes(), height=height, width=width)
    return pb.StreamRequest(frame=pb.Frame(frame_index=index, image=image))


def _open(**fields):
    return pb.StreamRequest(open=pb.OpenStream(**fields))


def _trailer_code(error: grpc.aio.AioRpcError) -> str:
    return dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY, "")


@pytest.mark.parametrize(
    ("requests", "status", "code"),
    [
        ([], grpc.StatusCode.FAILED_PRECONDITION, ErrorCode.NOT_OPEN),
        ([_frame()], grpc.StatusCode.FAILED_PRECONDITION, ErrorCode.NOT_OPEN),
        ([pb.StreamRequest(close=pb.CloseStream())], grpc.StatusCode.FAILED_PRECONDITION, ErrorCode.NOT_OPEN),
        ([_open(), _frame(), _open()], grpc.StatusCode.FAILED_PRECONDITION, ErrorCode.ALREADY_OPEN),
        ([_open(model="nope")], grpc.StatusCode.NOT_FOUND, ErrorCode.UNKNOWN_MODEL),
        (
            [_open(stream_id="ghost", resume=pb.ResumeStream(resume_token="x"))],
            grpc.StatusCode.NOT_FOUND,
            ErrorCode.UNKNOWN_STREAM,
        ),
        ([_open(resume=pb.ResumeStream(resume_token="x"))], grpc.StatusCode.INVALID_ARGUMENT, ErrorCode.INVALID_OPEN),
        ([_open(stream_id="bad id!")], grpc.StatusCode.INVALID_ARGUMENT, ErrorCode.INVALID_OPEN),
        (
            [_open(options=pb.StreamOptions(mask_height=8))],
            grpc.StatusCode.INVALID_ARGUMENT,
            ErrorCode.INVALID_OPEN,
        ),
        (
            [_open(options=pb.StreamOptions(idle_timeout_s=-1))],
            grpc.StatusCode.INVALID_ARGUMENT,
            ErrorCode.INVALID_OPEN,
        ),
        (
            [_open(handoff=pb.StateHandoff(state=pb.Tensor(shape=[4, 16], dtype=pb.DTYPE_FLOAT32, data=b"short")))],
            grpc.StatusCode.INVALID_ARGUMENT,
            ErrorCode.HANDOFF_MISMATCH,
        ),
    ],
    ids=[
        "no request before the end of the requests",
        "frame before open",
        "close before open",
        "second open",
        "unknown model",
        "unknown stream on resume",
        "resume without stream id",
        "invalid stream id",
        "half a mask size",
        "negative idle timeout",
        "malformed hand-off tensor",
    ],
)
def test_protocol_errors_end_the_stream_with_a_specific_status(server, requests, status, code):
    responses, error = run(raw_exchange(server.target, *requests))
    assert error is not None, responses
    assert error.code() == status
    assert _trailer_code(error) == code.wire_name
    assert len(error.details()) > 20
    if code != ErrorCode.NOT_OPEN:  # a refused open, wherever it was refused (a second open too)
        assert server.metric("slotstream_open_rejected_total", {"code": code.name.lower()}) == 1
    if code == ErrorCode.UNKNOWN_MODEL:
        assert "tiny" in error.details()  # names the models that exist


def _handoff_message():
    """A well-formed hand-off state of the served tiny model (4 slots of 16), from frame 0."""
    state = np.zeros((4, 16), np.float32)
    tensor = pb.Tensor(shape=[4, 16], dtype=pb.DTYPE_FLOAT32, data=state.tobytes())
    return pb.StateHandoff(stream_id="s", model="tiny", last_frame_index=0, state=tensor)


@pytest.mark.parametrize(
    ("open_request", "fragment"),
    [
        (
            _open(stream_id="s", resume=pb.ResumeStream(resume_token="x"), handoff=pb.StateHandoff()),
            "set either resume or handoff in an open, not both",
        ),
        (
            _open(stream_id="s", resume=pb.ResumeStream(resume_token="x"), handoff=_handoff_message()),
            "set either resume or handoff in an open, not both",
        ),
        (
            _open(options=pb.StreamOptions(soft_mask_dtype=9)),
            "soft_mask_dtype 9 is not DTYPE_FLOAT32 (1, or 0 for the default) or DTYPE_UINT8 (2)",
        ),
        (
            _open(options=pb.StreamOptions(mask_height=100, mask_width=100)),
            "exceeds this server's limit of 4096 pixels (its --max-image-pixels)",
        ),
        (
            _open(options=pb.StreamOptions(outputs=[pb.OUTPUT_SLOTS] * 100_000)),
            "options.outputs lists 100,000 entries: list each output once",
        ),
    ],
    ids=[
        "resume and empty handoff",
        "resume and valid handoff",
        "unknown soft mask dtype",
        "mask over the limit",
        "outputs listed 100,000 times",
    ],
)
def test_bad_opens_are_refused_with_invalid_open_and_say_what_was_wrong(strict_server, open_request, fragment):
    """Both ``resume`` and ``handoff`` used to be reported as "malformed hand-off state: unknown tensor dtype 0"
    (or pass as a resume), an unknown ``soft_mask_dtype`` was served as FLOAT32, and the mask-size limit did not
    name the flag that sets it."""
    responses, error = run(raw_exchange(strict_server.target, open_request))
    assert error is not None, [r.WhichOneof("kind") for r in responses]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert _trailer_code(error) == ErrorCode.INVALID_OPEN.wire_name
    assert fragment in error.details(), error.details()
    assert strict_server.metric("slotstream_open_rejected_total", {"code": "invalid_open"}) == 1


@pytest.mark.parametrize(
    ("field", "fragment"),
    [
        ("slot_ids", "300 slot ids: a state holds at most 256 slots"),
        ("shape", "bad tensor shape: 9 dimensions, more than 8"),
    ],
)
def test_a_handoff_with_client_chosen_lengths_is_refused_before_they_are_read(strict_server, field, fragment):
    """Long repeated fields were turned into tuples before any check: seconds of the event loop for 16 MB."""
    handoff = _handoff_message()
    if field == "slot_ids":
        handoff.slot_ids.extend(range(300))
    else:
        handoff.state.shape[:] = [1] * 9
    _, error = run(raw_exchange(strict_server.target, _open(stream_id="s", handoff=handoff)))
    assert error is not None and _trailer_code(error) == ErrorCode.HANDOFF_MISMATCH.wire_name, error
    assert fragment in error.details(), error.details()


def test_a_frame_without_an_image_is_told_so(server):
    """Not "unknown image encoding 0": the frame has no image at all."""
    for frame in (pb.Frame(frame_index=0), pb.Frame(frame_index=0, image=pb.Image())):
        responses, error = run(raw_exchange(server.target, _open(), pb.StreamRequest(frame=frame)))
        assert error is None, error
        assert [r.WhichOneof("kind") for r in responses] == ["opened", "error", "closed"]
        answer = responses[1].error
        assert answer.code == ErrorCode.EMPTY_IMAGE and answer.frame_index == 0
        assert "the frame has no image" in answer.message and "encoding 0" not in answer.message, answer.message


def test_nothing_after_a_close_is_read_as_the_proto_and_readme_say(server):
    """A frame sent after ``close`` is never read: it gets no answer, the call ends OK after the answers to the
    frames before the close, and the stream counts as closed. The proto and the README say so (the proto used to
    promise one answer per frame sent, and said nothing of requests after ``close``)."""
    from service.protogen import PROTO_FILES, PROTO_ROOT, REPO_ROOT

    def closed() -> float:
        return server.metric("slotstream_streams_released_total", {"reason": "closed"})

    closed_before = closed()
    close_request = pb.StreamRequest(close=pb.CloseStream())
    responses, error = run(raw_exchange(server.target, _open(), _frame(0), close_request, _frame(1), _frame(2)))
    assert error is None, error
    assert [r.WhichOneof("kind") for r in responses] == ["opened", "result", "closed"]
    assert responses[1].result.frame_index == 0
    deadline = time.monotonic() + 10  # the server counts the release as the call ends, maybe after our last read
    while closed() <= closed_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed() == closed_before + 1
    proto = " ".join((PROTO_ROOT / PROTO_FILES[0]).read_text().replace("//", " ").split())
    assert "then optionally `close`, which must be the last request: the server reads nothing after it" in proto
    assert "a frame sent after `close` gets no answer" in proto
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert "the server reads nothing after a `close`" in readme


def test_a_frame_written_after_the_closed_answer_still_ends_the_call_ok(server):
    """The client writes after its ``close`` once the server has answered it with ``closed``: the server drops the
    frame unread and ends the call OK at the client's half-close (ending it at the close made grpc.aio report the
    client's write as ``INTERNAL``, grpc/grpc#36066)."""

    async def exchange() -> tuple[list[str], grpc.StatusCode]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            for request in (_open(), _frame(0), pb.StreamRequest(close=pb.CloseStream())):
                await call.write(request)
            kinds = []
            while (response := await call.read()) is not grpc.aio.EOF:
                kinds.append(response.WhichOneof("kind"))
                if kinds[-1] == "closed":
                    break
            await asyncio.sleep(0.3)  # a server that ended the call at the close has ended it by now
            await call.write(_frame(1))
            await call.done_writing()
            while (response := await call.read()) is not grpc.aio.EOF:
                kinds.append(response.WhichOneof("kind"))
            return kinds, await call.code()

    kinds, code = run(exchange())
    assert kinds == ["opened", "result", "closed"] and code == grpc.StatusCode.OK


def test_unknown_request_kinds_are_ignored(server):
    """An empty request (a newer client's request kind) is skipped, per the versioning rules."""
    responses, error = run(raw_exchange(server.target, _open(), pb.StreamRequest(), _frame()))
    assert error is None
    assert [r.WhichOneof("kind") for r in responses] == ["opened", "result", "closed"]


@pytest.mark.parametrize("token", ["not-the-token", ""], ids=["wrong", "empty"])
def test_wrong_resume_token_is_permission_denied(server, token):
    """Only the stream's own token resumes it: a wrong one, or none at all (an empty token), is refused."""

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(GOOD)
            with pytest.raises(StreamError) as denied:
                await client.resume(stream.stream_id, token, 0)
            await stream.close()
            return denied.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.PERMISSION_DENIED and error.code == ErrorCode.WRONG_RESUME_TOKEN


def test_resume_point_older_than_the_history_is_refused(strict_server):
    clip = make_video(seed=22, frames=6)

    async def scenario():
        async with Client(strict_server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            for frame in clip:
                await stream.process(frame)
            with pytest.raises(StreamError) as refused:
                await client.resume(stream.stream_id, stream.opened.resume_token, 1)
            return refused.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.FAILED_PRECONDITION and error.code == ErrorCode.RESUME_POINT_UNAVAILABLE
    assert "after frames 3 to 5" in error.message


def test_resume_point_after_the_newest_frame_is_refused(server):
    """A resume after a frame the server never received would make it refuse the client's next frames."""

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(GOOD)
            await stream.process(GOOD)
            with pytest.raises(StreamError) as refused:
                await client.resume(stream.stream_id, stream.opened.resume_token, 99)
            resumed = await client.resume(stream.stream_id, stream.opened.resume_token, 1)  # the right point works
            assert resumed.opened.last_frame_index == 1
            assert isinstance(await resumed.process(GOOD), FrameResult)
            await resumed.close()
            return refused.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.FAILED_PRECONDITION and error.code == ErrorCode.RESUME_POINT_UNAVAILABLE
    assert "after frame 99: the stream has received frames up to 1 only" in error.message


@pytest.mark.parametrize("problem", ["version", "shape", "nan"])
def test_mismatched_handoff_is_refused(server, problem):
    card = run(_card(server.target))
    state = np.zeros((card.num_slots, card.slot_dim), np.float32)
    version = card.version
    if problem == "version":
        version = "0123456789ab"
    elif problem == "shape":
        state = np.zeros((card.num_slots + 1, card.slot_dim), np.float32)
    else:
        state[0, 0] = np.nan
    handoff = StateHandoff("s", card.name, version, 5, state, ())

    async def scenario():
        async with Client(server.target) as client:
            with pytest.raises(StreamError) as refused:
                await client.open(handoff=handoff)
            return refused.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.INVALID_ARGUMENT and error.code == ErrorCode.HANDOFF_MISMATCH


async def _card(target):
    async with Client(target) as client:
        return await client.describe()


@pytest.mark.parametrize("resume_window_s", [0.0, 60.0])
def test_a_request_that_does_not_parse_ends_the_call_with_invalid_argument(server, resume_window_s):
    """Bytes that are not a ``StreamRequest`` (here a camera frame id that is not UTF-8) end the call with
    INVALID_ARGUMENT naming the request; before, the call ended with status OK as if the client had left. The
    frames before it were good, so the stream is detached as on a lost connection: one opened with a resume window
    is resumed by the next call, after the last frame answered; one without is freed."""
    frame = _frame(1)
    frame.frame.camera_frame_id = "AAAA"
    malformed = frame.SerializeToString().replace(b"AAAA", b"\xff\xfe\xfd\xfc")
    stream_id = f"unparsed-{resume_window_s:g}"
    options = pb.StreamOptions(resume_window_s=resume_window_s)

    async def exchange(requests):
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = channel.stream_stream(
                "/slotstream.v1.Perception/Stream",
                request_serializer=lambda raw: raw,
                response_deserializer=pb.StreamResponse.FromString,
            )()
            try:
                for request in requests:
                    await call.write(request)
                await call.done_writing()
            except grpc.aio.AioRpcError:  # the server ended the call before taking every request: its status follows
                pass
            responses = []
            try:
                async for response in call:
                    responses.append(response)
            except grpc.aio.AioRpcError as error:
                return responses, error
            return responses, None

    opening = _open(stream_id=stream_id, options=options).SerializeToString()
    responses, error = run(exchange([opening, _frame(0).SerializeToString(), malformed]))
    kinds = [response.WhichOneof("kind") for response in responses]
    assert kinds[0] == "opened" and error is not None, kinds
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _trailer_code(error) == ErrorCode.MALFORMED_REQUEST.wire_name
    assert "request 3 of this call is not a valid slotstream.v1.StreamRequest" in error.details()
    assert "its stream (if the call opened one) detached as on a lost connection" in error.details()
    assert server.metric("slotstream_calls_refused_total", {"code": "malformed_request"}) == 1
    assert server.metric("slotstream_open_rejected_total", {"code": "malformed_request"}) == 0, "not the open"

    resume = pb.ResumeStream(resume_token=responses[0].opened.resume_token, last_frame_index=0)
    resuming = [_open(stream_id=stream_id, resume=resume).SerializeToString()]
    resumed, error = run(exchange(resuming + [frame.SerializeToString()] * (resume_window_s > 0)))
    if resume_window_s > 0:
        assert error is None, error
        assert [response.WhichOneof("kind") for response in resumed] == ["opened", "result", "closed"]
        assert resumed[1].result.frame_index == 1
    else:
        assert error is not None and error.code() == grpc.StatusCode.NOT_FOUND, error
        assert server.metric("slotstream_streams_released_total", {"reason": "error"}) == 1
    assert len(run(stream_clip(server.target, make_video(24, 2)))) == 2  # the server keeps serving


def test_message_over_the_size_limit_is_resource_exhausted_and_harmless(strict_server):
    """A frame bigger than the message limit ends that call only; the server keeps serving. (The client library
    sizes its frames to the server's limit, so the frame goes on a raw call, as another client may send it.)"""
    huge = pb.Image(encoding=pb.IMAGE_ENCODING_RAW_RGB8, data=bytes(700 * 700 * 3), height=700, width=700)
    frame = pb.StreamRequest(frame=pb.Frame(frame_index=0, image=huge))  # 1.47 MB > 1 MiB
    responses, error = run(raw_exchange(strict_server.target, _open(), frame, answer_first=True))
    assert [response.WhichOneof("kind") for response in responses] == ["opened"]
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    results = run(stream_clip(strict_server.target, make_video(23, 2)))
    assert len(results) == 2


def test_the_model_card_tells_the_request_and_image_limits_before_a_frame_fails(strict_server):
    """``Describe`` tells a client the server's ``--max-message-bytes`` and ``--max-image-pixels``, so it can size
    its frames before one is refused (an oversized message is refused by gRPC itself, without a trailer)."""
    card = run(_card(strict_server.target))
    assert (card.max_request_bytes, card.max_image_pixels) == (1024 * 1024, 64 * 64)

    async def raw_card():
        async with grpc.aio.insecure_channel(strict_server.target) as channel:
            return await pb_grpc.PerceptionStub(channel).Describe(pb.DescribeRequest(), timeout=10)

    message = run(raw_card())
    assert (message.max_request_bytes, message.max_image_pixels) == (1024 * 1024, 64 * 64)


def test_an_open_whose_replies_would_exceed_the_message_limit_is_refused(server):
    """Float32 soft masks at 1080x1920 (4 x 8.3 MB) cannot fit a 16 MiB reply: refused at open, naming the sizes;
    uint8 soft masks at the same size fit, and their replies arrive."""
    soft = pb.StreamOptions(mask_height=1080, mask_width=1920, outputs=[pb.OUTPUT_SOFT_MASKS])
    responses, error = run(raw_exchange(server.target, _open(options=soft)))
    assert error is not None, [r.WhichOneof("kind") for r in responses]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _trailer_code(error) == ErrorCode.INVALID_OPEN.wire_name
    details = error.details()
    assert "1080x1920" in details and f"limit of {16 * 1024 * 1024} bytes" in details, details
    estimate = re.search(r"could be (\d+) bytes", details)
    assert estimate is not None and int(estimate.group(1)) >= 4 * 1080 * 1920 * 4, details

    async def uint8_masks():
        async with Client(server.target) as client:
            options = StreamOptions(
                outputs=frozenset({Output.SOFT_MASKS}), mask_size=(1080, 1920), soft_masks_uint8=True
            )
            stream = await client.open(options)
            result = await stream.process(GOOD)
            await stream.close()
            return result

    result = run(uint8_masks())
    assert isinstance(result, FrameResult) and result.soft_masks is not None
    assert result.soft_masks.shape == (4, 1080, 1920)


def test_a_client_that_could_not_receive_the_replies_refuses_the_stream_and_closes_it(server):
    """uint8 soft masks at 1080x1920 (4 x 2.1 MB) fit the server's 16 MiB replies but not a client built with
    1 MiB messages: the client reads the bound from ``StreamOpened``, closes the stream and says what to change,
    instead of failing on the first reply with RESOURCE_EXHAUSTED."""
    options = StreamOptions(
        outputs=frozenset({Output.SOFT_MASKS}), mask_size=(1080, 1920), soft_masks_uint8=True, resume_window_s=30
    )

    async def open_with(max_message_bytes):
        async with Client(server.target, max_message_bytes=max_message_bytes) as client:
            stream = await client.open(options)
            await stream.close()
            return stream.opened

    with pytest.raises(StreamError) as refused:
        run(open_with(1024 * 1024))
    error = refused.value
    assert error.code == ErrorCode.INVALID_OPEN, error
    assert f"max_message_bytes {1024 * 1024:,}" in error.message and "uint8 soft masks" in error.message
    bound = int(re.search(r"can be ([\d,]+) bytes", error.message).group(1).replace(",", ""))
    assert 4 * 1080 * 1920 <= bound <= 16 * 1024 * 1024
    deadline = time.monotonic() + 10
    while server.session_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.session_count() == 0, "the refused stream was left open on the server"
    opened = run(open_with(16 * 1024 * 1024))
    assert opened.max_reply_bytes == bound


class ZeroInputSizeEngine(Engine):
    """A real engine whose card claims a 0x0 input size: stands in for a server bug hit while accepting a frame
    (resizing to 0x0 raises ``ValueError``, which is no ``FrameRejected``)."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.card = replace(inner.card, image_size=(0, 0))

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        return self.inner.first_step(frames)

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        return self.inner.step(frames, state)


def test_a_server_bug_while_accepting_a_frame_is_internal_and_logged(start_server, caplog):
    """Not a disconnect: the call ends with INTERNAL, the error is logged and the state is freed although the
    stream asked for a resume window."""

    def factory(config: ServiceConfig) -> Engine:
        return ZeroInputSizeEngine(default_engine_factory(config))

    server = start_server(engine_factory=factory, warmup=False)
    options = pb.StreamOptions(mask_height=12, mask_width=12, resume_window_s=30)
    with caplog.at_level(logging.ERROR, logger="service.servicer"):
        responses, error = run(asyncio.wait_for(raw_exchange(server.target, _open(options=options), _frame()), 30))
    assert [r.WhichOneof("kind") for r in responses] == ["opened"]
    assert error is not None and error.code() == grpc.StatusCode.INTERNAL, error
    assert "ValueError" in error.details()
    (failed,) = [record for record in caplog.records if record.getMessage() == "stream failed"]
    assert failed.stream_id == responses[0].opened.stream_id != "", "the line names the stream"
    assert server.session_count() == 0, "a server error frees the stream instead of keeping it resumable"


@pytest.mark.parametrize("tokens", [("wrong", "s3cret"), ("s3cret", "wrong"), ("s3cret", "s3cret")])
def test_a_call_with_several_authorization_values_is_refused_whatever_their_order(start_server, tokens):
    """Which of several tokens counted would depend on their order: such a call is refused, saying why."""
    server = start_server(auth_token="s3cret")
    with grpc.insecure_channel(server.target) as channel:
        metadata = [("authorization", f"Bearer {token}") for token in tokens]
        with pytest.raises(grpc.RpcError) as denied:
            pb_grpc.PerceptionStub(channel).Describe(pb.DescribeRequest(), metadata=metadata, timeout=10)
        good = pb_grpc.PerceptionStub(channel).Describe(
            pb.DescribeRequest(), metadata=[("authorization", "Bearer s3cret")], timeout=10
        )
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "carries 2 'authorization' metadata values: send one" in denied.value.details()
    assert good.name, "one value of the right token is let through"
    assert server.metric("slotstream_calls_refused_total", {"code": "unauthenticated"}) == 1


def test_bearer_token_is_required_when_configured(start_server, caplog):
    server = start_server(auth_token="s3cret")

    async def attempt(token):
        async with Client(server.target, token=token) as client:
            stream = await client.open()
            result = await stream.process(GOOD)
            await stream.close()
            return result

    async def describe(token):
        async with Client(server.target, token=token) as client:
            return await client.describe()

    for token, message in ((None, "missing"), ("guess-123", "wrong bearer token")):
        for call in (attempt, describe):
            with pytest.raises(StreamError) as denied:
                run(call(token))
            assert denied.value.status == grpc.StatusCode.UNAUTHENTICATED
            assert denied.value.code == ErrorCode.UNAUTHENTICATED and message in denied.value.message
    assert isinstance(run(attempt("s3cret")), FrameResult)
    # Refusals are counted, and logged with the peer but never the token, at most once per interval.
    assert server.metric("slotstream_calls_refused_total", {"code": "unauthenticated"}) == 4
    warnings = [r for r in caplog.records if r.getMessage() == "refused a call without a valid bearer token"]
    assert len(warnings) == 1 and warnings[0].peer and warnings[0].why == "no token"
    assert "guess-123" not in caplog.text and "s3cret" not in caplog.text

    async def health_without_token():
        async with Client(server.target) as client:
            await client.wait_ready(5)  # probes carry no metadata

    run(health_without_token())

    async def watch_without_token() -> grpc.StatusCode:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(server.target) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            try:
                async for _ in call:
                    return grpc.StatusCode.OK  # an answer: the call is held open without a token
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    assert run(watch_without_token()) == grpc.StatusCode.UNAUTHENTICATED, "Watch holds a call open: it needs the token"


def test_the_bearer_scheme_is_case_insensitive_and_a_value_of_another_form_is_told_the_form(start_server):
    """HTTP auth schemes are case-insensitive (RFC 9110), so ``bearer <token>`` is accepted; a value that is not
    ``Bearer <token>`` at all (the bare token, another scheme) is told the expected form, not "wrong token"."""
    server = start_server(auth_token="s3cret")

    async def describe(value: str):
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.PerceptionStub(channel)
            try:
                return await stub.Describe(pb.DescribeRequest(), metadata=(("authorization", value),))
            except grpc.aio.AioRpcError as error:
                return error

    for value in ("bearer s3cret", "BEARER s3cret", "Bearer  s3cret"):
        card = run(describe(value))
        assert isinstance(card, pb.ModelCard) and card.name == "tiny", (value, card)
    wrong = run(describe("bearer guess"))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED and "wrong bearer token" in wrong.details()
    for value in ("s3cret", "Basic czNjcmV0", "Bearer", "Bearer "):
        error = run(describe(value))
        assert isinstance(error, grpc.aio.AioRpcError), value
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED and _trailer_code(error) == "ERROR_CODE_UNAUTHENTICATED"
        assert "'authorization: Bearer <token>'" in error.details() and "wrong" not in error.details(), value
        assert "s3cret" not in error.details() and "czNjcmV0" not in error.details()


def test_bad_input_on_one_stream_does_not_affect_another(strict_server):
    """A stream sending every kind of bad frame next to a healthy stream: the healthy one is exact."""
    clip = make_video(seed=24, frames=30)
    reference = reference_outputs(strict_server.model_dir, clip)

    async def abuser():
        async with Client(strict_server.target) as client:
            stream = await client.open()
            for image, _ in BAD_FRAMES.values():
                await stream.process(image)
            await stream.close()

    async def scenario():
        results, _ = await asyncio.gather(stream_clip(strict_server.target, clip), abuser())
        return results

    assert_matches(run(scenario()), reference)


def test_a_call_that_never_opens_is_ended_after_the_open_timeout(start_server):
    """Calls without an open count against no stream limit, so they must not live for ever, nor for the whole idle
    timeout (5 min by default: thousands of such calls held hundreds of MB)."""
    server = start_server(open_timeout_s=0.3, idle_timeout_s=600.0)

    async def silent_call():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            started = time.perf_counter()
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as error:
                return error, time.perf_counter() - started
            return None, time.perf_counter() - started

    error, elapsed = run(silent_call(), timeout=30)
    assert error is not None and error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _trailer_code(error) == ErrorCode.NOT_OPEN.wire_name
    assert "no open within 0.3 s (--open-timeout-s)" in error.details()
    assert elapsed < 5.0
