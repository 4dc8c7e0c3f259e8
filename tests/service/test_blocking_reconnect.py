"""``stream_frames(..., reconnect=N)`` continues a stream through a lost connection, a server lost without a
shutdown and a server's drain, exactly (every frame answered once, in order, with an uninterrupted stream's slots),
through a TCP proxy between client and server whose connections the tests cut; and when it cannot, the loop ends
with the error that ended the call and a note on the tries."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from service_helpers import make_video, reference_outputs, slow_factory
from tcp_proxy import TakeOver, after_frame

from service.client import Client, FrameResult, Output, StreamError, StreamOptions, stream_frames
from service.client.daemon_calls import DaemonCalls
from service.client.frames_exchange import FramesExchange
from service.client.reconnection import DEFAULT_RESUME_WINDOW_S, StreamClients, reconnect_options
from service.client.stream import ClientStream
from service.errors import ErrorCode

OPTIONS = StreamOptions(outputs=frozenset({Output.SLOTS}))


def _answers(target: str, frames, **kwargs) -> list[FrameResult]:
    answers = list(stream_frames(target, frames, OPTIONS, **kwargs))
    assert all(isinstance(answer, FrameResult) for answer in answers), answers
    return answers  # type: ignore[return-value]


def _assert_every_frame_once_and_exact(answers: list[FrameResult], clip: list[np.ndarray], server) -> None:
    assert [answer.frame_index for answer in answers] == list(range(len(clip)))
    reference = np.stack([slots for slots, _ in reference_outputs(server.model_dir, clip)])  # [T, K, D]
    np.testing.assert_allclose(np.stack([answer.slots for answer in answers]), reference, atol=1e-5, rtol=0)


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if record.name == "service.client")


def test_a_dropped_connection_is_resumed_and_the_answers_are_an_uninterrupted_streams(start_server, proxy_to, caplog):
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=71, frames=40)
    watcher = after_frame(server, 10, proxy.drop)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = _answers(proxy.target, iter(clip), reconnect=3)
    watcher.join(30)
    assert proxy.drops == 1
    logged = _messages(caplog)
    assert f"lost the connection to {proxy.target}" in logged and "reconnecting in 0.25 s (try 1 of 3)" in logged
    assert "continued (resumed) after frame" in logged, logged
    _assert_every_frame_once_and_exact(answers, clip, server)
    assert all(answer.state is not None for answer in answers), "each result carries the state to continue from"


def test_a_frame_being_read_when_the_connection_drops_is_sent_after_the_reconnect(start_server, proxy_to):
    """The camera is still delivering frame 12 when the connection is cut and the stream resumed: that frame is
    the next one sent, not lost with the call that ended meanwhile."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=72, frames=30)
    dropped = threading.Event()

    def camera() -> Iterator[np.ndarray]:
        for index, frame in enumerate(clip):
            if index == 12:
                assert dropped.wait(30)
                time.sleep(1.5)  # the reconnect happens while this frame is being read
            yield frame

    def drop() -> None:
        proxy.drop()
        dropped.set()

    watcher = after_frame(server, 11, drop)
    answers = _answers(proxy.target, camera(), reconnect=3)
    watcher.join(30)
    assert proxy.drops == 1
    _assert_every_frame_once_and_exact(answers, clip, server)


def test_a_server_lost_without_a_shutdown_is_replaced_from_the_last_answers_state(start_server, proxy_to, caplog):
    """The server behind the target is cut off without draining (as a crashed one would be) and another one answers
    there: the stream cannot be resumed, so it continues from the state its last answer carried, exactly."""
    factory, _ = slow_factory(delay_s=0.02)
    lost, replacement = start_server(engine_factory=factory), start_server()
    proxy = proxy_to(lost.target)
    clip = make_video(seed=73, frames=40)

    def cut_off() -> None:
        proxy.upstream = replacement.target
        proxy.drop()

    watcher = after_frame(lost, 10, cut_off)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = _answers(proxy.target, clip, reconnect=3)
    watcher.join(30)
    assert "continued (handed_off) after frame" in _messages(caplog)
    _assert_every_frame_once_and_exact(answers, clip, lost)


def test_a_server_shutdown_continues_on_the_server_that_takes_over_the_target(start_server, proxy_to, caplog):
    """The server behind the target drains after frame 10 and another one takes over the address: the stream
    continues there from the drain's hand-off, over a new connection, exactly."""
    factory, _ = slow_factory(delay_s=0.02)
    draining, replacement = start_server(engine_factory=factory), start_server()
    proxy = proxy_to(draining.target)
    clip = make_video(seed=74, frames=40)
    take_over = TakeOver(proxy, draining, replacement)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = _answers(proxy.target, clip, reconnect=6)
    take_over.join()
    logged = _messages(caplog)
    assert f"the server at {proxy.target} is shutting down" in logged, logged
    assert "continued (handed_off) after frame" in logged, logged
    _assert_every_frame_once_and_exact(answers, clip, draining)
    refused = replacement.metric("slotstream_calls_refused_total", {"code": "unknown_stream"})
    assert refused == 0, "the drained stream is not asked of the replacement as a resume first"


def test_a_server_without_a_resume_window_is_not_asked_to_resume(start_server, proxy_to, caplog):
    """A server started with ``--max-resume-window-s 0`` frees a stream when its call ends: after a lost connection
    the stream continues from the state its last answer carried, exactly, with no resume asked for first (the
    server would refuse it and count the refusal)."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory, max_resume_window_s=0.0)
    proxy = proxy_to(server.target)
    clip = make_video(seed=75, frames=30)
    watcher = after_frame(server, 10, proxy.drop)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = _answers(proxy.target, clip, reconnect=3)
    watcher.join(30)
    logged = _messages(caplog)
    assert "the server keeps no resume window" in logged and "continued (handed_off) after frame" in logged, logged
    _assert_every_frame_once_and_exact(answers, clip, server)
    assert server.metric("slotstream_calls_refused_total", {"code": "unknown_stream"}) == 0


def test_without_reconnect_a_dropped_connection_ends_the_loop(start_server, proxy_to):
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=75, frames=40)
    watcher = after_frame(server, 10, proxy.drop)
    received = []
    with pytest.raises(StreamError) as raised:
        for answer in stream_frames(proxy.target, clip, OPTIONS):
            received.append(answer.frame_index)
    watcher.join(30)
    assert raised.value.connection_lost, raised.value
    assert received == list(range(len(received))) and len(received) < len(clip)


def test_when_every_try_fails_the_loop_ends_with_the_lost_connection_and_a_note_on_the_tries(start_server, proxy_to):
    """The connection is cut and nothing listens at the target any more: the tries fail, and the loop ends with the
    error that ended the call (the connection was lost), noting how many tries failed and why the last did."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=76, frames=40)

    def cut_off() -> None:
        proxy.upstream = "127.0.0.1:1"  # nothing listens there: every connection fails
        proxy.drop()

    watcher = after_frame(server, 10, cut_off)
    received = []
    with pytest.raises(StreamError) as raised:
        for answer in stream_frames(proxy.target, clip, OPTIONS, reconnect=2):
            received.append(answer.frame_index)
    watcher.join(30)
    assert raised.value.connection_lost, raised.value
    notes = getattr(raised.value, "__notes__", [])
    assert len(notes) == 1 and notes[0].startswith("2 tries to continue the stream failed (last: "), notes
    assert received == list(range(len(received))) and 10 <= len(received) < len(clip)


@pytest.mark.parametrize("tries", [-1, 1.5, True, "3"])
def test_a_reconnect_that_is_not_a_count_of_tries_is_refused(tries):
    with pytest.raises(ValueError, match=r"reconnect must be a whole number of tries >= 0"):
        next(stream_frames("127.0.0.1:1", [], reconnect=tries))


def test_reconnect_options_ask_for_a_resume_window_and_the_state_and_keep_the_rest():
    default = reconnect_options(StreamOptions())
    assert default.resume_window_s == DEFAULT_RESUME_WINDOW_S
    assert default.outputs == {Output.SLOTS, Output.SEGMENTATION, Output.STATE}  # the default outputs, and the state
    own = reconnect_options(StreamOptions(live=True, outputs=frozenset({Output.SLOTS}), resume_window_s=5.0))
    assert own.live and own.resume_window_s == 5.0 and own.outputs == {Output.SLOTS, Output.STATE}
    assert reconnect_options(StreamOptions(resume_window_s=5.0), resume_window_s=9.0).resume_window_s == 9.0


def test_a_frame_read_just_as_the_call_ends_is_kept_for_the_next_call():
    """The frames iterator's read completes, and the sender is cancelled (the call ended) before it resumes: the frame
    read is the next call's first, not lost (which shifted every later frame's index by one)."""

    async def scenario() -> tuple[object, object]:
        frame_thread, answer_thread = DaemonCalls("test-frames"), DaemonCalls("test-answers")
        exchange = FramesExchange(
            SimpleNamespace(opened=None),  # type: ignore[arg-type]  (reading frames needs no stream)
            iter(["first", "second"]),
            queue.Queue(),
            asyncio.Event(),
            window=2,
            jpeg_quality=None,
            newest_only=False,
            frame_thread=frame_thread,
            answer_thread=answer_thread,
        )
        reader = asyncio.ensure_future(exchange._read_next())
        while exchange._reading is None:  # the read starts, on the frame thread
            await asyncio.sleep(0)
        # the call ends the moment the read completes, before the sender waiting for it resumes
        exchange._reading.add_done_callback(lambda _: reader.cancel())
        cancelled = await asyncio.gather(reader, return_exceptions=True)
        after = await exchange._read_next()
        frame_thread.stop()
        answer_thread.stop()
        return cancelled[0], after

    cancelled, after = asyncio.run(scenario())
    assert isinstance(cancelled, asyncio.CancelledError) and after == "first"


def test_leaving_the_loop_while_it_reconnects_ends_the_tries_at_once(start_server, proxy_to, caplog):
    """The connection is cut with nothing to reconnect to, and the caller leaves the loop while the tries go on: the
    loop ends at once, not after ``close_timeout_s``, and no try follows."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=77, frames=40)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = stream_frames(proxy.target, clip, OPTIONS, reconnect=8)
        for answer in answers:
            if answer.frame_index == 5:
                proxy.upstream = "127.0.0.1:1"  # nothing listens there: every try fails
                proxy.drop()
                time.sleep(1.0)  # tries 1 and 2 are made meanwhile
                break
        started = time.monotonic()
        answers.close()
        seconds = time.monotonic() - started
        tries_when_left = _messages(caplog).count("reconnecting in")
        time.sleep(1.5)
    assert seconds < 3.0, f"leaving took {seconds:.2f} s (waiting out close_timeout_s would take 5)"
    assert tries_when_left >= 1 and _messages(caplog).count("reconnecting in") == tries_when_left


def test_the_clients_a_stream_no_longer_uses_are_closed_and_one_that_cannot_be_made_is_not_fatal(caplog):
    async def scenario() -> None:
        made: list[Client] = []

        def make() -> Client:
            if len(made) == 2:
                raise OSError("ca.pem: being rewritten")
            made.append(Client("127.0.0.1:1"))
            return made[-1]

        clients = StreamClients(make)
        first, second = made[0], clients.new()
        assert second is made[1]
        with caplog.at_level(logging.WARNING, logger="service.client"):
            assert clients.new() is None  # the connection in use, with a warning
        assert "ca.pem: being rewritten; reconnecting on the connection in use" in caplog.text
        await clients.close_unused(second)  # the stream continued on the second
        assert first.closed and not second.closed and clients.clients == [second]
        await clients.close()
        assert second.closed
        told: list[str] = []  # the command line's: a client of its own first, its warnings printed
        own = Client("127.0.0.1:1")
        printed = StreamClients(make, first=own, warn=told.append)
        assert printed.clients == [own] and printed.new() is None
        assert told == ["ca.pem: being rewritten; reconnecting on the connection in use"]
        await printed.close()

    asyncio.run(scenario())


def _camera(clip: list[np.ndarray], fps: float) -> Iterator[np.ndarray]:
    """``clip`` at ``fps`` frames a second, as a camera gives it."""
    for frame in clip:
        time.sleep(1 / fps)
        yield frame


def _answers_of_a_stalling_loop(target: str, frames, options: StreamOptions, at: int, stall_s: float) -> list[object]:
    answers = []
    for answer in stream_frames(target, frames, options, window=2, reconnect=3):
        answers.append(answer)
        if answer.frame_index == at:
            time.sleep(stall_s)  # the loop body stalls: nothing reads the answers, nothing sends
    return answers


def test_a_loop_body_that_stalls_past_the_idle_timeout_is_continued_exactly(start_server, caplog):
    """The body stalls 4 s with the window full (2 frames, and 8 answers waiting for the loop): the server reclaims
    the stream after its idle timeout (1 s, checked each second); the loop continues it from the last answer's
    state, exactly."""
    server = start_server()
    clip = make_video(seed=78, frames=24)
    options = dataclasses.replace(OPTIONS, idle_timeout_s=1.0)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = _answers_of_a_stalling_loop(server.target, clip, options, at=5, stall_s=4.0)
    assert "STREAM_EXPIRED" in _messages(caplog) and "continued (handed_off)" in _messages(caplog), _messages(caplog)
    _assert_every_frame_once_and_exact(answers, clip, server)  # type: ignore[arg-type]


def test_a_live_loop_with_tries_allowed_keeps_no_more_frames_unanswered_than_a_resume_can_go_back(
    start_server, monkeypatch
):
    """Live mode sends every camera frame as it comes; with tries allowed, no more frames are left unanswered than
    the server's resume history, so that a loop body that stalls cannot let the server run past the point a resume
    can go back to (the resume would be refused RESUME_POINT_UNAVAILABLE, ending the loop)."""
    factory, _ = slow_factory(delay_s=0.05)  # a camera far faster than the model
    server = start_server(engine_factory=factory, resume_history=4)
    clip = make_video(seed=79, frames=40)
    most_unanswered = [0]
    send = ClientStream.send

    async def counted(stream: ClientStream, *args, **kwargs):
        most_unanswered[0] = max(most_unanswered[0], len(stream.unanswered) + 1)  # with this frame
        return await send(stream, *args, **kwargs)

    monkeypatch.setattr(ClientStream, "send", counted)
    options = dataclasses.replace(OPTIONS, live=True)
    answers = list(stream_frames(server.target, clip, options, reconnect=3))
    assert [answer.frame_index for answer in answers] == list(range(len(clip)))
    assert 2 <= most_unanswered[0] <= 4, most_unanswered[0]
    most_unanswered[0] = 0
    list(stream_frames(server.target, clip, options))  # without tries, live mode sends as the camera gives
    assert most_unanswered[0] > 4, most_unanswered[0]


def test_a_source_that_stops_delivering_frames_ends_the_loop_with_the_expiry_not_a_try(start_server, caplog):
    """The frames iterator has no frame for longer than the idle timeout (a camera that stopped): the loop ends with
    ``STREAM_EXPIRED``, as without tries; continuing it would only expire again, for as long as the camera is gone."""
    server = start_server()
    clip = make_video(seed=80, frames=10)
    camera_back = threading.Event()

    def camera() -> Iterator[np.ndarray]:
        yield from clip[:5]
        camera_back.wait(30)  # stopped
        yield from clip[5:]

    options = dataclasses.replace(OPTIONS, idle_timeout_s=1.0)
    received = []
    try:
        with caplog.at_level(logging.WARNING, logger="service.client"), pytest.raises(StreamError) as raised:
            for answer in stream_frames(server.target, camera(), options, reconnect=3):
                received.append(answer.frame_index)
    finally:
        camera_back.set()
    assert raised.value.code == ErrorCode.STREAM_EXPIRED, raised.value
    assert received == list(range(5)) and "reconnecting" not in _messages(caplog), _messages(caplog)


def test_the_live_limit_follows_the_server_the_stream_continued_on(start_server, proxy_to, monkeypatch):
    """The stream continues on a server with a shorter resume history than the first one's: from then on no more
    frames are left unanswered than that one can resume from."""
    factory, _ = slow_factory(delay_s=0.05)
    first = start_server(engine_factory=factory, resume_history=32)
    second = start_server(engine_factory=slow_factory(delay_s=0.05)[0], resume_history=4)
    proxy = proxy_to(first.target)
    clip = make_video(seed=81, frames=60)
    unanswered_by_history: dict[int, int] = {}
    send = ClientStream.send

    async def counted(stream: ClientStream, *args, **kwargs):
        history = stream.opened.resume_history if stream.opened is not None else 0
        unanswered = len(stream.unanswered) + 1  # with this frame
        unanswered_by_history[history] = max(unanswered_by_history.get(history, 0), unanswered)
        return await send(stream, *args, **kwargs)

    def camera() -> Iterator[np.ndarray]:
        for index, frame in enumerate(clip):
            if index == 40:  # cut by the camera's own progress: a live server drops frames, so its count jumps
                proxy.upstream = second.target
                proxy.drop()
                time.sleep(1.0)  # the stream continues on the second server while this frame is being read
            yield frame

    monkeypatch.setattr(ClientStream, "send", counted)
    answers = list(stream_frames(proxy.target, camera(), dataclasses.replace(OPTIONS, live=True), reconnect=3))
    assert proxy.drops == 1
    assert [answer.frame_index for answer in answers] == list(range(len(clip)))
    assert unanswered_by_history[32] > 4 and unanswered_by_history[4] <= 4, unanswered_by_history
