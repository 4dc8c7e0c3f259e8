"""The per-frame ``LatencyBreakdown``: every wait is in a stage, and the stages add up to ``total_ms``.

The first two tests run the server on a :class:`ModelClock`: ``time.perf_counter`` of the modules that time the
stages (``service.connection``, ``service.batcher``, ``service.runner``) reads a clock that moves only while the
model "runs" (a :class:`ClockedEngine` advances it instead of sleeping). Thread hops and event-loop turns, which a
loaded machine can stretch to hundreds of milliseconds, then take no time at all, so the stages must add up to the
total exactly, and each wait is a whole number of model calls. A model call first waits for what a slow model lets
happen before its time has passed (the next frame read, the answers to the calls before it), so the order of
events is that of a slow model on any machine.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image
from service_helpers import ServerThread, SlowEngine, make_video, run, wait_until

import service.batcher
import service.connection
import service.decode_scheduling
import service.frame_processing
import service.runner
from service.client import Client, FrameResult, Output, StreamOptions
from service.config import ServiceConfig
from service.connection import StreamConnection
from service.engine import Engine, EngineOutput
from service.server import default_engine_factory
from service.types import FrameRequest, LatencyBreakdown

MODEL_DELAY_S = 0.15
ROUNDING_MS = 1e-6  # float rounding of differences of clock readings: on a ModelClock the stages add up exactly
#: The modules whose ``time.perf_counter`` readings make up a frame's LatencyBreakdown.
TIMED_MODULES = (
    service.connection,
    service.decode_scheduling,
    service.frame_processing,
    service.batcher,
    service.runner,
)


def unaccounted_ms(latency: LatencyBreakdown) -> float:
    stages = latency.decode_ms + latency.queue_ms + latency.inference_ms + latency.postprocess_ms
    return latency.total_ms - stages


class ModelClock:
    """A ``time`` module stand-in whose ``perf_counter`` moves only by :meth:`advance`; everything else (``time_ns``
    for the results' wall-clock stamps) is the real module's."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def perf_counter(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def model_clock(monkeypatch: pytest.MonkeyPatch) -> ModelClock:
    """The stage timers of :data:`TIMED_MODULES` read a :class:`ModelClock` for the test (start servers after)."""
    clock = ModelClock()
    for module in TIMED_MODULES:
        monkeypatch.setattr(module, "time", clock)  # raising: a module that stops importing time must be revisited
    return clock


class ClockedEngine(SlowEngine):
    """A :class:`SlowEngine` whose calls advance :attr:`clock` by :attr:`delay_s` instead of sleeping."""

    def __init__(self, inner: Engine, delay_s: float, clock: ModelClock) -> None:
        super().__init__(inner, delay_s)
        self.release.set()
        self.clock = clock
        #: Called with the batch size on the model thread before the clock moves: what the call waits for.
        self.before_call: Callable[[int], None] = lambda batch_size: None

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        self.before_call(len(frames))
        self.clock.advance(self.delay_s)
        return self.inner.first_step(frames)

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        self.before_call(len(frames))
        self.clock.advance(self.delay_s)
        return self.inner.step(frames, state)


class HoldingEngine(ClockedEngine):
    """A :class:`ClockedEngine` whose next ``first_step`` after :attr:`hold_next` is set waits (on the model thread,
    the clock standing still) for :attr:`resume`, setting :attr:`held` when it starts to wait."""

    def __init__(self, inner: Engine, delay_s: float, clock: ModelClock) -> None:
        super().__init__(inner, delay_s, clock)
        self.hold_next = threading.Event()
        self.held = threading.Event()
        self.resume = threading.Event()

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        if self.hold_next.is_set():
            self.hold_next.clear()
            self.held.set()
            assert self.resume.wait(30), "the held call was never resumed"
        return super().first_step(frames)


def frames_answered(server: ServerThread) -> float:
    """The frames the server answered with a result (the last thing it does for a frame, after its latency)."""
    return sum(
        sample.value
        for metric in server.server.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "slotstream_frames_total" and sample.labels["outcome"] == "result"
    )


def engine_factory(make: Callable[[Engine], Engine]) -> tuple[Callable[[ServiceConfig], Engine], list[Engine]]:
    """A server's engine factory wrapping the configured engine with ``make``, and the list of engines it made."""
    engines: list[Engine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(make(default_engine_factory(config)))
        return engines[-1]

    return factory, engines


class FramesRead:
    """Counts the frames the server's stream connections have read, at the moment each is stamped received."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._count = 0
        self._changed = threading.Condition()
        accept = StreamConnection._accept

        async def accept_counting(connection: StreamConnection, request: FrameRequest) -> None:
            # _accept stamps the frame received before it first waits, in this step: count it after this step.
            asyncio.get_running_loop().call_soon(self._add_one)
            await accept(connection, request)

        monkeypatch.setattr(StreamConnection, "_accept", accept_counting)

    def _add_one(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait_for(self, frames: int, timeout_s: float = 30.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._count >= frames, timeout_s), f"{frames} frames never read"


def test_waiting_for_the_reply_window_is_queueing_not_decoding(start_server, model_clock, monkeypatch):
    """With a reply window of one frame, each frame sent ahead waits for the previous reply before it is decoded:
    that wait is queueing (one model call); decoding takes no time on the model clock, and nothing is left out."""
    frames = make_video(seed=40, frames=4)
    read = FramesRead(monkeypatch)
    factory, engines = engine_factory(lambda inner: ClockedEngine(inner, MODEL_DELAY_S, model_clock))
    # No wait for a batch to fill: the model clock stands still while the batcher would wait for it to pass.
    server = start_server(engine_factory=factory, max_buffered_reply_bytes=1, max_queue_delay_ms=0.0)
    calls = itertools.count()

    def next_frame_read(batch_size: int) -> None:
        """Call n (frame n) runs once frame n + 1 waits at the server for the reply window, as it does when the
        model is slow: on a frozen clock it could otherwise be read only after the call's time had passed."""
        read.wait_for(min(next(calls) + 2, len(frames)))

    for engine in engines:
        assert isinstance(engine, ClockedEngine)
        engine.before_call = next_frame_read  # armed after the warm-up

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
    model_ms = MODEL_DELAY_S * 1e3
    for result in results:
        assert result.latency.decode_ms == pytest.approx(0.0, abs=ROUNDING_MS), result.latency
        assert result.latency.inference_ms == pytest.approx(model_ms), result.latency
        assert unaccounted_ms(result.latency) == pytest.approx(0.0, abs=ROUNDING_MS), result.latency
    assert results[0].latency.queue_ms == pytest.approx(0.0, abs=ROUNDING_MS), results[0].latency
    for result in results[1:]:  # each waited for the reply to the frame before: that frame's model call
        assert result.latency.queue_ms == pytest.approx(model_ms), result.latency


def test_a_batch_of_a_first_and_a_later_frame_answers_the_later_one_first(start_server, model_clock):
    """A batch holding a new stream's first frame and another stream's later frame runs two model calls in turn:
    ``step`` first, answered as soon as it is done, so the running stream never waits for the newcomer's
    ``first_step``; the first frame's wait for the ``step`` call is queueing, not lost from the breakdown."""
    factory, engines = engine_factory(lambda inner: HoldingEngine(inner, MODEL_DELAY_S, model_clock))
    # No wait for a batch to fill: the model clock stands still while the batcher would wait for it to pass.
    server = start_server(engine_factory=factory, max_queue_delay_ms=0.0)
    server.server.batch_log = []
    clips = [make_video(seed=41 + i, frames=2) for i in range(3)]
    holding = engines[0]
    assert isinstance(holding, HoldingEngine)
    called = 0

    def after_earlier_answers(batch_size: int) -> None:
        """A call runs once the frames of the calls before it are answered, as they are when the model is slow:
        on a frozen clock the next call could otherwise pass its time before an answer's total is taken."""
        nonlocal called
        wait_until(lambda: frames_answered(server) >= called, timeout=30)
        called += batch_size

    holding.before_call = after_earlier_answers  # armed after the warm-up

    def queued() -> int:
        runner = server.server._runner
        assert runner is not None
        return int(server.on_loop(lambda: len(runner._batcher._pending)))

    async def scenario():
        async with Client(server.target) as client:
            ongoing = await client.open()
            await ongoing.process(clips[0][0])  # its next frame is a later frame (step)
            busy, fresh = await client.open(), await client.open()
            holding.hold_next.set()
            await busy.send(clips[1][0])  # occupies the model, held until both frames below are queued ...
            assert await asyncio.to_thread(holding.held.wait, 10), "the busy frame's call did not start"
            await fresh.send(clips[2][0])  # ... while a first frame and a later frame queue for one batch
            await ongoing.send(clips[0][1])
            await asyncio.to_thread(wait_until, lambda: queued() == 2)
            holding.resume.set()
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
    # Both waited for the busy call; then the first frame waited for the step call too, while the later frame did
    # not wait for the first_step call (it would be the other way).
    model_ms = MODEL_DELAY_S * 1e3
    assert later.latency.queue_ms == pytest.approx(model_ms), later.latency
    assert first.latency.queue_ms == pytest.approx(2 * model_ms), first.latency
    assert later.latency.total_ms == pytest.approx(2 * model_ms), later.latency
    assert first.latency.total_ms == pytest.approx(3 * model_ms), first.latency
    for result in results:
        assert unaccounted_ms(result.latency) == pytest.approx(0.0, abs=ROUNDING_MS), result.latency


@pytest.mark.parametrize("stage", ["decode", "postprocess"])
def test_waiting_for_a_busy_decode_thread_is_queueing_not_work(start_server, model_clock, stage):
    """The decode pool's one thread is busy when a frame's image (a JPEG over the inline limit) or its own large
    masks (above 512 x 512) are handed to it: that wait (MODEL_DELAY_S on the model clock) is queueing; the work itself
    takes no time on the model clock, so decode_ms or postprocess_ms is 0 and nothing is left out."""
    server = start_server(decode_threads=1, max_queue_delay_ms=0.0)
    pool = server.server._decode_executor
    busy, release = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        assert release.wait(30), "the busy decode thread was never released"
        model_clock.advance(MODEL_DELAY_S)

    holder = pool.submit(occupy)
    assert busy.wait(10), "the decode thread did not take the job"
    if stage == "decode":
        frame = np.random.default_rng(42).integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
        image: Any = buffer.getvalue()
        assert len(image) > service.decode_scheduling.INLINE_ENCODED_BYTES  # decoded on the pool
        options = StreamOptions(outputs=frozenset({Output.SEGMENTATION}))
    else:
        image = make_video(seed=43, frames=1)[0]  # small and raw: decoded inline
        options = StreamOptions(outputs=frozenset({Output.SEGMENTATION}), mask_size=(600, 600))

    async def scenario() -> FrameResult:
        async with Client(server.target) as client:
            stream = await client.open(options)
            await stream.send(image)
            # the frame's job waits behind the busy one before the clock moves
            await asyncio.to_thread(wait_until, lambda: pool._work_queue.qsize() == 1)
            release.set()
            result = await stream.receive()
            await stream.close()
            assert isinstance(result, FrameResult)
            return result

    latency = run(scenario(), timeout=60).latency
    holder.result(10)
    waited_ms = MODEL_DELAY_S * 1e3
    assert latency.queue_ms == pytest.approx(waited_ms), latency
    assert getattr(latency, f"{stage}_ms") == pytest.approx(0.0, abs=ROUNDING_MS), latency
    assert latency.total_ms == pytest.approx(waited_ms), latency
    assert unaccounted_ms(latency) == pytest.approx(0.0, abs=ROUNDING_MS), latency


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
