"""A stream resumed on another connection is taken from its old call with a ``StreamClosed`` (reason
``TAKEN_OVER``) before the call's ``ABORTED`` status, and the status waits for the client to end its requests: a
client write racing the end of the call made grpc.aio report ``INTERNAL``, which the client library took for a lost
connection, and a ``--reconnect`` would then take the stream back (grpc/grpc#36066)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from service_helpers import make_video, raw, run

from service import wire
from service.auth import ERROR_CODE_KEY
from service.client import Client, StreamClosed, StreamError, StreamOptions
from service.client.reconnection import worth_reconnecting
from service.errors import ErrorCode
from service.generated import pb_grpc
from service.types import CloseReason, FrameRequest, OpenRequest


@pytest.mark.parametrize("frames_after_closed", [0, 2])
def test_a_raw_client_writing_when_its_stream_is_taken_over_reads_why(start_server, frames_after_closed):
    server = start_server()
    clip = make_video(seed=131, frames=4)

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            await call.write(wire.request_to_proto(OpenRequest(options=StreamOptions(resume_window_s=30))))
            opened = wire.response_from_proto(await call.read())
            closed = asyncio.Event()
            messages = []

            async def read() -> None:
                while (message := await call.read()) is not grpc.aio.EOF:
                    messages.append(message)
                    if message.WhichOneof("kind") == "closed":
                        closed.set()

            reading = asyncio.ensure_future(read())
            index = 0

            async def write_frame() -> None:
                nonlocal index
                request = FrameRequest(image=raw(clip[index % 4]), frame_index=index)
                await call.write(wire.request_to_proto(request))
                index += 1

            for _ in range(3):
                await write_frame()
            async with Client(server.target) as other:
                taking = asyncio.ensure_future(other.resume(opened.stream_id, opened.resume_token, None))
                while not closed.is_set():  # the client goes on writing until it reads why the stream ended
                    await write_frame()
                    await asyncio.sleep(0.002)
                for _ in range(frames_after_closed):  # sent before its writer saw the StreamClosed
                    await write_frame()
                await call.done_writing()
                with pytest.raises(grpc.aio.AioRpcError):
                    await reading
                await (await taking).close()
            return messages[-1], await call.code(), dict(await call.trailing_metadata() or ())

    last, code, trailers = run(scenario())
    closed = wire.response_from_proto(last)
    assert isinstance(closed, StreamClosed) and closed.reason == CloseReason.TAKEN_OVER, closed
    assert "resumed on another connection" in closed.message and closed.handoff is None
    assert code == grpc.StatusCode.ABORTED, code  # not INTERNAL
    assert trailers.get(ERROR_CODE_KEY) == ErrorCode.TAKEN_OVER.wire_name, trailers


def test_the_client_library_reports_a_takeover_as_one_and_not_worth_reconnecting(start_server):
    server = start_server()
    clip = make_video(seed=132, frames=3)

    async def scenario():
        async with Client(server.target) as client, Client(server.target) as other:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(clip[0])
            taker = await other.resume(stream.stream_id, stream.opened.resume_token, 0)
            closed = await stream.receive()
            with pytest.raises(StreamError) as after:
                await stream.process(clip[1])
            await taker.close()
            return closed, after.value

    closed, error = run(scenario())
    assert isinstance(closed, StreamClosed) and closed.reason == CloseReason.TAKEN_OVER
    assert error.status == grpc.StatusCode.ABORTED and error.code == ErrorCode.TAKEN_OVER, error
    assert not error.connection_lost and not worth_reconnecting(error)
