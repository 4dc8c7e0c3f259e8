"""``MicroBatcher(split=...)``: a batch split into groups runs them in order on its thread, and each group is
answered as soon as its own call returns (a running stream's frame never waits for a new stream's first frame)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batcher import MicroBatcher

CALL_S = 0.2


def by_parity(payloads):
    """Even payloads first, then odd ones."""
    return [[i for i, p in enumerate(payloads) if p % 2 == 0], [i for i, p in enumerate(payloads) if p % 2]]


def test_each_group_is_answered_when_its_own_call_returns():
    """The even group runs first; its jobs are answered while the odd group's call is still running (held here
    until they are), and each job's queueing and run times are those of its own group's call."""
    calls: list[list[int]] = []
    durations: list[float] = []  # of each call, measured inside it
    odd_started, release_odd = threading.Event(), threading.Event()

    def process(payloads):
        started = time.perf_counter()
        calls.append(list(payloads))
        if len(calls) == 2:
            odd_started.set()
            release_odd.wait(10)  # held until the even group's jobs were answered (or the test gave up)
        time.sleep(CALL_S)
        durations.append(time.perf_counter() - started)
        return [p * 10 for p in payloads]

    async def scenario():
        batcher = MicroBatcher(
            process, [ThreadPoolExecutor(1)], max_batch_size=3, max_delay_s=1.0, split=by_parity
        )  # full at three jobs: one batch
        jobs = [asyncio.ensure_future(batcher.submit(key, value)) for key, value in (("a", 1), ("b", 2), ("c", 4))]
        try:
            # b and c come back while the odd group's call cannot have returned: it waits for release_odd.
            await asyncio.wait_for(asyncio.gather(jobs[1], jobs[2]), 10)
            odd_answered_early = jobs[0].done()
            odd_was_running = await asyncio.to_thread(odd_started.wait, 10)
        finally:
            release_odd.set()
        timed = await asyncio.wait_for(asyncio.gather(*jobs), 10)
        await batcher.stop()
        return timed, odd_answered_early, odd_was_running

    timed, odd_answered_early, odd_was_running = asyncio.run(scenario())
    assert calls == [[2, 4], [1]], "the even group runs first, in the batch's order, then the odd one"
    assert [t.result for t in timed] == [10, 20, 40]
    assert not odd_answered_early and odd_was_running, "a was answered with b and c, not after its own call"
    assert timed[1].batch_size == timed[2].batch_size == 2 and timed[0].batch_size == 1
    # The odd job's wait for the even group's call is queueing (a was submitted before b and c, so its queueing
    # exceeds theirs by at least that call); each job's run is its own group's call, without the other group's
    # (which takes at least CALL_S).
    even, odd = durations
    assert timed[0].queue_s - timed[1].queue_s >= even, (timed, durations)
    for t, own in ((timed[0], odd), (timed[1], even), (timed[2], even)):
        assert own <= t.run_s < own + 0.8 * CALL_S, (t, durations)


def test_a_failing_group_fails_only_its_own_jobs():
    def process(payloads):
        if any(p % 2 for p in payloads):
            raise RuntimeError("odd group failed")
        return payloads

    async def scenario():
        batcher = MicroBatcher(process, [ThreadPoolExecutor(1)], max_batch_size=2, max_delay_s=1.0, split=by_parity)
        outcomes = await asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), return_exceptions=True)
        await batcher.stop()
        return outcomes

    odd, even = asyncio.run(scenario())
    assert isinstance(odd, RuntimeError) and "odd group failed" in str(odd)
    assert even.result == 2


def test_a_split_that_loses_or_repeats_a_job_fails_the_batch_with_a_clear_error():
    async def scenario(split):
        batcher = MicroBatcher(lambda p: p, [ThreadPoolExecutor(1)], max_batch_size=2, max_delay_s=1.0, split=split)
        outcomes = await asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), return_exceptions=True)
        await batcher.stop()
        return outcomes

    for split in (lambda payloads: [[0]], lambda payloads: [[0, 1], [1]]):
        outcomes = asyncio.run(scenario(split))
        assert all(isinstance(o, ValueError) and "exactly one group" in str(o) for o in outcomes), outcomes


def test_a_lone_due_job_runs_straight_without_asking_the_split():
    seen: list[list[int]] = []

    def split(payloads):
        seen.append(list(payloads))
        return [list(range(len(payloads)))]

    async def scenario():
        batcher = MicroBatcher(
            lambda p: p, [ThreadPoolExecutor(1)], max_batch_size=4, max_delay_s=1.0, demand=lambda: 1, split=split
        )
        timed = await batcher.submit("a", 7)
        await batcher.stop()
        return timed

    assert asyncio.run(scenario()).result == 7
    assert seen == []


@pytest.mark.parametrize("groups", [[[1], [0]], [[0, 1]]])
def test_results_reach_their_own_submitters_whatever_the_group_order(groups):
    async def scenario():
        batcher = MicroBatcher(
            lambda p: [v * 2 for v in p],
            [ThreadPoolExecutor(1)],
            max_batch_size=2,
            max_delay_s=1.0,
            split=lambda payloads: groups,
        )
        timed = await asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 5))
        await batcher.stop()
        return [t.result for t in timed]

    assert asyncio.run(scenario()) == [2, 10]


def test_an_on_batch_hook_that_raises_fails_the_batch_instead_of_leaving_it_waiting():
    def broken_hook(keys):
        raise RuntimeError("hook failed")

    async def scenario():
        batcher = MicroBatcher(
            lambda p: p, [ThreadPoolExecutor(1)], max_batch_size=2, max_delay_s=1.0, on_batch=broken_hook
        )
        outcomes = await asyncio.wait_for(
            asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), return_exceptions=True), 5
        )
        await batcher.stop()
        return outcomes

    assert all(isinstance(o, RuntimeError) and "hook failed" in str(o) for o in asyncio.run(scenario()))


def test_a_group_with_the_wrong_number_of_results_fails_with_a_clear_error():
    async def scenario():
        batcher = MicroBatcher(
            lambda p: [], [ThreadPoolExecutor(1)], max_batch_size=2, max_delay_s=1.0, split=by_parity
        )
        outcomes = await asyncio.wait_for(
            asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), return_exceptions=True), 5
        )
        await batcher.stop()
        return outcomes

    for outcome in asyncio.run(scenario()):
        assert isinstance(outcome, RuntimeError) and "returned 0 results for 1 jobs" in str(outcome)


def test_an_answered_stream_runs_its_next_frame_on_a_free_instance_while_the_batch_goes_on():
    """Once its group is answered, a stream is no longer running: its next frame need not wait for the rest of
    its batch (a new stream's slow first frame) when another model instance is free.

    Three streams, two instances: "running" and "new" share a batch on one instance (even group first, then
    the slow odd one), "other" runs on the second instance and then ends. The slow call is held until the next
    frame of "running" is answered (or the test gives up), so the outcome does not depend on the machine's
    speed."""
    release_slow = threading.Event()
    open_streams = [3]

    def process(payloads):
        if any(p % 2 for p in payloads):  # odd payloads: the slow group
            release_slow.wait(10)
        return payloads

    async def scenario():
        batches: list[list[str]] = []
        batcher = MicroBatcher(
            process,
            [ThreadPoolExecutor(1), ThreadPoolExecutor(1)],
            max_batch_size=3,
            max_delay_s=1.0,
            demand=lambda: open_streams[0],
            on_batch=lambda keys: batches.append(list(keys)),
            split=by_parity,
        )
        fast = asyncio.ensure_future(batcher.submit("running", 2))
        slow = asyncio.ensure_future(batcher.submit("new", 1))
        try:
            other = await asyncio.wait_for(batcher.submit("other", 6), 15)
            fast_answer = await asyncio.wait_for(fast, 15)  # answered while the odd group of its batch runs
            open_streams[0] = 2  # "other" ended
            following = await asyncio.wait_for(batcher.submit("running", 4), 15)
            slow_still_held = not slow.done()
        finally:
            release_slow.set()
        await asyncio.wait_for(slow, 15)
        await batcher.stop()
        return batches, other, fast_answer, following, slow_still_held

    batches, other, fast, following, slow_still_held = asyncio.run(scenario())
    assert batches[:2] == [["running", "new"], ["other"]], "the scenario's batches were not formed as planned"
    assert other.result == 6 and fast.result == 2 and following.result == 4
    assert slow_still_held, "the next frame waited for the slow group of its stream's last batch"


def test_groups_whose_jobs_were_all_stopped_are_not_run():
    calls: list[list[int]] = []
    first_running = threading.Event()

    def process(payloads):
        calls.append(list(payloads))
        first_running.set()
        time.sleep(CALL_S)
        return payloads

    async def scenario():
        batcher = MicroBatcher(process, [ThreadPoolExecutor(1)], max_batch_size=2, max_delay_s=1.0, split=by_parity)
        jobs = asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, first_running.wait, 5)
        await batcher.stop()
        await jobs
        await asyncio.sleep(2 * CALL_S)  # time enough for a second group's call to start, were it run

    asyncio.run(scenario())
    assert calls == [[2]], calls
