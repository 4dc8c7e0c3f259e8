"""``NewestAnswer`` and ``stream_frames(newest_only=True)``: a consumer slower than its camera gets the freshest
answer, not the backlog of every answer in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
from service_helpers import make_video, run, slow_factory

from service.client import (
    Client,
    FrameDropped,
    FrameError,
    FrameResult,
    NewestAnswer,
    StreamClosed,
    StreamError,
    StreamOptions,
    stream_frames,
)
from service.errors import ErrorCode


def test_after_a_pause_get_returns_an_answer_to_a_frame_sent_during_the_pause(server):
    """``receive()`` would return the answer to the first frame sent after the last one read, from before the
    pause; ``get()`` skips to one of the frames sent while the consumer was away."""
    clip = make_video(seed=93, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(live=True))
            sent = 0
            sending = True

            async def camera() -> None:
                nonlocal sent
                while sending:
                    await stream.send(clip[sent % len(clip)])
                    sent += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(camera())
            async with NewestAnswer(stream) as newest:
                await newest.get()
                paused_from = sent
                await asyncio.sleep(3.0)  # the consumer is busy elsewhere (long beside a loaded machine's stalls)
                paused_to = sent
                answer = await newest.get()
                skipped = newest.skipped
            sending = False
            await task
            await stream.close()
            return answer, skipped, paused_from, paused_to

    answer, skipped, paused_from, paused_to = run(scenario())
    assert paused_to - paused_from >= 40, "the camera hardly sent during the pause"
    assert isinstance(answer, FrameResult)
    assert answer.frame_index >= (paused_from + paused_to) // 2, (answer.frame_index, paused_from, paused_to)
    assert skipped >= 10


def test_frame_errors_are_returned_drop_notices_counted_and_the_stream_closes_as_usual(start_server):
    server = start_server(inline_model_max_ms=0)
    clip = make_video(seed=94, frames=12)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(live=True))
            async with NewestAnswer(stream) as newest:
                await stream.send(clip[0], camera_frame_id="x" * 300)  # longer than the server echoes
                error = await newest.get()
                for frame in clip:  # at once: live mode drops the frames still waiting when a newer one comes
                    await stream.send(frame)
                await stream.close_writing()
                answers = [await newest.get()]
                while not isinstance(answers[-1], StreamClosed):
                    answers.append(await newest.get())
                with pytest.raises(StreamError):
                    await newest.get()  # after the StreamClosed, as receive() does
                return error, answers, newest.dropped, newest.skipped

    error, answers, dropped, skipped = run(scenario())
    assert isinstance(error, FrameError) and error.code == ErrorCode.CAMERA_FRAME_ID_TOO_LONG
    assert not any(isinstance(a, FrameDropped) for a in answers)
    results = [a for a in answers if isinstance(a, FrameResult)]
    assert results[-1].frame_index == len(clip), "the newest frame is always answered"
    assert [r.frame_index for r in results] == sorted({r.frame_index for r in results})
    assert dropped >= 1 and dropped + skipped + len(results) == len(clip)


def test_leaving_the_block_keeps_the_stream_usable_in_order(server):
    clip = make_video(seed=95, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            newest = NewestAnswer(stream)
            with pytest.raises(RuntimeError, match="async with"):
                await newest.get()
            async with newest:
                await stream.send(clip[0])
                first = await newest.get()
            second = await stream.process(clip[1])
            await stream.send(clip[2])
            rest = await stream.close()
            return first, second, rest

    first, second, rest = run(scenario())
    assert (first.frame_index, second.frame_index) == (0, 1)
    assert [a.frame_index for a in rest[:-1]] == [2] and isinstance(rest[-1], StreamClosed)


@pytest.mark.parametrize("lost_first", [True, False], ids=["connection lost, then reconnect", "reconnect"])
def test_reading_goes_on_after_reconnect_and_a_lost_connection_is_raised_once(server, lost_first):
    """A lost connection is raised once by ``get()``; a ``reconnect()`` while the reader waits on the call cancels
    that call, and its error is not raised afterwards. Either way the next ``get()`` reads the continued stream."""
    clip = make_video(seed=96 if lost_first else 102, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            async with NewestAnswer(stream) as newest:
                await stream.send(clip[0])
                await newest.get()
                if lost_first:
                    stream.cancel()  # as a network failure would
                    with pytest.raises(StreamError):
                        await newest.get()
                else:
                    await asyncio.sleep(0.05)  # the reader waits on the call
                await stream.reconnect()
                await stream.send(clip[1])
                answer = await asyncio.wait_for(newest.get(), 30)
            await stream.close()
            return answer

    answer = run(scenario())
    assert isinstance(answer, FrameResult) and answer.frame_index == 1


def test_blocking_newest_only_yields_fresh_answers_to_a_slow_loop(server):
    """The frames are read at the camera's pace, not the loop's (live mode drops what the model cannot take): a loop
    five times slower than its camera sees increasing frame indices, never a drop notice, and the last frame's
    result, and the camera is done long before the loop would have asked for every frame."""
    clip = make_video(seed=97, frames=60)
    camera_done: list[float] = []

    def camera() -> Iterator[np.ndarray]:
        for frame in clip:
            yield frame
            time.sleep(0.01)  # 100 frames/s
        camera_done.append(time.monotonic())

    first_answer_at: list[float] = []
    answers = []
    for answer in stream_frames(server.target, camera(), StreamOptions(live=True), newest_only=True):
        first_answer_at = first_answer_at or [time.monotonic()]  # after the connection is made, however slowly
        answers.append(answer)
        time.sleep(0.05)  # a control loop at 20 Hz
    indices = [a.frame_index for a in answers]
    assert all(isinstance(a, FrameResult) for a in answers)
    assert indices == sorted(set(indices)) and len(indices) <= len(clip) // 2, indices
    assert indices[-1] == len(clip) - 1
    # At the loop's pace the camera would end about len(clip) x 0.05 s (3 s) after the first answer, at its own
    # pace 0.6 s after its first frame.
    assert camera_done and camera_done[0] - first_answer_at[0] < len(clip) * 0.05 / 2, "read at the loop's pace"


def test_reading_goes_on_after_a_drain_and_a_reconnect_to_another_server(start_server):
    """The drain's StreamClosed is returned once; after ``reconnect()`` to another server, ``get()`` reads the
    continued stream (it used to keep the old StreamClosed and lose the next answer)."""
    first, second = start_server(), start_server()
    clip = make_video(seed=99, frames=2)

    async def scenario():
        async with Client(first.target) as client, Client(second.target) as other:
            stream = await client.open()
            async with NewestAnswer(stream) as newest:
                await stream.send(clip[0])
                await newest.get()
                await asyncio.to_thread(first.stop, 0.5)  # drains: the stream's state comes back in the close
                closed = await newest.get()
                with pytest.raises(StreamError):
                    await newest.get()
                await stream.reconnect(other)
                await stream.send(clip[1])
                answer = await asyncio.wait_for(newest.get(), 30)
            await stream.close()
            return closed, answer

    closed, answer = run(scenario())
    assert isinstance(closed, StreamClosed) and closed.handoff is not None
    assert isinstance(answer, FrameResult) and answer.frame_index == 1


def test_a_cancellation_while_leaving_the_block_is_not_swallowed(server):
    clip = make_video(seed=100, frames=1)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            outcome = "kept running"
            me = asyncio.current_task()
            assert me is not None
            try:
                async with NewestAnswer(stream) as newest:
                    await stream.send(clip[0])
                    await newest.get()
                    asyncio.get_running_loop().call_soon(me.cancel)  # lands while __aexit__ waits for the reader
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                outcome = "cancelled"
                me.uncancel()
            await stream.close()
            return outcome

    assert run(scenario()) == "cancelled"


def test_live_mode_reads_a_camera_faster_than_the_model_at_its_own_pace(start_server):
    """With ``StreamOptions(live=True)`` the frames go as the camera gives them (no window holds them back), so a
    model slower than the camera answers the frames it had no time for as dropped, and the camera is not read at
    the model's pace; every frame is answered once, in order."""
    factory, _ = slow_factory(delay_s=0.05)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=101, frames=40)
    started = time.monotonic()
    answers = list(stream_frames(server.target, iter(clip), StreamOptions(live=True)))
    elapsed = time.monotonic() - started
    assert [answer.frame_index for answer in answers] == list(range(len(clip)))
    dropped = [answer for answer in answers if isinstance(answer, FrameDropped)]
    assert dropped, f"no frame was dropped in {elapsed:.2f} s: the camera was read at the model's pace"
    assert isinstance(answers[-1], FrameResult)  # the newest frame is always processed
