"""Leaving a ``stream_frames`` loop early ends the stream promptly, whatever the frames iterator or the server is
doing at that moment."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from service_helpers import SlowEngine, make_video, wait_until

from service.client import FrameResult, stream_frames
from service.config import ServiceConfig
from service.engine import Engine, EngineOutput
from service.server import default_engine_factory


def _leave_after_first_answer(
    target: str, frames: Iterator[np.ndarray], before_leaving: Callable[[], None] = lambda: None, **kwargs: Any
) -> dict[str, object]:
    """Take the first answer, call ``before_leaving`` and leave the loop (``close()`` is what a ``break`` does to
    the generator); in a thread, so that a hang fails the test instead of holding the suite."""
    outcome: dict[str, object] = {}

    def body() -> None:
        generator = stream_frames(target, frames, **kwargs)
        outcome["first"] = next(generator)
        before_leaving()
        started = time.monotonic()
        generator.close()
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(60)
    outcome["finished"] = not thread.is_alive()
    return outcome


def test_leaving_while_the_frames_iterator_waits_for_a_frame_closes_the_stream_at_once(server):
    """A camera iterator blocked on its next frame held the loop's exit for as long as it blocked: the stream
    waited for that frame before closing."""
    clip = make_video(seed=91, frames=2)
    never = threading.Event()

    def camera() -> Iterator[np.ndarray]:
        yield from clip
        never.wait(120)  # the next frame does not come
        yield clip[0]

    try:
        outcome = _leave_after_first_answer(server.target, camera())
    finally:
        never.set()
    assert outcome["finished"], "leaving the loop hung"
    first = outcome["first"]
    assert isinstance(first, FrameResult) and first.frame_index == 0
    assert outcome["seconds"] < 5
    wait_until(lambda: server.session_count() == 0)
    assert server.metric("slotstream_streams_released_total", {"reason": "closed"}) == 1, "closed, not cancelled"


class HoldingEngine(SlowEngine):
    """A :class:`SlowEngine` whose ``step`` calls (a stream's later frames), once :attr:`armed` is set, set
    :attr:`entered` and wait (on the model thread) for :attr:`release_step`."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.release.set()
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.release_step = threading.Event()

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        if self.armed.is_set():
            self.entered.set()
            assert self.release_step.wait(60), "the held step was never released"
        return super().step(frames, state)


def test_leaving_while_the_server_is_slow_to_answer_cancels_the_call_after_the_close_timeout(start_server):
    """The answers in flight are waited for ``close_timeout_s`` only; then the call is cancelled."""
    engines: list[HoldingEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(HoldingEngine(default_engine_factory(config)))
        return engines[-1]

    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    (engine,) = engines
    engine.armed.set()  # after the warm-up: frame 0 runs (first_step), frame 1 stays in the model until released
    clip = make_video(seed=92, frames=4)

    def frame_1_in_the_model() -> None:
        assert engine.entered.wait(30), "frame 1 never reached the model"

    try:
        outcome = _leave_after_first_answer(
            server.target, iter(clip), frame_1_in_the_model, window=2, close_timeout_s=0.5
        )
    finally:
        engine.release_step.set()
    assert outcome["finished"], "leaving the loop hung"
    assert "seconds" in outcome, "the first answer or frame 1's model call never came"
    # Waited for the answers in flight (none comes while frame 1 is held), then cancelled: not before the timeout,
    # and well before the held call ends (never, here, but for the release above).
    assert 0.45 <= outcome["seconds"] < 10.0, outcome["seconds"]
    wait_until(lambda: server.session_count() == 0, timeout=15)
    assert server.metric("slotstream_streams_released_total", {"reason": "cancelled"}) == 1


def test_a_frames_iterator_that_never_returns_does_not_hold_up_the_interpreters_exit(server):
    """The frames are read on a daemon thread: a script that left the loop while its camera hung exits at once."""
    script = (
        "import sys, time\n"
        "import numpy as np\n"
        "from service.client import stream_frames\n"
        "def camera():\n"
        "    yield np.zeros((24, 32, 3), np.uint8)\n"
        "    time.sleep(120)  # a camera that hangs\n"
        "    yield np.zeros((24, 32, 3), np.uint8)\n"
        "for answer in stream_frames(sys.argv[1], camera()):\n"
        "    break\n"
        "print('left', answer.frame_index)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script, server.target], capture_output=True, text=True, timeout=100, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "left 0"), done.stderr
    assert time.monotonic() - started < 60, "the interpreter waited for the hung camera"


def test_a_script_that_ends_with_a_stream_still_referenced_exits_without_waiting_for_it(server):
    """A generator kept in a module variable is closed while the interpreter exits, when the client loop can no
    longer end the stream: the exit does not wait ``close_timeout_s`` (here 20 s) for it."""
    script = (
        "import itertools, numpy as np\n"
        "from service.client import stream_frames\n"
        "frame = np.zeros((64, 64, 3), np.uint8)\n"
        f"answers = stream_frames({server.target!r}, itertools.repeat(frame), close_timeout_s=20.0)\n"
        "next(answers)\n"
        "next(answers)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert elapsed < 15, f"the exit waited {elapsed:.1f} s for a stream nobody reads"
