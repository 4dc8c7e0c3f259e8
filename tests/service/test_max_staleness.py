"""``StreamOptions.max_staleness_s`` over gRPC on loopback: frames older than the limit when they arrive, when they
leave the stream's queue or when a batch forms are answered ``FrameDropped(STALE)`` and leave the state unchanged;
frames of unknown capture time and streams without the limit are never dropped for their age."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

import pytest
from service_helpers import make_video, reference_outputs, run, slow_factory, wait_until

from service.client import Client, FrameDropped, FrameResult, StreamError, StreamOptions
from service.errors import ErrorCode
from service.session_limits import SessionLimits
from service.types import DropReason


def _now_ns() -> int:
    return time.time_ns()


def test_frames_older_than_the_limit_on_arrival_are_dropped_and_leave_the_state_alone(start_server):
    server = start_server()
    clip = make_video(seed=5, frames=6)
    old = {1, 3}  # captured 30 s ago: stale on arrival

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(max_staleness_s=5.0))
            answers = []
            for index, frame in enumerate(clip):
                captured = _now_ns() - 30 * 10**9 if index in old else (0 if index == 4 else _now_ns())
                await stream.send(frame, capture_time_ns=captured)
                answers.append(await stream.receive())
            await stream.close()
            return stream.opened, answers

    opened, answers = run(scenario())
    assert opened.options.max_staleness_s == 5.0, "the effective options echo the limit"
    dropped = {a.frame_index: a for a in answers if isinstance(a, FrameDropped)}
    assert sorted(dropped) == sorted(old)
    for drop in dropped.values():
        assert drop.reason == DropReason.STALE
        age = float(drop.message.split(" s old")[0].rsplit(" ", 1)[1])
        assert 30.0 <= age < 40.0, drop.message
        assert "when it arrived" in drop.message, "not decoded and queued first"
        assert "max_staleness_s of 5 s" in drop.message and "clock" in drop.message
    # The dropped frames never reached the state: the others are exactly the clip without them.
    kept = [frame for index, frame in enumerate(clip) if index not in old]
    results = [a for a in answers if isinstance(a, FrameResult)]
    assert [r.frame_index for r in results] == [0, 2, 4, 5]  # frame 4 (capture time 0, unknown) is never stale
    for result, (slots, segmentation) in zip(results, reference_outputs(server.model_dir, kept), strict=True):
        assert result.slots is not None and result.segmentation is not None
        assert float(abs(result.slots - slots).max()) <= 1e-5
        assert float((result.segmentation == segmentation).mean()) >= 0.999
    assert server.metric("slotstream_frames_dropped_total", {"reason": "stale"}) == len(old)


def test_without_a_limit_old_frames_are_processed(start_server):
    server = start_server()
    clip = make_video(seed=6, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions())
            answers = []
            for frame in clip:
                await stream.send(frame, capture_time_ns=1)  # 1970
                answers.append(await stream.receive())
            await stream.close()
            return stream.opened, answers

    opened, answers = run(scenario())
    assert opened.options.max_staleness_s == 0.0
    assert all(isinstance(a, FrameResult) for a in answers)


def test_frames_that_grow_stale_waiting_behind_the_streams_earlier_frame_are_dropped(start_server):
    """Every model call takes 1.5 s; the limit is 1 s. Frame 0 reaches the model fresh; frames 1-3, fresh when
    they arrive, wait in the stream's queue behind it and are older than 1 s when it is done."""
    factory, _ = slow_factory(delay_s=1.5)
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    clip = make_video(seed=7, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(max_staleness_s=1.0))
            for frame in clip:
                await stream.send(frame)  # capture time: now
            answers = [await stream.receive() for _ in clip]
            await stream.close()
            return answers

    answers = run(scenario())
    assert isinstance(answers[0], FrameResult)
    assert all(isinstance(a, FrameDropped) and a.reason == DropReason.STALE for a in answers[1:]), answers


def test_a_frame_that_grows_stale_waiting_for_a_busy_model_is_dropped(start_server):
    """One model instance, busy for 2 s with stream A's frame; stream B's frame (limit 1 s), sent 0.5 s into that
    call, passes its stream's queue at once and waits for the model in the batcher: when the next batch forms it is
    about 1.5 s old, and it never runs."""
    factory, _ = slow_factory(delay_s=2.0)
    server = start_server(engine_factory=factory, inline_model_max_ms=0, model_instances=1)
    frame_a, frame_b = make_video(seed=8, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream_a = await client.open(StreamOptions())
            stream_b = await client.open(StreamOptions(max_staleness_s=1.0))
            await stream_a.send(frame_a)
            await asyncio.sleep(0.5)  # A's frame is in the model
            await stream_b.send(frame_b)
            answers = await stream_a.receive(), await stream_b.receive()
            await stream_a.close()
            await stream_b.close()
            return answers

    answer_a, answer_b = run(scenario())
    assert isinstance(answer_a, FrameResult)
    assert isinstance(answer_b, FrameDropped) and answer_b.reason == DropReason.STALE, answer_b
    assert "to reach the model" in answer_b.message


@pytest.mark.parametrize("limit", [-1.0, math.nan, math.inf])
def test_a_limit_that_is_negative_or_not_finite_is_refused(server, limit):
    async def scenario():
        async with Client(server.target) as client:
            await client.open(StreamOptions(max_staleness_s=limit))

    with pytest.raises(StreamError) as refused:
        run(scenario())
    assert refused.value.code == ErrorCode.INVALID_OPEN
    assert "max_staleness_s must be a finite number >= 0" in str(refused.value)


def test_a_client_refuses_a_server_that_does_not_apply_the_limit(start_server, monkeypatch):
    """A server older than the option ignores it and echoes none: the client closes the stream and says so rather
    than let old frames reach the model unnoticed."""
    original = SessionLimits.effective_options

    def older_server(self, options, card):
        return replace(original(self, options, card), max_staleness_s=0.0)

    monkeypatch.setattr(SessionLimits, "effective_options", older_server)
    server = start_server()

    async def scenario():
        async with Client(server.target) as client:
            await client.open(StreamOptions(max_staleness_s=0.5))

    with pytest.raises(StreamError) as refused:
        run(scenario())
    assert refused.value.code == ErrorCode.INVALID_OPEN
    assert "does not apply it" in str(refused.value) and "The stream was closed" in str(refused.value)
    wait_until(lambda: server.session_count() == 0)
