"""A draining server ends a stream's call only once its client has ended its requests (or after
``HALF_CLOSE_QUIET_S`` without a request): a client write that raced the end of the call made grpc.aio clients report
``INTERNAL`` and lose the ``StreamClosed`` with its hand-off (grpc/grpc#36066). The slotstream client ends its
requests as soon as the ``StreamClosed`` arrives."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest
from service_helpers import make_video, raw, run, slow_factory
from test_client_server_close import _stop_in_background

import service.connection
from service import wire
from service.auth import ERROR_CODE_KEY
from service.client import Client, StreamClosed, StreamError
from service.errors import ErrorCode
from service.generated import pb_grpc
from service.types import CloseReason, FrameRequest, OpenRequest


async def _write_through_a_drain(server, frames_after_closed: int, half_close: bool):
    """On a raw call: open, write frames without waiting for answers, start the server's drain after the fifth
    answer, write ``frames_after_closed`` more frames once the ``StreamClosed`` is read, then half-close (if
    ``half_close``). Returns the kinds of the messages read, the call's status code and its error code trailer."""
    clip = make_video(seed=95, frames=4)
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = pb_grpc.PerceptionStub(channel).Stream()
        await call.write(wire.request_to_proto(OpenRequest()))
        kinds: list[str] = []
        stopping = []
        closed = asyncio.Event()

        async def read() -> None:
            async for message in call:
                kinds.append(message.WhichOneof("kind"))
                if kinds[-1] == "closed":
                    closed.set()
                if len(kinds) == 5:
                    stopping.append(_stop_in_background(server, grace_s=30))

        reading = asyncio.ensure_future(read())
        index = 0

        async def write_frame() -> None:
            nonlocal index
            await call.write(wire.request_to_proto(FrameRequest(image=raw(clip[index % 4]), frame_index=index)))
            index += 1

        while not closed.is_set():
            await write_frame()
        for _ in range(frames_after_closed):  # frames its writer sent before it saw the StreamClosed
            await write_frame()
        if half_close:
            await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError):
            await reading
        code, trailers = await call.code(), await call.trailing_metadata()
        await asyncio.to_thread(stopping[0].join, 30)
    return kinds, code, dict(trailers or ())


@pytest.mark.parametrize("frames_after_closed", [0, 1, 3])
def test_frames_written_after_the_drains_streamclosed_do_not_cost_the_client_its_status(
    start_server, frames_after_closed
):
    factory, _ = slow_factory(delay_s=0.005)
    server = start_server(engine_factory=factory)
    kinds, code, trailers = run(_write_through_a_drain(server, frames_after_closed, half_close=True))
    assert kinds[0] == "opened" and kinds[-1] == "closed" and "closed" not in kinds[:-1], kinds
    assert code == grpc.StatusCode.UNAVAILABLE, code  # not INTERNAL
    assert trailers.get(ERROR_CODE_KEY) == ErrorCode.SHUTTING_DOWN.wire_name, trailers


def test_a_client_that_never_half_closes_is_ended_after_the_wait(start_server, monkeypatch):
    monkeypatch.setattr(service.connection, "HALF_CLOSE_QUIET_S", 0.5)
    factory, _ = slow_factory(delay_s=0.005)
    server = start_server(engine_factory=factory)
    started = time.monotonic()
    kinds, code, trailers = run(_write_through_a_drain(server, frames_after_closed=0, half_close=False))
    assert kinds[-1] == "closed" and code == grpc.StatusCode.UNAVAILABLE, (kinds, code)
    assert trailers.get(ERROR_CODE_KEY) == ErrorCode.SHUTTING_DOWN.wire_name, trailers
    assert time.monotonic() - started < 20  # the 30 s grace period was not what ended it


def test_the_client_ends_its_requests_when_the_streamclosed_arrives(start_server, monkeypatch):
    """With a server that would wait 60 s for the half-close, the drain still ends at once: the client's reader
    half-closes the call as it reads the ``StreamClosed``, before anybody takes it."""
    monkeypatch.setattr(service.connection, "HALF_CLOSE_QUIET_S", 60.0)
    factory, _ = slow_factory(delay_s=0.005)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=96, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in clip:
                await stream.process(frame)
            started = time.monotonic()
            stopping = _stop_in_background(server, grace_s=120)
            await asyncio.to_thread(stopping.join, 120)  # nothing taken from the stream meanwhile
            drain_s = time.monotonic() - started
            closed = await stream.receive()
            with pytest.raises(StreamError) as error:
                await stream.receive()
            return drain_s, closed, error.value

    drain_s, closed, error = run(scenario())
    assert isinstance(closed, StreamClosed) and closed.reason == CloseReason.SERVER_DRAINING
    assert error.status == grpc.StatusCode.UNAVAILABLE and error.code == ErrorCode.SHUTTING_DOWN, error
    assert drain_s < 30, drain_s


def test_a_client_that_reads_behind_its_sends_still_gets_the_drains_hand_off(start_server, monkeypatch):
    """An application that takes its answers more slowly than it sends frames reads the ``StreamClosed`` long after
    the server sent it, and writes frames until then: the call waits for it (the client goes on writing), instead
    of ending after ``HALF_CLOSE_QUIET_S`` and making the client see ``INTERNAL`` and a lost connection."""
    monkeypatch.setattr(service.connection, "HALF_CLOSE_QUIET_S", 0.3)
    server = start_server()
    clip = make_video(seed=97, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            closed = asyncio.Event()

            async def send() -> None:
                index = 0
                with contextlib.suppress(StreamError):
                    while not closed.is_set():
                        await stream.send(clip[index % 4])
                        index += 1
                        await asyncio.sleep(0.01)

            async def receive() -> tuple[object, StreamError]:
                while not isinstance(answer := await stream.receive(), StreamClosed):
                    if answer.frame_index == 20:
                        stopping.append(_stop_in_background(server, grace_s=30))
                    await asyncio.sleep(0.04)  # the application takes its answers 4 times slower than it sends
                closed.set()
                with pytest.raises(StreamError) as ended:
                    await stream.receive()
                return answer, ended.value

            stopping: list = []
            sending = asyncio.ensure_future(send())
            answer, ended = await receive()
            await sending
            await asyncio.to_thread(stopping[0].join, 30)
            return answer, ended

    answer, ended = run(scenario(), timeout=60)
    assert answer.reason == CloseReason.SERVER_DRAINING and answer.handoff is not None, answer
    assert ended.status == grpc.StatusCode.UNAVAILABLE and ended.code == ErrorCode.SHUTTING_DOWN, ended
    assert not ended.connection_lost
