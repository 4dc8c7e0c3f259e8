"""Stream lifecycle over gRPC: idle reclaim and the expired status, cancel, resume, hand-off, capacity."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, get_args

import grpc
import numpy as np
import pytest
import torch
from service_helpers import (
    SERVICE_TINY_MODEL,
    ServerThread,
    SlowEngine,
    make_config,
    make_video,
    raw,
    reference_outputs,
    run,
    slow_factory,
    wait_until,
)
from test_stream_service import assert_matches

from plugins import VideoSlotModel
from service import wire
from service.client import (
    Client,
    CloseReason,
    FrameError,
    FrameResult,
    Output,
    StreamClosed,
    StreamError,
    StreamOptions,
)
from service.config import ServiceConfig
from service.connection import StreamConnection
from service.engine import Engine, EngineOutput, model_version
from service.errors import ErrorCode
from service.generated import pb, pb_grpc
from service.server import default_engine_factory
from service.session import ReleaseReason
from service.types import CloseRequest, FrameRequest, OpenRequest


def test_idle_stream_is_reclaimed_and_reports_expired(start_server):
    """A stream without frames for its idle timeout is freed; its connection ends with NOT_FOUND
    STREAM_EXPIRED, and a later resume of that id gets the same distinct status."""
    server = start_server(idle_timeout_s=3.0)  # long enough that a stall before the first frame cannot expire it
    clip = make_video(seed=7, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(clip[0])
            with pytest.raises(StreamError) as ended:
                await asyncio.wait_for(stream.receive(), 10)
            with pytest.raises(StreamError) as resumed:
                await stream.reconnect()
            return ended.value, resumed.value

    ended, resumed = run(scenario())
    for error in (ended, resumed):
        assert error.status == grpc.StatusCode.NOT_FOUND and error.code == ErrorCode.STREAM_EXPIRED
        assert "expired" in error.message and "idle timeout" in error.message
    assert server.session_count() == 0
    assert server.metric("slotstream_streams_released_total", {"reason": "idle"}) == 1


async def _send_without_reading(channel: grpc.aio.Channel, frames: list[np.ndarray]) -> Any:
    """Open a stream asking for 2.6 MB replies (float32 soft masks, 4 slots at 400x400: a few fill every
    flow-control window) and send ``frames`` without reading a reply; returns the call."""
    call = pb_grpc.PerceptionStub(channel).Stream()
    options = StreamOptions(outputs=frozenset({Output.SOFT_MASKS}), mask_size=(400, 400))
    await call.write(wire.request_to_proto(OpenRequest(options=options)))
    for index, frame in enumerate(frames):
        await call.write(wire.request_to_proto(FrameRequest(index, raw(frame))))
    return call


def _reclaimed(server: ServerThread) -> bool:
    """Whether the one stream opened was released (whatever the reason) and is gone from the sessions: waiting
    for no session alone could end before the server has even handled the open."""
    released = sum(server.metric("slotstream_streams_released_total", {"reason": r}) for r in get_args(ReleaseReason))
    return released == 1 and server.session_count() == 0


def test_a_stream_whose_client_stopped_reading_is_reclaimed_after_its_idle_timeout(start_server):
    """A client that keeps its call open but stops reading leaves its replies stuck in gRPC flow control (still
    in flight); after the idle timeout the stream (opened without a resume window) is freed all the same, so it
    no longer counts against --max-streams, the replies queued for it are dropped, and the call ends saying the
    client stopped reading."""
    server = start_server(idle_timeout_s=1.0, max_streams=1)
    frames = make_video(seed=15, frames=40)

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            stuck = await _send_without_reading(channel, frames)
            await asyncio.get_running_loop().run_in_executor(None, wait_until, lambda: _reclaimed(server))
            # Of the reply budget, the stuck call keeps only the replies gRPC holds for it (2 of 2.6 MB) until it ends.
            held = server.gauge("slotstream_reply_budget_reserved_bytes")
            async with Client(server.target) as client:  # the only stream slot is free again
                stream = await client.open()
                result = await stream.process(frames[0])
                await stream.close()
            # The replies queued for the reclaimed stream were dropped: reading again gives the opened message,
            # what gRPC already held, then the expiry.
            replies = 0
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while await asyncio.wait_for(stuck.read(), 5) is not grpc.aio.EOF:
                    replies += 1
            return result, replies, ended.value, held

    result, replies, ended, held = run(scenario(), timeout=60)
    assert 2 * 4 * 400 * 400 * 4 <= held <= 2 * 3 * 1024 * 1024, held
    wait_until(lambda: server.gauge("slotstream_reply_budget_reserved_bytes") == 0)
    assert isinstance(result, FrameResult)
    assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "it stopped reading" in ended.details()
    assert "open a new stream" in ended.details()
    assert replies < 8, f"{replies} replies of 2.6 MB were kept for a stream that no longer exists"
    assert server.metric("slotstream_streams_released_total", {"reason": "stalled"}) == 1
    assert server.metric("slotstream_streams_released_total", {"reason": "idle"}) == 0


def test_a_client_that_stopped_reading_resumes_its_stream_exactly(start_server):
    """With a resume window, a client that stopped reading loses its call, not its stream: the stream waits
    detached, and reconnect() continues it from the last answer received, re-sending the frames whose answers
    never came; every frame is answered once, in order, with the slots of an uninterrupted run. The reply budget
    here allows 10 frames ahead, the resume history only 4: the stream takes no more frames ahead than it could
    rewind over, or the state after the client's last answer would be gone."""
    options = StreamOptions(
        outputs=frozenset({Output.SLOTS, Output.SOFT_MASKS}), mask_size=(400, 400), resume_window_s=30
    )
    bound = 4 * 400 * 400 * 4  # float32 soft masks of the test model's 4 slots (2.6 MB): a few fill gRPC's windows
    server = start_server(idle_timeout_s=1.0, max_buffered_reply_bytes=10 * bound + 64 * 1024, resume_history=4)
    clip = make_video(seed=18, frames=12)
    reference = reference_outputs(server.model_dir, clip)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(options)
            for frame in clip[:10]:
                await stream.send(frame)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_until, lambda: server.on_loop(server.server.manager.detached_count))
            answers = []
            with pytest.raises(StreamError) as stalled:
                while True:  # what gRPC held before the call ended, then the call's status
                    answers.append(await asyncio.wait_for(stream.receive(), 10))
            await stream.reconnect()
            for frame in clip[10:]:
                await stream.send(frame)
            while stream.unanswered:
                answers.append(await asyncio.wait_for(stream.receive(), 10))
            await stream.close()
            return stalled.value, answers

    stalled, answers = run(scenario(), timeout=60)
    assert stalled.status == grpc.StatusCode.RESOURCE_EXHAUSTED and stalled.code == ErrorCode.CLIENT_NOT_READING
    assert "kept for its resume window (30 s)" in stalled.message
    assert [answer.frame_index for answer in answers] == list(range(len(clip)))
    for answer, (slots, _) in zip(answers, reference, strict=True):
        assert isinstance(answer, FrameResult) and answer.slots is not None
        np.testing.assert_allclose(answer.slots, slots, atol=1e-5, rtol=0)
    assert server.metric("slotstream_streams_released_total", {"reason": "stalled"}) == 0


def test_shutdown_does_not_wait_for_a_reclaimed_stream_whose_client_is_not_reading(start_server):
    """A call whose stream was reclaimed while its client was not reading has nothing left to answer, so the
    drain at shutdown ends it at once instead of waiting out the grace period for a read that never comes."""
    server = start_server(idle_timeout_s=1.0)
    frames = make_video(seed=17, frames=30)

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            stuck = await _send_without_reading(channel, frames)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_until, lambda: _reclaimed(server))
            assert server.metric("slotstream_streams_released_total", {"reason": "stalled"}) == 1
            assert server.server._servicer.connections, "the call is still open, parked in a send"
            started = time.monotonic()
            await loop.run_in_executor(None, server.stop, 8.0)
            stuck.cancel()
            return time.monotonic() - started

    assert run(scenario(), timeout=60) < 4.0


def test_a_stream_holds_at_most_its_reply_budget_while_its_client_is_not_reading(start_server):
    """Replies waiting for a client that does not read stay in the server's memory, so a stream takes frames only
    as far ahead as --max-buffered-reply-bytes allows (here 3 replies of about 2.6 MB); the rest wait, and once
    the client reads, every frame is answered in order."""
    options = StreamOptions(outputs=frozenset({Output.SOFT_MASKS}), mask_size=(400, 400))
    bound = 4 * 400 * 400 * 4  # float32 soft masks of the test model's 4 slots, without the small fields
    budget = 3 * bound + 64 * 1024  # room for 3 replies with their other fields (a few KB each), not for 4
    server = start_server(max_buffered_reply_bytes=budget)
    frames = make_video(seed=16, frames=24)

    def processed() -> int:
        sessions = list(server.server.manager.sessions.values())
        return -1 if not sessions or sessions[0].last_frame_index is None else sessions[0].last_frame_index + 1

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            await call.write(wire.request_to_proto(OpenRequest(options=options)))
            opened = await call.read()
            window = budget // opened.opened.max_reply_bytes

            async def send_all():
                for index, frame in enumerate(frames):
                    await call.write(wire.request_to_proto(FrameRequest(index, raw(frame))))

            sender = asyncio.create_task(send_all())
            await asyncio.sleep(2.0)  # ample time to run all 24 frames, were they taken
            held = server.on_loop(processed)
            answered = [await call.read() for _ in frames]
            await sender
            await call.done_writing()
            return window, held, answered

    window, held, answered = run(scenario(), timeout=60)
    assert window == 3
    # Besides the budget, gRPC holds up to two replies: one it is sending and one the writer handed it.
    assert 1 <= held <= window + 2, f"{held} frames ran while the client read nothing (budget: {window} replies)"
    results = [m.result.frame_index for m in answered if m.WhichOneof("kind") == "result"]
    assert results == list(range(len(frames)))


def test_detached_stream_expires_after_its_resume_window(start_server):
    server = start_server(max_resume_window_s=0.3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=10))  # lowered to the server's 0.3 s
            assert stream.opened.options.resume_window_s == pytest.approx(0.3)
            await stream.process(make_video(8, 1)[0])
            stream.cancel()
            # Its session stays (attached until the server sees the cancel, then detached) until the window ends.
            await asyncio.to_thread(wait_until, lambda: server.session_count() == 0, 10)
            with pytest.raises(StreamError) as error:
                await stream.reconnect()
            return error.value

    error = run(scenario())
    assert error.code == ErrorCode.STREAM_EXPIRED and "resume window" in error.message
    assert server.metric("slotstream_streams_released_total", {"reason": "resume_expired"}) == 1


def test_cancel_frees_state_immediately(server):
    """Cancelling the RPC (or losing the connection) of a stream without a resume window frees it at once."""

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(make_video(9, 1)[0])
            assert server.session_count() == 1
            await stream.send(make_video(9, 2)[1])  # a frame in flight when the call is cancelled
            stream.cancel()

    run(scenario())
    wait_until(lambda: server.session_count() == 0, timeout=5)
    assert server.metric("slotstream_streams_released_total", {"reason": "cancelled"}) == 1
    assert server.gauge("slotstream_state_bytes") == 0
    assert server.gauge("slotstream_streams_active", {"model": "tiny"}) == 0


def test_stream_gauges_follow_open_detach_resume_and_close(server):
    """``slotstream_streams_active`` (what the autoscaler reads), ``slotstream_streams_detached`` and
    ``slotstream_state_bytes`` move with a stream's life, not only back to zero."""
    active = ("slotstream_streams_active", {"model": "tiny"})
    seen: dict[str, tuple[float, float, float]] = {}

    def gauges() -> tuple[float, float, float]:
        return (
            server.gauge(*active),
            server.gauge("slotstream_streams_detached"),
            server.gauge("slotstream_state_bytes"),
        )

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(make_video(19, 1)[0])
            seen["open"] = gauges()
            stream.cancel()
            await asyncio.to_thread(wait_until, lambda: gauges()[1] == 1, 5)
            seen["detached"] = gauges()
            await stream.reconnect()
            seen["resumed"] = gauges()
            await stream.close()

    run(scenario())
    wait_until(lambda: server.session_count() == 0, timeout=5)
    open_active, open_detached, open_bytes = seen["open"]
    assert (open_active, open_detached) == (1, 0) and open_bytes > 0
    assert seen["detached"] == (1, 1, open_bytes), "a detached stream keeps its state for the resume"
    assert seen["resumed"] == (1, 0, open_bytes)
    assert gauges() == (0, 0, 0)


def test_a_handoff_from_a_model_with_other_weights_is_refused(start_server, model_dir, tmp_path):
    """The model version is a digest of the weights: a replica serving other weights under the same name refuses
    the hand-off instead of continuing the stream from a state its model did not make."""
    torch.manual_seed(1)
    VideoSlotModel(**SERVICE_TINY_MODEL).save_pretrained(tmp_path / "other")
    first, second = start_server(), ServerThread(make_config(tmp_path / "other")).start()

    async def scenario():
        async with Client(first.target) as a, Client(second.target) as b:
            stream = await a.open()
            await stream.process(make_video(20, 1)[0])
            await stream.close(return_state=True)
            assert stream.handoff is not None
            with pytest.raises(StreamError) as refused:
                await b.open(handoff=stream.handoff)
            return stream.handoff.model_version, (await b.describe()).version, refused.value

    try:
        version_a, version_b, error = run(scenario())
    finally:
        second.stop(0.5)
    assert version_a == model_version(model_dir) and version_b == model_version(tmp_path / "other")
    assert version_a != version_b
    assert error.status == grpc.StatusCode.INVALID_ARGUMENT and error.code == ErrorCode.HANDOFF_MISMATCH


def test_release_is_counted_once_when_close_and_cancel_race(server):
    """Close and cancel arriving together free the state through one path, exactly once."""

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=0.5))
            await stream.process(make_video(10, 1)[0])
            await stream.close_writing()
            stream.cancel()

    run(scenario())
    wait_until(lambda: server.session_count() == 0, timeout=10)
    released = sum(
        server.metric("slotstream_streams_released_total", {"reason": reason})
        for reason in ("closed", "cancelled", "resume_expired", "error")
    )
    assert released == 1


@pytest.mark.parametrize("model_instances", [1, 2])
def test_resume_on_a_new_connection_continues_exactly(start_server, model_instances):
    """Dropping the connection with frames in flight and resuming from the last answered frame gives the
    same results as an uninterrupted stream (the server rewinds to that frame's state), with one model instance
    or several."""
    server = start_server(model_instances=model_instances)
    assert server.model_instances() == model_instances
    clip = make_video(seed=11, frames=30)
    reference = reference_outputs(server.model_dir, clip)

    async def scenario():
        results: dict[int, FrameResult] = {}
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            for index in range(12):
                await stream.send(clip[index])
            for _ in range(8):  # frames 8-11 stay unanswered (some may already be processed by the server)
                answer = await stream.receive()
                results[answer.frame_index] = answer
            stream.cancel()
            await asyncio.sleep(0.2)
        async with Client(server.target) as second:  # a new connection
            opened = await stream.reconnect(second)
            assert opened.last_frame_index == 7 and stream.unanswered == [8, 9, 10, 11]
            for index in range(12, len(clip)):
                await stream.send(clip[index])
            while len(results) < len(clip):
                answer = await stream.receive()
                results[answer.frame_index] = answer
            await stream.close()
        return [results[i] for i in range(len(clip))]

    assert_matches(run(scenario()), reference)


def test_retrying_a_process_cut_off_by_a_dropped_connection_continues_exactly(start_server):
    """The connection drops while process(frame 3) waits (here before the server's model call for frame 3 ends,
    so the server never folds it in; a frame folded in whose answer was lost is undone by the resume's rewind to
    the last answered frame, test_session_manager.py's rewind tests): process() raises, and retrying it after
    reconnect() sends frame 3 once, as index 3, on the stream resumed after frame 2. Results equal an
    uninterrupted stream's; reconnect() used to re-send frame 3 and skip its answer, so the retry went out as
    frame 4 and frame 3 entered the state twice."""
    factory, _ = slow_factory(delay_s=0.3)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=16, frames=6)
    reference = reference_outputs(server.model_dir, clip)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            results = [await stream.process(frame) for frame in clip[:3]]
            asyncio.get_running_loop().call_later(0.1, stream.cancel)  # the connection drops mid-process()
            with pytest.raises(StreamError) as error:
                await stream.process(clip[3])
            withdrawn = (stream.next_frame_index, stream.unanswered)
            opened = await stream.reconnect()
            resent = stream.unanswered
            results += [await stream.process(frame) for frame in clip[3:]]
            await stream.close()
            return error.value, withdrawn, opened, resent, results

    error, withdrawn, opened, resent, results = run(scenario())
    assert error.status == grpc.StatusCode.CANCELLED
    assert_matches(results, reference)
    assert withdrawn == (3, []), "the frame whose process() failed must not count as sent"
    assert opened.kind.name == "RESUMED" and opened.last_frame_index == 2 and resent == []
    assert [r.frame_index for r in results] == list(range(6))


def test_resume_takes_over_a_connection_the_server_still_thinks_is_alive(server):
    """A half-open old connection must not block a robot that reconnects: resuming with the token moves the
    stream to the new connection, and the old one ends with a StreamClosed (TAKEN_OVER), then ABORTED
    (TAKEN_OVER)."""
    clip = make_video(seed=12, frames=2)
    reference = reference_outputs(server.model_dir, clip)

    async def scenario():
        async with Client(server.target) as first, Client(server.target) as second:
            old = await first.open(StreamOptions(resume_window_s=30, idle_timeout_s=45))
            first_result = await old.process(clip[0])
            new = await second.resume(old.stream_id, old.opened.resume_token, 0)
            assert new.opened.options == old.opened.options  # a resume keeps the stream's own options
            second_result = await new.process(clip[1])
            closed = await old.receive()
            with pytest.raises(StreamError) as evicted:
                await old.receive()
            await new.close()
            return [first_result, second_result], closed, evicted.value

    results, closed, evicted = run(scenario())
    assert isinstance(closed, StreamClosed) and closed.reason == CloseReason.TAKEN_OVER, closed
    assert evicted.status == grpc.StatusCode.ABORTED and evicted.code == ErrorCode.TAKEN_OVER
    assert_matches(results, reference)


def test_an_answer_to_a_stale_frame_index_does_not_move_the_resume_point_back(server):
    """The error for a frame sent with an old index (5 after 10) must not make a reconnect resume from frame
    5: the stream continues exactly from frame 10."""
    clip = make_video(seed=13, frames=13)
    reference = reference_outputs(server.model_dir, clip)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            results = [await stream.process(frame) for frame in clip[:11]]
            stale = await stream.process(clip[11], frame_index=5)
            assert isinstance(stale, FrameError) and stale.code == ErrorCode.FRAME_INDEX_NOT_INCREASING
            assert stream.last_answered_index == 10
            stream.cancel()
            opened = await stream.reconnect()
            assert opened.last_frame_index == 10
            for index in (11, 12):
                results.append(await stream.process(clip[index], frame_index=index))
            await stream.close()
            return results

    assert_matches(run(scenario()), reference)


def test_opening_a_stream_id_in_use_is_already_exists(server):
    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(stream_id="robot-7/cam-left")
            assert stream.stream_id == "robot-7/cam-left"
            with pytest.raises(StreamError) as in_use:
                await client.open(stream_id="robot-7/cam-left")
            await stream.close()
            return in_use.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.ALREADY_EXISTS and error.code == ErrorCode.STREAM_ID_IN_USE


def test_state_handoff_to_another_server_continues_exactly(start_server):
    """Output STATE lets a client continue a stream on another replica (same model version) exactly."""
    first, second = start_server(), start_server()
    clip = make_video(seed=13, frames=20)
    reference = reference_outputs(first.model_dir, clip)

    async def scenario():
        results = []
        async with Client(first.target) as a, Client(second.target) as b:
            stream = await a.open(StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION, Output.STATE})))
            for frame in clip[:9]:
                results.append(await stream.process(frame))
            stream.cancel()  # replica A "dies"
            opened = await stream.reconnect(b)  # not known on B: continues from the hand-off state
            assert opened.kind.name == "HANDED_OFF" and opened.last_frame_index == 8
            for frame in clip[9:]:
                results.append(await stream.process(frame))
            await stream.close()
        return results

    assert_matches(run(scenario()), reference)
    assert second.metric("slotstream_streams_opened_total", {"model": "tiny", "kind": "handed_off"}) == 1


def test_a_handed_off_stream_that_got_no_reply_yet_reconnects(start_server):
    """The connection of a stream opened from a hand-off drops before its first reply: ``reconnect`` resumes it
    from the handed-off state (no frame index yet) and the stream goes on exactly."""
    first, second = start_server(), start_server()
    clip = make_video(seed=15, frames=8)
    reference = reference_outputs(first.model_dir, clip)

    async def scenario():
        async with Client(first.target) as a, Client(second.target) as b:
            stream = await a.open()
            results = [await stream.process(frame) for frame in clip[:4]]
            await stream.close(return_state=True)
            moved = await b.open(StreamOptions(resume_window_s=30), handoff=stream.handoff)
            assert moved.handoff is stream.handoff, "the open's state is the fallback until the server exports one"
            await moved.send(clip[4])
            moved.cancel()  # the connection drops before the reply arrives
            await asyncio.sleep(0.2)
            opened = await moved.reconnect()  # re-sends frame 4
            assert opened.kind.name == "RESUMED" and opened.last_frame_index == 3
            results.append(await moved.receive())
            results += [await moved.process(frame) for frame in clip[5:]]
            await moved.close()
        return results

    assert_matches(run(scenario()), reference)


def test_too_many_streams_is_resource_exhausted_and_recovers(start_server):
    server = start_server(max_streams=2)

    async def scenario():
        async with Client(server.target) as client:
            streams = [await client.open(), await client.open()]
            started = time.perf_counter()
            with pytest.raises(StreamError) as refused:
                await client.open()
            elapsed = time.perf_counter() - started
            await streams[0].close()
            third = await client.open()  # a slot is free again
            await third.close()
            await streams[1].close()
            return refused.value, elapsed

    error, elapsed = run(scenario())
    assert error.status == grpc.StatusCode.RESOURCE_EXHAUSTED and error.code == ErrorCode.TOO_MANY_STREAMS
    assert "maximum of 2 streams" in error.message
    assert elapsed < 5, "the refusal came at once, not after waiting for a stream to end"


def test_close_with_return_state_gives_the_handoff(server):
    clip = make_video(seed=14, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            results = [await stream.process(frame) for frame in clip]
            tail = await stream.close(return_state=True)
            return results, tail[-1]

    results, closed = run(scenario())
    assert closed.handoff is not None and closed.handoff.last_frame_index == 2
    assert closed.handoff.state.shape == results[-1].slots.shape
    np.testing.assert_allclose(closed.handoff.state, results[-1].slots, atol=1e-6)


def test_requests_ending_without_a_close_count_as_cancelled(server):
    """A client that half-closes without a close request is treated like a lost connection (and counted so),
    which is also how a cancel looks when gRPC delivers the end of the requests first."""
    before = server.metric("slotstream_streams_released_total", {"reason": "cancelled"})
    closed_before = server.metric("slotstream_streams_released_total", {"reason": "closed"})

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            await call.write(pb.StreamRequest(open=pb.OpenStream()))
            await call.done_writing()
            return [response.WhichOneof("kind") async for response in call]

    assert run(scenario()) == ["opened", "closed"]
    wait_until(lambda: server.session_count() == 0, timeout=5)
    assert server.metric("slotstream_streams_released_total", {"reason": "cancelled"}) == before + 1
    assert server.metric("slotstream_streams_released_total", {"reason": "closed"}) == closed_before


def test_frames_waiting_for_the_model_hold_their_pixels_not_their_encoded_bytes(start_server):
    """A frame queued behind a busy model keeps its model input alone: the bytes it arrived as (up to
    --max-message-bytes each) are let go once decoded, so a stream's queue costs kilobytes."""
    factory, _ = slow_factory(delay_s=0.3)
    server = start_server(engine_factory=factory)
    frames = [np.full((256, 256, 3), 40 * index, np.uint8) for index in range(4)]

    def waiting() -> list[tuple[int, int]]:
        connections = list(server.server._servicer.connections)
        pending = [c._pending for c in connections if c._pending is not None]
        return [(item.request.frame_index, len(item.request.image.data)) for p in pending for item in p._items]

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in frames:
                await stream.send(frame)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_until, lambda: len(server.on_loop(waiting)) >= 2)
            queued = server.on_loop(waiting)
            answers = [await asyncio.wait_for(stream.receive(), 10) for _ in frames]
            await stream.close()
            return queued, answers

    queued, answers = run(scenario(), timeout=60)
    assert len(queued) >= 2 and all(size == 0 for _, size in queued), queued
    assert [answer.frame_index for answer in answers] == [0, 1, 2, 3]
    assert all(isinstance(answer, FrameResult) for answer in answers)


class _FirstStepHeld(SlowEngine):
    """A :class:`SlowEngine` whose ``first_step`` calls, once :attr:`armed` is set, set :attr:`entered` and wait (on
    the model thread) for :attr:`release_first_step`."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.release.set()
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.release_first_step = threading.Event()

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        if self.armed.is_set():
            self.entered.set()
            assert self.release_first_step.wait(60), "the held first_step was never released"
        return super().first_step(frames)


def test_a_close_sent_before_a_drain_begins_is_honoured_as_a_close(start_server, monkeypatch):
    """The client closed while its last frame was in the model, then the server began to drain: the stream ends
    as the client asked (CLIENT_CLOSED, with the state it asked for), not as drained, which would invite the client
    to continue a stream it meant to end. Each step waits for the one before it: the frame is held in the model
    until the server has read the close and begun to drain."""
    engines: list[_FirstStepHeld] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(_FirstStepHeld(default_engine_factory(config)))
        return engines[-1]

    connections: list[StreamConnection] = []
    close_read = threading.Event()
    finish = StreamConnection._finish

    async def finish_noting_the_close(connection: StreamConnection, end: CloseRequest | None) -> None:
        if end is not None:  # the reader got the client's close and ends the stream with it
            connections.append(connection)
            close_read.set()
        await finish(connection, end)

    monkeypatch.setattr(StreamConnection, "_finish", finish_noting_the_close)
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    (engine,) = engines
    engine.armed.set()  # after the warm-up
    frame = make_video(seed=101, frames=1)[0]

    def wait_for(event: threading.Event, what: str) -> None:
        assert event.wait(30), what

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.send(frame)
            await asyncio.to_thread(wait_for, engine.entered, "the frame never reached the model")
            closing = asyncio.ensure_future(stream.close(return_state=True))
            await asyncio.to_thread(wait_for, close_read, "the server never read the close")
            stopping = asyncio.ensure_future(asyncio.to_thread(server.stop, 5.0))
            (connection,) = connections
            await asyncio.to_thread(wait_until, lambda: connection._draining)  # the drain began after the close
            engine.release_first_step.set()
            remaining = await closing
            await stopping
            return remaining

    try:
        remaining = run(scenario())
    finally:
        engine.release_first_step.set()
    assert [type(answer).__name__ for answer in remaining] == ["FrameResult", "StreamClosed"]
    closed = remaining[-1]
    assert closed.reason == CloseReason.CLIENT_CLOSED and closed.handoff is not None
    assert closed.handoff.last_frame_index == 0
