"""What the proto says a client gets is what a real server gives: the status codes of both RPCs, the image and frame
index rules of the per-frame error codes, the refusal of request values this server does not know, the least idle
timeout, and status messages that tell any client (not only the Python one) what to do."""

from __future__ import annotations

import asyncio
import re
import time
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf import descriptor_pb2
from service_helpers import make_video, raw, raw_exchange, run

from service import protogen, wire
from service.auth import ERROR_CODE_KEY
from service.config import MAX_ADMIN_CALLS
from service.engine import ModelCard
from service.errors import ADMIN_ONLY_CODES, STREAM_ERROR_CODES, ErrorCode
from service.generated import pb, pb_grpc
from service.servicer import STATUS_OF
from service.session import Session
from service.stream_endings import stalled_message
from service.types import MIN_IDLE_TIMEOUT_S, FrameRequest, StreamOptions

GOOD = make_video(seed=34, frames=1)[0]


def _comments() -> dict[str, str]:
    """Every element's leading comment by name: ``Message``, ``Message.field``, ``Enum.VALUE``, ``Service.Method``."""
    files = descriptor_pb2.FileDescriptorSet.FromString(protogen.descriptor_set()).file
    (file,) = [f for f in files if f.package == "slotstream.v1"]
    by_path = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
    comments = {}
    for i, message in enumerate(file.message_type):
        comments[message.name] = by_path.get((4, i), "")
        for j, field in enumerate(message.field):
            comments[f"{message.name}.{field.name}"] = by_path.get((4, i, 2, j), "")
    for i, enum in enumerate(file.enum_type):
        for j, value in enumerate(enum.value):
            comments[f"{enum.name}.{value.name}"] = by_path.get((5, i, 2, j), "")
    for i, service in enumerate(file.service):
        comments[service.name] = by_path.get((6, i), "")
        for j, method in enumerate(service.method):
            comments[f"{service.name}.{method.name}"] = by_path.get((6, i, 2, j), "")
    return comments


COMMENTS = _comments()


def _flat(name: str) -> str:
    """The comment of ``name`` on one line, its spaces collapsed."""
    return " ".join(COMMENTS[name].split())


def _status_bullets(method: str) -> dict[str, str]:
    """The ``- STATUS: ...`` list of a method's comment, by status name, each bullet on one line."""
    bullets: dict[str, str] = {}
    current = None
    for line in COMMENTS[f"Perception.{method}"].splitlines():
        start = re.match(r"\s*- ([A-Z_]+): (.*)", line)
        if start:
            current = start.group(1)
            bullets[current] = start.group(2)
        elif current is not None and line.strip():
            bullets[current] += " " + line.strip()
        else:
            current = None
    return bullets


def _trailer(error: grpc.aio.AioRpcError) -> str:
    return dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY, "")


def _open(**options):
    return pb.StreamRequest(open=pb.OpenStream(options=pb.StreamOptions(**options)))


def _frame(index: int, image=None):
    return wire.request_to_proto(FrameRequest(index, raw(GOOD))) if image is None else _raw_frame(index, image)


def _raw_frame(index: int, image: pb.Image):
    return pb.StreamRequest(frame=pb.Frame(frame_index=index, image=image))


# -- status codes -----------------------------------------------------------------------------------------


def test_the_stream_comment_lists_every_stream_ending_code_under_its_status():
    bullets = _status_bullets("Stream")
    for code in set(STREAM_ERROR_CODES) - ADMIN_ONLY_CODES:
        status = STATUS_OF[code].name
        assert code.wire_name in bullets.get(status, ""), (code, status, bullets.get(status))
    assert "--open-timeout-s" in bullets["FAILED_PRECONDITION"]
    assert "--open-timeout-s" in _flat("ErrorCode.ERROR_CODE_NOT_OPEN")


def test_the_describe_comment_lists_the_statuses_a_server_ends_it_with(start_server):
    """Each refusal of ``Describe`` a real server gives is listed with its code, and the code's own comment names
    the flag its message names."""
    server = start_server(auth_token="s3cret", max_streams=1, max_calls=1)
    token = (("authorization", "Bearer s3cret"),)

    async def refusals():
        ended = []
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.PerceptionStub(channel)
            for request, metadata in ((pb.DescribeRequest(model="nope"), token), (pb.DescribeRequest(), ())):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Describe(request, metadata=metadata)
                ended.append(refused.value)
            unparsed = channel.unary_unary("/slotstream.v1.Perception/Describe")  # bytes in and out
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await unparsed(b"\x0a\x01\xff", metadata=token)  # model: one byte that is not UTF-8
            ended.append(refused.value)
            held = stub.Stream(metadata=token)
            await held.write(pb.StreamRequest(open=pb.OpenStream()))
            await held.read()  # the one call --max-calls allows is held
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Describe(pb.DescribeRequest(), metadata=token)
            ended.append(refused.value)
            held.cancel()
        return ended

    ended = run(refusals())
    bullets = _status_bullets("Describe")
    seen = [(error.code().name, _trailer(error)) for error in ended]
    assert seen == [
        ("NOT_FOUND", ErrorCode.UNKNOWN_MODEL.wire_name),
        ("UNAUTHENTICATED", ErrorCode.UNAUTHENTICATED.wire_name),
        ("INVALID_ARGUMENT", ErrorCode.MALFORMED_REQUEST.wire_name),
        ("RESOURCE_EXHAUSTED", ErrorCode.TOO_MANY_STREAMS.wire_name),
    ]
    for status, code in seen:
        assert code in bullets.get(status, ""), (status, code, bullets)
    flags = re.findall(r"--[a-z-]+", ended[-1].details())
    assert flags == ["--max-calls"], ended[-1].details()
    assert "--max-calls" in bullets["RESOURCE_EXHAUSTED"]
    assert "--max-calls" in _flat("ErrorCode.ERROR_CODE_TOO_MANY_STREAMS")


# -- per-frame codes --------------------------------------------------------------------------------------


def test_the_admin_comment_gives_admin_calls_their_own_cap_apart_from_max_calls():
    admin = _flat("Admin")
    assert f"cap of their own, {MAX_ADMIN_CALLS} at once, apart from the server's `--max-calls`" in admin, admin
    assert f"{MAX_ADMIN_CALLS} Admin calls are under way already" in admin, admin
    assert "but `Health/Check` and Admin calls" in _flat("ErrorCode.ERROR_CODE_TOO_MANY_STREAMS")


def test_empty_and_wrongly_sized_raw_images_get_the_codes_the_proto_gives_them(server):
    """A raw image with bytes and a zero size, or both sizes and no bytes, is WRONG_RAW_SIZE; one with neither is
    EMPTY_IMAGE, and so is an empty JPEG. The EMPTY_IMAGE comment used to claim every zero size or byte count."""
    raw_rgb = pb.IMAGE_ENCODING_RAW_RGB8
    cases = [
        (pb.Image(encoding=raw_rgb, height=0, width=50, data=bytes(150)), ErrorCode.WRONG_RAW_SIZE),
        (pb.Image(encoding=raw_rgb, height=1, width=50), ErrorCode.WRONG_RAW_SIZE),
        (pb.Image(encoding=raw_rgb, height=0, width=50), ErrorCode.EMPTY_IMAGE),
        (pb.Image(encoding=pb.IMAGE_ENCODING_JPEG), ErrorCode.EMPTY_IMAGE),
    ]
    requests = [_raw_frame(index, image) for index, (image, _) in enumerate(cases)]
    responses, error = run(raw_exchange(server.target, _open(), *requests))
    assert error is None, error
    assert [r.error.code for r in responses[1:-1]] == [code for _, code in cases]
    empty = _flat("ErrorCode.ERROR_CODE_EMPTY_IMAGE")
    assert "zero width, height or bytes" not in empty
    assert "a raw image of no bytes whose `height` or `width` is 0 (with both set, ERROR_CODE_WRONG_RAW_SIZE)" in empty
    assert "bytes were sent with `height` or `width` 0" in _flat("ErrorCode.ERROR_CODE_WRONG_RAW_SIZE")


def test_a_frame_refused_with_a_frame_error_does_not_count_for_the_frame_index_rule(server):
    """Index 12 refused for its image, then 12 again is answered; a third 12 is not increasing, and the message says
    which frame it compared with, as the proto defines it."""
    empty = pb.Image(encoding=pb.IMAGE_ENCODING_JPEG)
    requests = [_raw_frame(12, empty), _frame(12), _frame(12)]
    responses, error = run(raw_exchange(server.target, _open(), *requests))
    assert error is None, error
    kinds = [r.WhichOneof("kind") for r in responses]
    assert kinds == ["opened", "error", "result", "error", "closed"]
    assert responses[1].error.code == ErrorCode.EMPTY_IMAGE and responses[2].result.frame_index == 12
    repeated = responses[3].error
    assert repeated.code == ErrorCode.FRAME_INDEX_NOT_INCREASING
    assert "not larger than that of the last frame this stream accepted (12)" in repeated.message, repeated.message
    rule = _flat("ErrorCode.ERROR_CODE_FRAME_INDEX_NOT_INCREASING")
    assert "last accepted frame" in rule and "its index may be sent again" in rule
    assert "previous frame's" not in rule


# -- request values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("outputs", [[99], [pb.OUTPUT_SLOTS, 99]], ids=["alone", "with slots"])
def test_an_unknown_output_is_refused_naming_it(server, outputs):
    """``[99]`` was served the default outputs and ``[SLOTS, 99]`` slots alone, as unknown frame fits and soft mask
    types are not: a client asking for an output this server does not know must learn it, not get less."""
    responses, error = run(raw_exchange(server.target, _open(outputs=outputs), _frame(0), answer_first=True))
    assert error is not None, [r.WhichOneof("kind") for r in responses]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _trailer(error) == ErrorCode.INVALID_OPEN.wire_name
    assert "outputs 99 is not an output this server knows" in error.details(), error.details()
    assert "is refused (ERROR_CODE_INVALID_OPEN)" in _flat("StreamOptions.outputs")


def test_unspecified_outputs_are_still_ignored(server):
    responses, error = run(
        raw_exchange(server.target, _open(outputs=[pb.OUTPUT_UNSPECIFIED, pb.OUTPUT_SLOTS]), _frame(0))
    )
    assert error is None, error
    result = responses[1].result
    assert result.HasField("slots") and not result.HasField("segmentation")


def test_requests_of_an_unknown_kind_are_skipped_and_cannot_keep_an_unopened_call_alive(start_server):
    """The rule the proto and its README state: such a request gets no answer (an answered stream is not disturbed,
    see test_bad_inputs.py), and skipping it does not restart the wait for the open: the call ends the open timeout
    after it began, not after its last request."""
    server = start_server(open_timeout_s=1.5)

    async def empty_requests():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            started = time.monotonic()
            for _ in range(15):  # 0.75 s of requests of no known kind; then nothing, the call left open
                await call.write(pb.StreamRequest())
                last_write = time.monotonic() - started
                await asyncio.sleep(0.05)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await call.read()
            return ended.value, time.monotonic() - started, last_write

    error, elapsed, last_write = run(empty_requests())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and _trailer(error) == ErrorCode.NOT_OPEN.wire_name
    # A wait restarted by the last skipped request would end 1.5 s after it was read, so after it was written.
    assert elapsed < last_write + 1.5, (
        f"ended {elapsed:.2f} s after it began, {elapsed - last_write:.2f} s after its last request: the skipped "
        "requests restarted the wait"
    )
    assert "gets no answer" in _flat("StreamRequest")
    readme = " ".join((protogen.PROTO_ROOT / "README.md").read_text().split())
    assert "a request of a kind the server does not know (a `StreamRequest` whose `kind` is unset" in readme


@pytest.mark.parametrize("idle_timeout_s", [0.05, 0.999])
def test_an_idle_timeout_under_the_least_is_refused_naming_it(server, idle_timeout_s):
    """0.05 s was taken, and the stream expired between its frames."""
    responses, error = run(raw_exchange(server.target, _open(idle_timeout_s=idle_timeout_s), answer_first=True))
    assert error is not None, [r.WhichOneof("kind") for r in responses]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and _trailer(error) == ErrorCode.INVALID_OPEN.wire_name
    assert f"idle_timeout_s {idle_timeout_s:g} is below the least this server takes, 1 s" in error.details()
    assert "a value below 1 (other than 0) is refused" in _flat("StreamOptions.idle_timeout_s")


def test_the_least_idle_timeout_and_zero_are_taken(server):
    for asked, given in ((MIN_IDLE_TIMEOUT_S, MIN_IDLE_TIMEOUT_S), (0.0, server.server.config.idle_timeout_s)):
        responses, error = run(raw_exchange(server.target, _open(idle_timeout_s=asked)))
        assert error is None, error
        assert responses[0].opened.options.idle_timeout_s == given


def test_the_conventions_give_each_duration_the_unit_its_name_ends_with():
    proto = " ".join((protogen.PROTO_ROOT / protogen.PROTO_FILES[0]).read_text().replace("//", " ").split())
    assert "durations are in milliseconds" not in proto
    assert "A duration's unit is the suffix of its name: `_s` seconds" in proto


# -- status messages --------------------------------------------------------------------------------------


def test_a_stalled_stream_is_told_how_to_resume_in_terms_of_the_proto():
    """The message named only the Python client's ``ClientStream.reconnect()``."""
    card = ModelCard("m", "v1", "torch", "cpu", (24, 24), 4, 16, (12, 12), 8, "")
    options = StreamOptions(idle_timeout_s=5, resume_window_s=30)
    session = Session("cam", SimpleNamespace(card=card), options, "token", (0, 1, 2, 3))  # type: ignore[arg-type]
    message = stalled_message(session, resumable=True)
    assert "an OpenStream with its stream_id and a ResumeStream holding its resume token" in message, message
    assert "the Python client's ClientStream.reconnect()" in message
    assert "StreamOpened.resume_history" in message


def test_a_handoff_whose_id_is_in_use_says_how_to_continue_it(server):
    """An open that names no stream id takes the hand-off's; when that is in use, "leave stream_id empty to get a
    fresh id" was the advice, which the client had followed."""
    close = pb.StreamRequest(close=pb.CloseStream(return_state=True))
    responses, _ = run(
        raw_exchange(server.target, pb.StreamRequest(open=pb.OpenStream(stream_id="cam")), _frame(0), close)
    )
    handoff = responses[-1].closed.handoff
    assert handoff.stream_id == "cam"

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            held = pb_grpc.PerceptionStub(channel).Stream()
            await held.write(pb.StreamRequest(open=pb.OpenStream(stream_id="cam")))
            await held.read()  # "cam" is in use again
            _, taken = await raw_exchange(server.target, pb.StreamRequest(open=pb.OpenStream(handoff=handoff)))
            _, named = await raw_exchange(server.target, pb.StreamRequest(open=pb.OpenStream(stream_id="cam")))
            held.cancel()
            return taken, named

    taken, named = run(scenario())
    for error in (taken, named):
        assert error is not None and error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert _trailer(error) == ErrorCode.STREAM_ID_IN_USE.wire_name
    assert "the hand-off's (the open named no stream_id)" in taken.details(), taken.details()
    assert "set OpenStream.stream_id to a new id" in taken.details()
    assert "resume it with its resume token" in taken.details()
    assert "leave stream_id empty" not in taken.details()
    assert "leave stream_id empty to get a fresh id" in named.details()  # it named one: that advice holds
