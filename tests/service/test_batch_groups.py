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
    calls: list[list[int]] = []
    second_started = threading.Event()

    def process(payloads):
        if calls:
            second_started.set()
        calls.append(list(payloads))
        time.sleep(CALL_S)
        return [p * 10 for p in payloads]

    async def scenario():
        batcher = MicroBatcher(
            process, [ThreadPoolExecutor(1)], max_batch_size=3, max_delay_s=1.0, split=by_parity
        )  # full at three jobs: one batch
        answered: dict[str, tuple[float, bool]] = {}

        async def submit(key, value):
            timed = await batcher.submit(key, value)
            answered[key] = (time.perf_counter(), second_started.is_set())
            return timed

        timed = await asyncio.gather(submit("a", 1), submit("b", 2), submit("c", 4))
        await batcher.stop()
        return timed, answered

    timed, answered = asyncio.run(scenario())
    assert calls == [[2, 4], [1]], "the even group runs first, in the batch's order, then the odd one"
    assert [t.result for t in timed] == [10, 20, 40]
    # b and c were answered while the odd group's call was still running, a only after it.
    assert answered["a"][0] - max(answered["b"][0], answered["c"][0]) > 0.8 * CALL_S
    assert timed[1].batch_size == timed[2].batch_size == 2 and timed[0].batch_size == 1
    # The odd job's wait for the even group's call is queueing; each job's run is its own group's call.
    assert timed[0].queue_s > 0.8 * CALL_S > timed[1].queue_s
    assert all(0.8 * CALL_S < t.run_s < 3 * CALL_S for t in timed)


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
