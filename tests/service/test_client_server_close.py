"""A server that ends a stream itself (a drain on shutdown) is an error for every client API, never a normal end:
``process()``, ``stream_frames`` and the command line report ``UNAVAILABLE`` with the server's message, and the
hand-off state stays available to continue the stream elsewhere."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
from service_helpers import make_video, raw, reference_outputs, run, slow_factory, wait_until
from test_stream_service import assert_matches

from service import wire
from service.client import Client, FrameResult, StreamClosed, StreamError, StreamOptions, stream_frames
from service.client.__main__ import main
from service.connection import StreamConnection
from service.errors import ErrorCode
from service.generated import pb, pb_grpc
from service.types import CloseReason, FrameRequest, OpenRequest, ResumeRequest


def _stop_in_background(server, grace_s: float = 5.0) -> threading.Thread:
    """Start ``server``'s drain from another thread (``stop`` blocks until the drain is over)."""
    thread = threading.Thread(target=server.stop, args=(grace_s,), name="test-stop", daemon=True)
    thread.start()
    return thread


def _assert_drained(error: StreamError) -> None:
    assert error.status == grpc.StatusCode.UNAVAILABLE and error.code == ErrorCode.SHUTTING_DOWN, error
    assert "shutting down" in error.message, error
    assert error.closed is not None and error.closed.reason == CloseReason.SERVER_DRAINING
    assert error.handoff is not None and error.handoff.state.size > 0


def test_process_raises_unavailable_with_the_handoff_when_the_server_drains(start_server):
    """Not an INTERNAL "expected the answer to frame N" error; the stream then continues on another server with
    process() alone: the frame whose process() failed does not count as sent, so the next process() takes its
    index."""
    factory, _ = slow_factory(delay_s=0.02)
    draining, replacement = start_server(engine_factory=factory), start_server()
    clip = make_video(seed=91, frames=400)

    async def scenario():
        async with Client(draining.target) as client, Client(replacement.target) as other:
            stream = await client.open()
            answered = []
            stopping = None
            with pytest.raises(StreamError) as error:
                for frame in clip:
                    answered.append(await stream.process(frame))
                    if len(answered) == 3:
                        stopping = _stop_in_background(draining)
            assert stopping is not None
            with pytest.raises(StreamError) as again:  # every later operation says the same
                await stream.process(clip[0])
            await asyncio.to_thread(stopping.join, 30)
            opened = await stream.reconnect(other)
            following = await stream.process(clip[0])
            await stream.close()
            return error.value, again.value, stream, answered, opened, following

    error, again, stream, answered, opened, following = run(scenario())
    _assert_drained(error)
    _assert_drained(again)
    results = [a for a in answered if isinstance(a, FrameResult)]  # a frame may be dropped for the shutdown
    assert stream.handoff is error.handoff and error.handoff.last_frame_index == results[-1].frame_index
    assert opened.kind.name == "HANDED_OFF"
    assert isinstance(following, FrameResult) and following.frame_index == answered[-1].frame_index + 1


def test_retrying_the_frame_whose_process_failed_in_a_drain_continues_exactly_on_another_server(start_server):
    """Frames 0-5 answered, the server shuts down, process(frame 6) raises UNAVAILABLE with the hand-off after
    frame 5. The natural retry, process(frame 6) on another server after reconnect(), sends frame 6 once, as
    index 6: every result equals an uninterrupted stream's. (reconnect() used to re-send frame 6 itself and skip
    its answer, so the retry went out as frame 7 and frame 6 entered the recurrent state twice.)"""
    draining, replacement = start_server(), start_server()
    clip = make_video(seed=97, frames=10)
    reference = reference_outputs(draining.model_dir, clip)

    async def scenario():
        async with Client(draining.target) as client, Client(replacement.target) as other:
            stream = await client.open()
            results = [await stream.process(frame) for frame in clip[:6]]
            await asyncio.to_thread(draining.stop, 5.0)  # what SIGTERM runs: drain, hand off, stop
            with pytest.raises(StreamError) as error:
                await stream.process(clip[6])
            withdrawn = (stream.next_frame_index, stream.unanswered)
            opened = await stream.reconnect(other)
            resent = stream.unanswered
            results += [await stream.process(frame) for frame in clip[6:]]
            await stream.close()
            return error.value, withdrawn, opened, resent, results

    error, withdrawn, opened, resent, results = run(scenario())
    _assert_drained(error)
    assert error.handoff.last_frame_index == 5
    assert_matches(results, reference)
    assert withdrawn == (6, []), "the frame whose process() failed must not count as sent"
    assert opened.kind.name == "HANDED_OFF" and opened.last_frame_index == 5 and resent == []
    assert [r.frame_index for r in results] == list(range(10))


def test_stream_frames_raises_unavailable_with_the_handoff_when_the_server_drains(start_server):
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=92, frames=1)
    stopping: list[threading.Thread] = []

    def frames():
        for index in range(400):
            if index == 5:
                stopping.append(_stop_in_background(server))
            time.sleep(0.005)
            yield clip[0]

    answers = []
    with pytest.raises(StreamError) as error:
        for answer in stream_frames(server.target, frames()):
            answers.append(answer)
    stopping[0].join(30)
    _assert_drained(error.value)
    assert 0 < len(answers) < 400
    assert [a.frame_index for a in answers] == list(range(len(answers)))
    refused = server.server.metrics.calls_refused  # a drain is the server's own doing, not a refused call
    assert not [s for metric in refused.collect() for s in metric.samples if s.name.endswith("_total") and s.value]


def test_the_stream_command_says_the_server_shut_down_and_the_run_stopped_and_exits_1(start_server, tmp_path, capsys):
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    jsonl, slots = tmp_path / "results.jsonl", tmp_path / "slots.npz"
    stopping: list[threading.Thread] = []

    def stop_once_streaming() -> None:
        deadline = time.monotonic() + 30
        while server.session_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        stopping.append(_stop_in_background(server))

    watcher = threading.Thread(target=stop_once_streaming, daemon=True)
    watcher.start()
    code = main(["stream", "synthetic:400", "--target", server.target, "--jsonl", str(jsonl), "--slots", str(slots)])
    watcher.join(30)
    stopping[0].join(30)
    error = capsys.readouterr().err
    assert code == 1, error
    # What happened and that the run stopped, in terms a command-line user can act on: not the hand-off, which is
    # for the Python API.
    assert f"the server at {server.target} shut down and ended the stream after answering " in error, error
    assert "the run stopped" in error and "--reconnect N" in error and "hand-off" not in error, error
    answered = int(error.split("ended the stream after answering ")[1].split(" of ")[0])
    assert 0 < answered < 400 and len(jsonl.read_text().splitlines()) == answered
    with np.load(slots) as saved:  # the slots of every answered frame are kept too, and the user is told so
        assert saved["frame_index"].tolist() == list(range(answered))
    assert f"slots of {answered} frames saved to {slots}" in error, error


def test_receive_returns_the_drain_then_raises_and_close_keeps_answers(start_server):
    """``receive()`` hands over the server's StreamClosed like any answer, then raises; ``close()`` on the
    drained stream does not send anything and returns that StreamClosed."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=93, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(clip[0])
            stopping = _stop_in_background(server)
            closed = await stream.receive()
            with pytest.raises(StreamError) as error:
                await stream.receive()
            with pytest.raises(StreamError) as sending:
                await stream.send(clip[1])
            again = await stream.close()
            await asyncio.to_thread(stopping.join, 30)
            return closed, error.value, sending.value, again

    closed, error, sending, again = run(scenario())
    assert isinstance(closed, StreamClosed) and closed.reason == CloseReason.SERVER_DRAINING
    _assert_drained(error)
    _assert_drained(sending)
    assert again == [closed]


def test_a_stream_detached_when_the_drain_starts_can_still_collect_its_handoff(start_server):
    """A client whose connection dropped just before a shutdown resumes on the draining server: it gets the
    hand-off (``StreamError`` with the state, as for an attached stream), continues on another replica, and
    the drain ends as soon as nothing is left to hand off."""
    draining, replacement = start_server(), start_server()
    clip = make_video(seed=93, frames=6)

    async def scenario():
        async with Client(draining.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            answered = [await stream.process(frame) for frame in clip[:3]]
            stream.cancel()  # the connection drops: the stream waits, detached, for its client
        await asyncio.to_thread(wait_until, lambda: draining.server.manager.detached_count() == 1)
        started = time.perf_counter()
        stopping = _stop_in_background(draining, grace_s=20.0)
        await asyncio.to_thread(wait_until, lambda: draining.server.manager.phase == "draining")
        async with Client(draining.target) as again:
            opened = await stream.reconnect(again)
            with pytest.raises(StreamError) as error:
                await stream.process(clip[3])
        await asyncio.to_thread(stopping.join, 30)
        stop_s = time.perf_counter() - started
        async with Client(replacement.target) as other:
            continued = await stream.reconnect(other)
            following = await stream.process(clip[3])
            await stream.close()
        return answered, opened, error.value, stop_s, continued, following

    answered, opened, error, stop_s, continued, following = run(scenario())
    assert opened.kind.name == "RESUMED"
    _assert_drained(error)
    assert error.handoff is not None and error.handoff.last_frame_index == answered[-1].frame_index
    assert stop_s < 10.0, f"the drain waited {stop_s:.1f} s after the last hand-off was collected"
    assert continued.kind.name == "HANDED_OFF" and isinstance(following, FrameResult)
    assert draining.metric("slotstream_streams_released_total", {"reason": "drained"}) == 1


@pytest.mark.parametrize("then", ["close", "reconnect"])
def test_a_client_done_right_after_its_handoff_lets_the_server_see_the_handoff_taken(start_server, monkeypatch, then):
    """A client closed, or a stream reconnected elsewhere, as soon as the stream raised the drain's ``StreamError``
    first waits for the call's status, so the server learns that the hand-off was taken (``drained``) even when it is
    slow to go on after sending it. Cancelled at once, the call would end before the server knew: the stream kept
    detached to the end of the drain, then counted ``lost``, and the drain waiting for it."""
    resumed_late = threading.Event()

    async def slow_after_a_handoff(connection, requests):
        replies = original_run(connection, requests)
        try:
            async for reply in replies:
                yield reply
                if isinstance(reply, StreamClosed):  # gRPC has sent the hand-off; the server goes on late
                    await asyncio.sleep(0.3)
                    resumed_late.set()
        finally:
            await replies.aclose()

    original_run = StreamConnection.run
    monkeypatch.setattr(StreamConnection, "run", slow_after_a_handoff)
    draining, replacement = start_server(), start_server()
    clip = make_video(seed=94, frames=3)

    async def scenario():
        async with Client(draining.target) as client, Client(replacement.target) as other:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(clip[0])
            stopping = _stop_in_background(draining, grace_s=20.0)
            with pytest.raises(StreamError) as error:
                await stream.process(clip[1])
            if then == "reconnect":
                assert (await stream.reconnect(other)).kind.name == "HANDED_OFF"
                assert isinstance(await stream.process(clip[1]), FrameResult)
                await stream.close()
        await asyncio.to_thread(stopping.join, 30)
        return error.value

    _assert_drained(run(scenario()))
    assert draining.metric("slotstream_streams_released_total", {"reason": "drained"}) == 1
    assert draining.metric("slotstream_streams_released_total", {"reason": "lost"}) == 0
    assert resumed_late.is_set()


async def _detach_a_stream(server, seed: int):
    """Open a resumable stream on ``server``, answer one frame, drop the connection; returns the client stream
    once the server holds it detached."""
    async with Client(server.target) as client:
        stream = await client.open(StreamOptions(resume_window_s=30))
        await stream.process(make_video(seed=seed, frames=1)[0])
        stream.cancel()
    await asyncio.to_thread(wait_until, lambda: server.server.manager.detached_count() == 1)
    return stream


def test_a_detached_stream_nobody_resumes_is_freed_when_the_grace_period_ends(start_server):
    server = start_server()

    run(_detach_a_stream(server, seed=94))
    started = time.perf_counter()
    server.stop(0.5)
    assert 0.4 < time.perf_counter() - started < 5.0, "the drain waits for the grace period, and no longer"
    # Its hand-off was never collected: counted as lost, apart from the streams a drain handed off.
    assert server.metric("slotstream_streams_released_total", {"reason": "lost"}) == 1
    assert server.metric("slotstream_streams_released_total", {"reason": "drained"}) == 0
    assert server.server.manager.detached_count() == 0


def test_a_call_that_opens_only_after_the_drain_began_still_collects_its_handoff(start_server):
    """The drain meets the resuming call before its open arrived (the call is already on the server's list):
    it must let the call read its open rather than end it with nothing to continue from."""
    server = start_server()

    async def scenario():
        stream = await _detach_a_stream(server, seed=95)
        await asyncio.to_thread(wait_until, lambda: not server.server._servicer.connections)  # the old call's end
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()  # the call starts; its open is not sent yet
            await asyncio.to_thread(wait_until, lambda: len(server.server._servicer.connections) == 1)
            stopping = _stop_in_background(server, grace_s=20.0)
            (connection,) = server.server._servicer.connections
            await asyncio.to_thread(wait_until, lambda: connection._draining)  # the drain has reached this call
            await asyncio.sleep(0.2)  # and passes over it every 50 ms: none may end it while a hand-off waits
            resume = ResumeRequest(stream.opened.resume_token, 0)
            await call.write(wire.request_to_proto(OpenRequest(stream_id=stream.stream_id, resume=resume)))
            replies = [await call.read(), await call.read()]
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await call.read()
        await asyncio.to_thread(stopping.join, 30)
        return replies, ended.value

    (opened, closed), ended = run(scenario())
    assert opened.WhichOneof("kind") == "opened" and closed.WhichOneof("kind") == "closed"
    assert closed.closed.handoff.last_frame_index == 0 and closed.closed.handoff.state.data
    assert ended.code() == grpc.StatusCode.UNAVAILABLE


def test_streams_still_attached_when_the_grace_period_ends_are_freed(start_server):
    """Their calls are cancelled when the gRPC server stops, after the drain: those disconnects must free the
    streams, not detach them for a resume that can no longer come."""
    factory, _ = slow_factory(delay_s=1.0)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=96, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            for frame in clip:
                await stream.send(frame)
            await asyncio.sleep(0.2)
            await asyncio.to_thread(server.stop, 0.3)

    run(scenario())
    assert server.server.manager.sessions == {}, "a stream outlived the server"
    assert server.gauge("slotstream_streams_detached") == 0
    released = {
        reason: server.metric("slotstream_streams_released_total", {"reason": reason})
        for reason in ("drained", "cancelled")
    }
    assert released == {"drained": 1, "cancelled": 0}, "the shutdown cut it off, not its client"


def test_a_drain_before_the_first_frame_says_there_is_no_handoff_to_continue_with(start_server):
    """A stream drained before any frame was processed has no state to hand off: its ``StreamClosed`` and its
    UNAVAILABLE status tell the client to open a new stream elsewhere, not to continue "with this hand-off"; a
    stream with a processed frame is still told to continue with its hand-off."""
    server = start_server()
    frame = make_video(seed=97, frames=1)[0]

    async def drained_call(channel, frames: int):
        call = pb_grpc.PerceptionStub(channel).Stream()
        await call.write(wire.request_to_proto(OpenRequest()))
        replies = [await call.read()]
        for index in range(frames):
            await call.write(wire.request_to_proto(FrameRequest(index, raw(frame))))
            replies.append(await call.read())
        return call, replies

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            fresh, fresh_replies = await drained_call(channel, 0)
            used, used_replies = await drained_call(channel, 1)
            stopping = _stop_in_background(server)
            ends = []
            for call, replies in ((fresh, fresh_replies), (used, used_replies)):
                replies.append(await call.read())
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await call.read()
                ends.append((replies, ended.value))
        await asyncio.to_thread(stopping.join, 30)
        return ends

    (fresh_replies, fresh_end), (used_replies, used_end) = run(scenario())
    closed = fresh_replies[-1].closed
    assert closed.reason == pb.CLOSE_REASON_SERVER_DRAINING and not closed.HasField("handoff")
    for said in (closed.message, fresh_end.details()):
        assert "no hand-off" in said and "open a new stream on another replica with the same options" in said, said
        assert "with this hand-off" not in said, said
    assert fresh_end.code() == grpc.StatusCode.UNAVAILABLE
    closed = used_replies[-1].closed
    assert closed.reason == pb.CLOSE_REASON_SERVER_DRAINING and closed.HasField("handoff")
    assert "continue the stream on another replica with this hand-off" in closed.message
    assert "(StreamClosed.handoff)" in used_end.details() and used_end.code() == grpc.StatusCode.UNAVAILABLE


def test_a_closed_client_raises_closed_for_a_stream_whose_end_was_not_read(start_server):
    """The answer and the StreamClosed wait unread when the client is closed: the stream's next operation raises
    the closed client's error, as for any stream of a closed client, not the end it never read."""
    server = start_server()
    clip = make_video(seed=97, frames=1)

    async def scenario():
        client = Client(server.target)
        stream = await client.open()
        await stream.send(clip[0])
        await stream.close_writing()
        await asyncio.to_thread(wait_until, lambda: not server.server._servicer.connections)  # all sent, unread
        await client.close()
        with pytest.raises(StreamError) as error:
            await stream.close()
        return error.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.FAILED_PRECONDITION and "is closed" in error.message, error


def test_a_close_cancelled_while_it_waits_for_the_server_still_closes_the_connection(start_server, monkeypatch):
    """``Client.close()`` waits for the status of a call the server is ending; cancelled during that wait (an
    ``asyncio.wait_for``, a task group's cancel), it still closes the connection and its calls."""

    async def slow_after_closing(connection, requests):
        replies = original_run(connection, requests)
        try:
            async for reply in replies:
                yield reply
                if isinstance(reply, StreamClosed):
                    await asyncio.sleep(10)  # the server goes on (and ends the call) late
        finally:
            await replies.aclose()

    original_run = StreamConnection.run
    monkeypatch.setattr(StreamConnection, "run", slow_after_closing)
    server = start_server()

    async def scenario():
        client = Client(server.target)
        stream = await client.open()
        await stream.process(make_video(seed=98, frames=1)[0])
        await stream.close()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.close(), 0.2)
        # The call is cancelled with the connection, not left to the server's end 10 s later.
        await asyncio.to_thread(wait_until, lambda: not server.server._servicer.connections, 5.0)
        await client.close()  # again: nothing left to do
        return client.closed

    assert run(scenario())
