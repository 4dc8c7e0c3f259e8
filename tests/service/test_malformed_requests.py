"""A request whose bytes do not parse is refused like any other bad request, on every method: INVALID_ARGUMENT with
the ``MALFORMED_REQUEST`` trailer, counted, and logged at most once per interval, never with a traceback per call
(gRPC decodes a single request before any server code runs; left to itself it ends such a call with UNKNOWN and logs
an error with its traceback, each time, even for the health check, which needs no token)."""

from __future__ import annotations

import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from service_helpers import make_video, run
from test_stream_service import stream_clip

from service.auth import ERROR_CODE_KEY
from service.errors import ErrorCode
from service.generated import pb

NOT_UTF8 = b"\x0a\x02\xff\xfe"
"""Field 1 (a string in every request here) holding two bytes that are not UTF-8."""
TOKEN = (("authorization", "Bearer s3cret"),)


def _trailer(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY)


async def _unary(target: str, method: str, data: bytes, metadata=()) -> grpc.aio.AioRpcError | None:
    """Send ``data`` as the request of the unary ``method``; the call's error, or ``None`` when it succeeded."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
        try:
            await call(data, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error
        return None


async def _unary_many(target: str, method: str, data: bytes, times: int) -> list[grpc.aio.AioRpcError | None]:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
        errors: list[grpc.aio.AioRpcError | None] = []
        for _ in range(times):
            try:
                await call(data, timeout=10)
                errors.append(None)
            except grpc.aio.AioRpcError as error:
                errors.append(error)
        return errors


def test_an_unparsable_health_check_is_refused_counted_and_logged_once(start_server, caplog):
    """Health/Check needs no token, so anyone who reaches the port can send it bytes that do not parse: every such
    call is INVALID_ARGUMENT with the trailer and counted, the log gets one warning for all of them and no
    traceback, and the health check still answers well-formed requests."""
    server = start_server(auth_token="s3cret")
    calls = 40
    with caplog.at_level(logging.WARNING):
        errors = run(_unary_many(server.target, "/grpc.health.v1.Health/Check", NOT_UTF8, calls))
    for error in errors:
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert _trailer(error) == ErrorCode.MALFORMED_REQUEST.wire_name
        assert "not a valid grpc.health.v1.HealthCheckRequest" in error.details(), error.details()
    assert server.metric("slotstream_calls_refused_total", {"code": "malformed_request"}) == calls
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    lines = [r for r in caplog.records if r.getMessage() == "refused a call"]
    assert len(lines) == 1, caplog.text  # rate-limited: one line stands for the first refusal
    assert lines[0].code == "malformed_request" and lines[0].method == "/grpc.health.v1.Health/Check"

    async def check() -> int:
        async with grpc.aio.insecure_channel(server.target) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            return int(reply.status)

    assert run(check()) == health_pb2.HealthCheckResponse.SERVING


def test_an_unparsable_describe_is_refused_after_the_token_is_checked(start_server):
    """With a token, an unparsable Describe is INVALID_ARGUMENT with the trailer; without one it is refused for the
    token first, whatever its bytes."""
    server = start_server(auth_token="s3cret")
    describe = "/slotstream.v1.Perception/Describe"
    error = run(_unary(server.target, describe, NOT_UTF8, TOKEN))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert _trailer(error) == ErrorCode.MALFORMED_REQUEST.wire_name
    assert "not a valid slotstream.v1.DescribeRequest" in error.details(), error.details()
    error = run(_unary(server.target, describe, NOT_UTF8))
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert _trailer(error) == ErrorCode.UNAUTHENTICATED.wire_name
    good = pb.DescribeRequest(model="").SerializeToString()
    assert run(_unary(server.target, describe, good, TOKEN)) is None
    assert server.metric("slotstream_calls_refused_total", {"code": "malformed_request"}) == 1


def test_an_unparsable_health_watch_is_refused(server):
    """A unary request with a stream of replies (Health/Watch) is refused the same way."""

    async def watch() -> grpc.aio.AioRpcError | None:
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = channel.unary_stream(
                "/grpc.health.v1.Health/Watch", request_serializer=lambda raw: raw, response_deserializer=lambda r: r
            )(NOT_UTF8, timeout=10)
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as error:
                return error
            return None

    error = run(watch())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert _trailer(error) == ErrorCode.MALFORMED_REQUEST.wire_name


def test_an_unparsable_request_in_a_stream_the_handler_does_not_answer_is_refused(server, caplog):
    """Reflection's stream of requests does not answer a request that does not parse itself: the call is refused
    with the trailer, without a traceback."""

    async def reflect() -> tuple[list[bytes], grpc.aio.AioRpcError | None]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=lambda raw: raw,
                response_deserializer=lambda raw: raw,
            )()
            good = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
            answers = []
            try:
                await call.write(good)
                answers.append(await call.read())
                await call.write(NOT_UTF8)  # field 1, host: a string
                await call.done_writing()
                while (answer := await call.read()) is not grpc.aio.EOF:
                    answers.append(answer)
            except grpc.aio.AioRpcError as error:
                return answers, error
            return answers, None

    with caplog.at_level(logging.WARNING):
        answers, error = run(reflect())
    assert len(answers) == 1, "the well-formed request is answered"
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert _trailer(error) == ErrorCode.MALFORMED_REQUEST.wire_name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@pytest.mark.parametrize("position", [0, 1])
def test_an_unparsable_stream_request_is_still_answered_by_the_stream_handler(server, position):
    """``Perception.Stream`` answers a request that does not parse itself, naming its position in the call; an open
    that does not parse also counts as a rejected open."""
    opening = pb.StreamRequest(open=pb.OpenStream()).SerializeToString()
    requests = [opening, NOT_UTF8] if position else [NOT_UTF8]

    async def exchange():
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
                while await call.read() is not grpc.aio.EOF:
                    pass
            except grpc.aio.AioRpcError as error:
                return error
            return None

    error = run(exchange())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert _trailer(error) == ErrorCode.MALFORMED_REQUEST.wire_name
    assert f"request {position + 1} of this call is not a valid slotstream.v1.StreamRequest" in error.details()
    rejected_opens = server.metric("slotstream_open_rejected_total", {"code": "malformed_request"})
    assert rejected_opens == (0 if position else 1)
    assert server.metric("slotstream_calls_refused_total", {"code": "malformed_request"}) == 1
    assert len(run(stream_clip(server.target, make_video(24, 2)))) == 2
