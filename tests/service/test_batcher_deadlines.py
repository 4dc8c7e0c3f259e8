"""``MicroBatcher`` deadlines: a job whose deadline passes while it waits is not run; one that is dispatched runs."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_micro_batcher import Recorder, _batcher

from service.batcher import DeadlinePassed


def test_a_job_past_its_deadline_is_refused_at_submission():
    recorder = Recorder()

    async def scenario():
        batcher = _batcher(recorder)
        try:
            with pytest.raises(DeadlinePassed):
                await batcher.submit("a", ("a", 0), deadline=time.perf_counter() - 0.001)
            return await batcher.submit("b", ("b", 0), deadline=time.perf_counter() + 60)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).result == "b:0"
    assert recorder.batches == [["b"]], "the overdue job reached the model"


def test_a_job_whose_deadline_passes_behind_a_running_batch_is_not_run():
    """One model instance is busy with ``a`` for 0.3 s; ``b`` (deadline 0.1 s) and ``c`` (none) wait for it. When
    the next batch forms, ``b`` is overdue: it fails with DeadlinePassed and only ``c`` runs."""
    recorder = Recorder(delay_s=0.3)

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=0.0)
        try:
            first = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
            await asyncio.to_thread(recorder.entered.wait, 5)  # ``a`` holds the only instance
            late = asyncio.ensure_future(batcher.submit("b", ("b", 0), deadline=time.perf_counter() + 0.1))
            other = asyncio.ensure_future(batcher.submit("c", ("c", 0)))
            await first
            with pytest.raises(DeadlinePassed):
                await late
            return await other
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).result == "c:0"
    assert recorder.batches == [["a"], ["c"]]


def test_a_dispatched_job_runs_even_when_its_deadline_passes_during_the_call():
    """The deadline (0.3 s) leaves a loaded machine time to dispatch the job; the call (0.6 s) outlasts it."""
    recorder = Recorder(delay_s=0.6)

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=0.0)
        try:
            return await batcher.submit("a", ("a", 0), deadline=time.perf_counter() + 0.3)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).result == "a:0"


def test_a_job_of_a_later_group_whose_deadline_passes_during_the_earlier_groups_call_is_not_run():
    """A batch of ``a`` and ``b`` split into two groups run one after the other, 0.3 s each: ``b`` (deadline 0.1 s)
    is past it when its group's call would start, so only ``a`` runs."""
    recorder = Recorder(delay_s=0.3)

    async def scenario():
        batcher = _batcher(recorder, max_delay_s=0.05, split=lambda payloads: [[0], [1]])
        try:
            first = asyncio.ensure_future(batcher.submit("a", ("a", 0)))
            late = asyncio.ensure_future(batcher.submit("b", ("b", 0), deadline=time.perf_counter() + 0.1))
            with pytest.raises(DeadlinePassed):
                await late
            return await first
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).result == "a:0"
    assert recorder.batches == [["a"]]
