"""The per-frame ``LatencyBreakdown``: every wait is in a stage, and the stages add up to ``total_ms``.

The model is a :class:`SlowEngine` (each call sleeps), so the waits are long next to the scheduling noise of a
2-core machine; the stages must still add up to the total within a few milliseconds of thread hops.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from service_helpers import SlowEngine, make_video, run, slow_factory, wait_until

from service.client import Client, FrameResult
from service.config import ServiceConfig
from service.engine import Engine, EngineOutput
from service.server import default_engine_factory
from service.types import LatencyBreakdown

MODEL_DELAY_S = 0.15
SLACK_MS = 40.0  # thread hops and event-loop turns between the stages, far below one model call


def unaccounted_ms(latency: LatencyBreakdown) -> float:
    stages = latency.decode_ms + latency.queue_ms + latency.inference_ms + latency.postprocess_ms
    return latency.total_ms - stages


class HoldingEngine(SlowEngine):
    """A :class:`SlowEngine` whose next ``first_step`` after :attr:`hold_next` is set waits (on the model thread)
    for :attr:`resume`, setting :attr:`held` when it starts to wait."""

    def __init__(self, inner: Engine, delay_s: float) -> None:
        super().__init__(inner, delay_s)
        self.release.set()
        self.hold_next = threading.Event()
        self.held = threading.Event()
        self.resume = threading.Event()

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        if self.hold_next.is_set():
            self.hold_next.clear()
            self.held.set()
            assert self.resume.wait(30), "the held call was never resumed"
        return super().first_step(frames)


def test_waiting_for_the_reply_window_is_queueing_not_decoding(start_server):
    """With a reply window of one frame, each frame sent ahead waits for the previous reply before it is decoded:
    that wait is queueing; decoding a 32x32 frame stays well under a millisecond's order."""
    factory, _ = slow_factory(delay_s=MODEL_DELAY_S)
    server = start_server(engine_factory=factory, max_buffered_reply_bytes=1)  # one unanswered reply at a time
    frames = make_video(seed=40, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in frames:
                await stream.send(frame)
            results = [await stream.receive() for _ in frames]
            await stream.close()
            return results

    results = run(scenario(), timeout=60)
    assert all(isinstance(result, FrameResult) for result in results)
    for result in results:
        assert result.latency.decode_ms < SLACK_MS, result.latency
        assert abs(unaccounted_ms(result.latency)) < SLACK_MS, result.latency
    assert all(r.latency.queue_ms > 0.8 * MODEL_DELAY_S * 1e3 for r in results[1:]), "each waited for a reply"


def test_a_batch_of_a_first_and_a_later_frame_answers_the_later_one_first(start_server):
    """A batch holding a new stream's first frame and another stream's later frame runs two model calls in turn:
    ``step`` first, answered as soon as it is done, so the running stream never waits for the newcomer's
    ``first_step``; the first frame's wait for the ``step`` call is queueing, not lost from the breakdown."""
    engines: list[HoldingEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(HoldingEngine(default_engine_factory(config), MODEL_DELAY_S))
        return engines[-1]

    server = start_server(engine_factory=factory)
    server.server.batch_log = []
    clips = [make_video(seed=41 + i, frames=2) for i in range(3)]

    def queued() -> int:
        runner = server.server._runner
        assert runner is not None
        return int(server.on_loop(lambda: len(runner._batcher._pending)))

    async def scenario():
        async with Client(server.target) as client:
            ongoing = await client.open()
            await ongoing.process(clips[0][0])  # its next frame is a later frame (step)
            busy, fresh = await client.open(), await client.open()
            engines[0].hold_next.set()
            await busy.send(clips[1][0])  # occupies the model, held until both frames below are queued ...
            assert await asyncio.to_thread(engines[0].held.wait, 10), "the busy frame's call did not start"
            await fresh.send(clips[2][0])  # ... while a first frame and a later frame queue for one batch
            await ongoing.send(clips[0][1])
            await asyncio.to_thread(wait_until, lambda: queued() == 2)
            engines[0].resume.set()
            results = [await stream.receive() for stream in (busy, fresh, ongoing)]
            for stream in (ongoing, busy, fresh):
                await stream.close()
            return results

    results = run(scenario(), timeout=60)
    batches = server.on_loop(lambda: list(server.server.batch_log))
    assert any(len(batch) == 2 for batch in batches), f"the first and later frame were not batched: {batches}"
    first, later = results[1], results[2]
    assert isinstance(first, FrameResult) and isinstance(later, FrameResult)
    assert later.latency.batch_size == first.latency.batch_size == 1  # each its own call
    assert later.completed_time_ns < first.completed_time_ns, "the later frame was not answered first"
    # Both waited for the busy call (the first frame, sent first, a little longer); then the first frame waited for
    # the step call too, while the later frame did not wait for the first_step call (it would be the other way).
    assert first.latency.queue_ms - later.latency.queue_ms > 0.8 * MODEL_DELAY_S * 1e3, (first.latency, later.latency)
    assert later.latency.total_ms < first.latency.total_ms - 0.8 * MODEL_DELAY_S * 1e3
    for result in results:
        assert abs(unaccounted_ms(result.latency)) < SLACK_MS, result.latency


def test_an_idle_open_stream_does_not_hold_back_another_streams_frames(start_server):
    """A batch waits (up to --max-queue-delay-ms) only for streams with a frame in flight: an open stream that
    sends nothing made every frame of the active one wait the whole delay (and lose the inline model call)."""
    server = start_server(max_queue_delay_ms=400.0, max_batch_size=4)
    frames = make_video(seed=41, frames=4)

    async def scenario() -> list[float]:
        async with Client(server.target) as client:
            idle = await client.open()
            await idle.process(frames[0])  # open and answered: attached, nothing in flight
            active = await client.open()
            answers = [await active.process(frame) for frame in frames]
            assert all(isinstance(answer, FrameResult) for answer in answers)
            return [answer.latency.queue_ms for answer in answers if isinstance(answer, FrameResult)]

    queued = run(scenario())
    assert max(queued) < 200.0, f"frames waited {queued} ms for the idle stream"
