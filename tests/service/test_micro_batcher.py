"""``MicroBatcher``: batches of distinct keys, size and delay limits, dispatch on full demand, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batcher import BatcherClosed, MicroBatcher


class Recorder:
    """A process function that records its batches and can be held closed."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when a batch starts running

    def __call__(self, payloads):
        self.entered.set()
        self.gate.wait(10)
        time.sleep(self.delay_s)
        self.batches.append([p[0] for p in payloads])
        return [f"{key}:{value}" for key, value in payloads]


def _instances(count: int) -> list[ThreadPoolExecutor]:
    return [ThreadPoolExecutor(1, thread_name_prefix=f"instance-{index}") for index in range(count)]


def _batcher(recorder, **kwargs):
    kwargs.setdefault("max_batch_size", 4)
    kwargs.setdefault("max_delay_s", 0.05)
    return MicroBatcher(recorder, [ThreadPoolExecutor(1)], **kwargs)


def test_jobs_of_different_keys_share_a_batch_and_results_return_to_their_submitter():
    recorder = Recorder()

    async def scenario():
        batcher = _batcher(recorder)
        results = await asyncio.gather(*(batcher.submit(k, (k, i)) for i, k in enumerate("abc")))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [r.result for r in results] == ["a:0", "b:1", "c:2"]
    assert recorder.batches == [["a", "b", "c"]]
    assert all(r.batch_size == 3 for r in results)


def test_two_jobs_of_one_key_never_share_a_batch():
    recorder = Recorder()

    async def scenario():
        batcher = _batcher(recorder)
        await asyncio.gather(
            batcher.submit("a", ("a", 0)), batcher.submit("a", ("a", 1)), batcher.submit("b", ("b", 0))
        )
        await batcher.stop()

    asyncio.run(scenario())
    assert recorder.batches == [["a", "b"], ["a"]]


def test_batches_respect_the_size_limit():
    recorder = Recorder()

    async def scenario():
        batcher = _batcher(recorder, max_batch_size=2)
        await asyncio.gather(*(batcher.submit(k, (k, 0)) for k in "abcde"))
        await batcher.stop()

    asyncio.run(scenario())
    assert [len(b) for b in recorder.batches] == [2, 2, 1]


def test_a_lone_job_waits_at_most_the_delay_and_not_at_all_when_demand_is_met():
    """Without demand a lone job waits out the delay for company; as the only stream it is dispatched at once
    (the delays and bounds leave a loaded machine most of a second of margin)."""
    recorder = Recorder()

    async def scenario(demand, max_delay_s):
        batcher = _batcher(recorder, max_delay_s=max_delay_s, demand=demand)
        result = await batcher.submit("a", ("a", 0))
        await batcher.stop()
        return result.queue_s

    assert 0.15 < asyncio.run(scenario(None, 0.2)) < 1.0  # waited for company that never came
    assert asyncio.run(scenario(lambda: 1, 2.0)) < 1.0  # the only stream: dispatch at once, not after the 2 s


def test_jobs_arriving_while_a_batch_runs_form_the_next_batch():
    """Jobs submitted while a's batch is held in the model call wait, and then run together."""
    recorder = Recorder()
    recorder.gate.clear()

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=0.0)
        first = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
        assert await asyncio.to_thread(recorder.entered.wait, 10), "a's batch did not start"
        rest = [asyncio.ensure_future(batcher.submit(k, (k, 0))) for k in "bcd"]
        await asyncio.sleep(0)  # they are queued
        recorder.gate.set()
        await asyncio.gather(first, *rest)
        await batcher.stop()

    asyncio.run(scenario())
    assert recorder.batches == [["a"], ["b", "c", "d"]]


def test_a_failing_batch_fails_its_jobs_only():
    calls = []

    def process(payloads):
        calls.append(len(payloads))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return payloads

    async def scenario():
        batcher = MicroBatcher(process, [ThreadPoolExecutor(1)], max_batch_size=4, max_delay_s=0.0)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit("a", 1)
        ok = await batcher.submit("b", 2)
        await batcher.stop()
        return ok.result

    assert asyncio.run(scenario()) == 2


def test_stop_fails_waiting_jobs_and_refuses_new_ones():
    recorder = Recorder()
    recorder.gate.clear()

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=0.0)
        running = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
        await asyncio.to_thread(recorder.entered.wait, 10)  # its batch is running, held at the gate
        waiting = asyncio.ensure_future(batcher.submit("a", ("a", 1)))
        await asyncio.sleep(0.01)
        await batcher.stop()
        recorder.gate.set()
        outcomes = await asyncio.gather(running, waiting, return_exceptions=True)
        with pytest.raises(BatcherClosed):
            await batcher.submit("b", ("b", 0))
        return outcomes

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, BatcherClosed) for o in outcomes)


def test_cancelled_jobs_are_skipped():
    recorder = Recorder()

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=0.05)
        doomed = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
        await asyncio.sleep(0)
        doomed.cancel()
        await batcher.submit("b", ("b", 0))
        await batcher.stop()

    asyncio.run(scenario())
    assert recorder.batches == [["b"]]


def test_free_instances_split_the_waiting_jobs_and_run_in_parallel():
    """With two model instances, eight waiting streams run as two batches of four at the same time: each call
    waits for the other at a barrier, which breaks (failing both) if they do not run at once."""
    active, peak = [0], [0]
    lock = threading.Lock()
    both_running = threading.Barrier(2, timeout=10)

    def process(payloads):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        both_running.wait()
        with lock:
            active[0] -= 1
        return payloads

    async def scenario():
        batcher = MicroBatcher(
            process, [ThreadPoolExecutor(1), ThreadPoolExecutor(1)], max_batch_size=16, max_delay_s=0.05
        )
        results = await asyncio.gather(*(batcher.submit(k, k) for k in "abcdefgh"))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert sorted(r.batch_size for r in results) == [4] * 8
    assert peak[0] == 2


@pytest.mark.parametrize(
    "settings",
    [{"max_batch_size": 4}, {"max_batch_size": 4, "demand": lambda: 1}, {"max_batch_size": 1}],
    ids=["dispatch-loop", "demand-met", "batches-of-one"],
)
def test_a_key_never_runs_in_two_concurrent_batches(settings):
    """The second job of key "a" is submitted while the first is held inside the model call, with a second
    instance free: it must wait for the first to finish (a stream's frames need their predecessor's state).
    With demand met (one open stream) or batches of one, the second job would be a lone due job, which runs
    directly rather than through the dispatch loop: that path must wait too."""
    entered, release = threading.Event(), threading.Event()
    running: list[str] = []
    overlaps: list[list[str]] = []
    lock = threading.Lock()

    def process(payloads):
        keys = [key for key, _ in payloads]
        with lock:
            if set(keys) & set(running):
                overlaps.append(keys)
            running.extend(keys)
        if payloads[0][1] == 0:  # the first job of "a" holds its instance until released
            entered.set()
            release.wait(10)
        with lock:
            for key in keys:
                running.remove(key)
        return [f"{key}:{value}" for key, value in payloads]

    async def scenario():
        batcher = MicroBatcher(process, [ThreadPoolExecutor(1), ThreadPoolExecutor(1)], max_delay_s=0.0, **settings)
        first = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        second = asyncio.ensure_future(batcher.submit("a", ("a", 1)))  # the free instance must not take it
        await asyncio.sleep(0.1)
        started_early = bool(overlaps) or second.done()
        release.set()
        results = await asyncio.gather(first, second)
        await batcher.stop()
        return started_early, results

    started_early, results = asyncio.run(scenario())
    assert not started_early and not overlaps
    assert [r.result for r in results] == ["a:0", "a:1"]


def test_a_lone_due_job_runs_directly_and_keeps_the_bookkeeping():
    recorder = Recorder()
    recorder.gate.clear()
    streams = {"count": 1}

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=1.0, demand=lambda: streams["count"])
        alone = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
        await asyncio.sleep(0.05)
        assert batcher._task is None, "a lone due job needs no dispatch loop"
        assert batcher.running_for_s() > 0, "the direct call counts as running (watchdog, instance limit)"
        streams["count"] = 2
        queued = asyncio.ensure_future(batcher.submit("b", ("b", 0)))  # the only instance is busy: it waits
        await asyncio.sleep(0.05)
        assert not queued.done()
        recorder.gate.set()
        first, second = await asyncio.gather(alone, queued)
        await batcher.stop()
        return first, second

    first, second = asyncio.run(scenario())
    assert (first.result, first.batch_size, second.result) == ("a:0", 1, "b:0")
    assert recorder.batches == [["a"], ["b"]]


def test_a_direct_call_fails_with_its_error_or_with_the_stop():
    def broken(payloads):
        raise RuntimeError("model exploded")

    recorder = Recorder()
    recorder.gate.clear()

    async def scenario():
        failing = MicroBatcher(broken, [ThreadPoolExecutor(1)], max_batch_size=4, max_delay_s=1.0, demand=lambda: 1)
        with pytest.raises(RuntimeError, match="model exploded"):
            await failing.submit("a", ("a", 0))
        await failing.stop()
        stopped = _batcher(recorder, max_delay_s=1.0, demand=lambda: 1)
        running = asyncio.ensure_future(stopped.submit("a", ("a", 0)))
        await asyncio.sleep(0.05)
        await stopped.stop()
        recorder.gate.set()
        return await asyncio.gather(running, return_exceptions=True)

    (outcome,) = asyncio.run(scenario())
    assert isinstance(outcome, BatcherClosed)


def _thread_recorder(before=lambda payloads: None):
    """A process function that records the name of the thread each batch runs on (and calls ``before``)."""
    threads: list[str] = []

    def process(payloads):
        threads.append(threading.current_thread().name)
        before(payloads)
        return payloads

    return process, threads


def _lone_stream_threads(instances: int, frames: int, **kwargs) -> list[str]:
    """Threads the frames of one stream ran on, submitted one after another."""
    process, threads = _thread_recorder(kwargs.pop("before", lambda payloads: None))

    async def scenario():
        batcher = MicroBatcher(
            process, _instances(instances), max_batch_size=4, max_delay_s=0.0, demand=lambda: 1, **kwargs
        )
        results = [await batcher.submit("a", index) for index in range(frames)]
        await batcher.stop()
        assert [timed.result for timed in results] == list(range(frames))

    asyncio.run(scenario())
    return threads


def test_a_lone_stream_always_runs_on_the_first_instance():
    threads = _lone_stream_threads(instances=3, frames=6)
    assert len(threads) == 6 and all(name.startswith("instance-0") for name in threads), threads


def test_a_lone_stream_runs_on_the_event_loop_thread_while_its_calls_are_short():
    delays = iter([0.0, 0.0, 0.6, 0.0, 0.0])  # margins wide enough for a loaded machine
    threads = _lone_stream_threads(
        instances=1, frames=5, inline_below_s=0.5, before=lambda payloads: time.sleep(next(delays))
    )
    loop_thread = threading.current_thread().name
    # First call: no duration known yet. Third: inline and slow, so the fourth goes back to the model thread.
    assert threads == ["instance-0_0", loop_thread, loop_thread, "instance-0_0", loop_thread]


def test_a_lone_job_stays_off_the_event_loop_while_another_batch_runs():
    """A lone, due and short job of b goes to the free second instance, not to the event-loop thread, while a's
    call runs (held until b's job is done) on the first."""
    gate, entered = threading.Event(), threading.Event()

    def hold(payloads):
        if payloads[0] == "held":
            entered.set()
            gate.wait(10)

    process, threads = _thread_recorder(hold)

    async def scenario():
        streams = {"count": 1}
        batcher = MicroBatcher(
            process,
            _instances(2),
            max_batch_size=4,
            max_delay_s=0.0,
            demand=lambda: streams["count"],
            inline_below_s=10.0,
        )
        await batcher.submit("b", "warm")  # b's lone call duration is now known (and short)
        streams["count"] = 2
        held = asyncio.ensure_future(batcher.submit("a", "held"))
        assert await asyncio.to_thread(entered.wait, 10), "a's call did not start"
        other = await batcher.submit("b", "other")  # alone, due and short, but "a" is running: not inline
        gate.set()
        await held
        await batcher.stop()
        return other.result

    assert asyncio.run(scenario()) == "other"
    assert threads[1:] == ["instance-0_0", "instance-1_0"]


def test_another_streams_short_calls_do_not_let_a_new_stream_run_on_the_event_loop_thread():
    """A stream's first lone call runs on a model thread whatever the previous stream's calls cost: a stream
    asking for large masks must not stall the event loop on the strength of a small stream's timings."""
    process, threads = _thread_recorder()

    async def scenario():
        batcher = MicroBatcher(
            process, _instances(1), max_batch_size=4, max_delay_s=0.0, demand=lambda: 1, inline_below_s=10.0
        )
        for key, payload in [("small", 0), ("small", 1), ("large", 0), ("large", 1), ("small", 2)]:
            await batcher.submit(key, payload)
        await batcher.stop()

    asyncio.run(scenario())
    loop_thread = threading.current_thread().name
    assert threads == ["instance-0_0", loop_thread, "instance-0_0", loop_thread, "instance-0_0"]


def test_settings_without_inline_never_run_on_the_event_loop_thread():
    assert _lone_stream_threads(instances=1, frames=4) == ["instance-0_0"] * 4
