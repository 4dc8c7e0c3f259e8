"""A drain keeps a stream whose hand-off gRPC has not taken from its connection yet (a client gone without the
server knowing: a half-open connection holds the replies back), so that its client, resuming the stream on a new
connection during the drain, still gets the hand-off; it used to be freed at once and the resume refused with no
state, and counted as handed off (``drained``) though no client got it."""

from __future__ import annotations

import asyncio
import time

import grpc
from service_helpers import make_video, raw, run
from test_client_server_close import _stop_in_background

from service import wire
from service.generated import pb_grpc
from service.types import FrameRequest, OpenRequest, Output, ResumeRequest, StreamOptions

_BIG_REPLIES = StreamOptions(
    resume_window_s=30, outputs=frozenset({Output.SOFT_MASKS}), mask_size=(300, 300)
)  # about 2 MB a reply: a few fill gRPC's flow-control windows


async def _read_all(call) -> tuple[list[object], grpc.StatusCode]:
    messages = []
    try:
        async for message in call:
            messages.append(message)
    except grpc.aio.AioRpcError:
        pass
    return messages, await call.code()


async def _until(condition, what: str, timeout_s: float = 30.0) -> None:
    """Wait, without blocking the client's event loop, until ``condition()`` holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.02)


def _parked_session(server, check) -> bool:
    """``check(session)`` on the server's loop for stream ``parked`` (False once it is gone)."""
    manager = server.server.manager
    return bool(server.on_loop(lambda: (session := manager.sessions.get("parked")) is not None and check(session)))


async def _park(server, clip) -> tuple[object, object, str]:
    """Open stream ``parked`` on a raw call, read the answers to frames 0-2, send frames 3-10 and read no more (a
    client gone without the server knowing), until the server has answered frame 10 and holds a reply the
    connection has not taken. Returns the channel, the call and the stream's resume token.

    The channel does not probe the connection's bandwidth (``grpc.http2.bdp_probe``): with probing, gRPC grows
    the flow-control window while the replies wait, and on a slow machine it could grow until every reply was
    taken, leaving nothing held back.
    """

    def frame(index: int):
        return wire.request_to_proto(FrameRequest(image=raw(clip[index]), frame_index=index))

    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)]
    channel = grpc.aio.insecure_channel(server.target, options=options)
    call = pb_grpc.PerceptionStub(channel).Stream()
    await call.write(wire.request_to_proto(OpenRequest(stream_id="parked", options=_BIG_REPLIES)))
    opened = wire.response_from_proto(await call.read())
    for index in range(3):
        await call.write(frame(index))
    for _ in range(3):
        assert (await call.read()).WhichOneof("kind") == "result"
    for index in range(3, 11):  # answered, but this client reads no more: its replies fill flow control
        await call.write(frame(index))
    held_back = "frame 10 answered and a reply held back by flow control"
    await _until(
        lambda: _parked_session(server, lambda s: s.last_frame_index == 10 and s.reply_waiting_since is not None),
        held_back,
    )
    return channel, call, opened.resume_token


def test_a_resume_during_the_drain_collects_a_hand_off_its_old_connection_never_took(start_server):
    server = start_server(max_batch_size=1)
    clip = make_video(seed=121, frames=11)

    async def scenario():
        old_channel, old, token = await _park(server, clip)
        started = time.monotonic()
        stopping = _stop_in_background(server, grace_s=20)
        # the drain has sent the old connection its hand-off, which waits unread
        await _until(lambda: _parked_session(server, lambda s: s.handing_off), "the drain handing the stream off")
        async with grpc.aio.insecure_channel(server.target) as new_channel:
            resumed = pb_grpc.PerceptionStub(new_channel).Stream()
            resume = ResumeRequest(token, last_frame_index=2)
            await resumed.write(wire.request_to_proto(OpenRequest(stream_id="parked", resume=resume)))
            messages, code = await _read_all(resumed)
        await asyncio.to_thread(stopping.join, 30)
        stop_s = time.monotonic() - started
        old.cancel()
        await old_channel.close()
        return messages, code, stop_s

    messages, code, stop_s = run(scenario())
    kinds = [message.WhichOneof("kind") for message in messages]
    assert kinds == ["opened", "closed"] and code == grpc.StatusCode.UNAVAILABLE, (kinds, code)
    closed = wire.response_from_proto(messages[-1])
    assert closed.handoff is not None and closed.handoff.last_frame_index == 2  # the point the resume asked for
    assert stop_s < 15, stop_s  # the old connection's unread send did not hold the shutdown for its grace period
    assert server.metric("slotstream_streams_released_total", {"reason": "drained"}) == 1


def test_a_hand_off_nobody_took_is_counted_lost_not_drained(start_server):
    server = start_server(max_batch_size=1)
    clip = make_video(seed=122, frames=11)

    async def scenario():
        channel, call, _ = await _park(server, clip)
        await asyncio.to_thread(server.stop, 2.0)
        call.cancel()
        await channel.close()

    run(scenario())
    assert server.metric("slotstream_streams_released_total", {"reason": "lost"}) == 1
    assert server.metric("slotstream_streams_released_total", {"reason": "drained"}) == 0
