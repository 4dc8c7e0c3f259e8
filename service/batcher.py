"""Cross-stream micro-batching: frames of different streams that are due together share one model call.

A :class:`MicroBatcher` collects submitted jobs and dispatches a batch when it is full, when every stream
that could contribute has a job waiting, or when the oldest job has waited ``max_delay_s``. A batch never
holds two jobs with the same key (two frames of one stream): a second job of a key waits for the next
batch. Batches run one at a time on a dedicated executor, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Timed(Generic[R]):
    """A job's result with where its time went.

    Attributes:
        result: what the process function returned for the job.
        queue_s: from submission to the start of its batch.
        run_s: duration of the batch's process call.
        batch_size: jobs in the batch.
    """

    result: R
    queue_s: float
    run_s: float
    batch_size: int


@dataclass
class _Job(Generic[P, R]):
    key: Hashable
    payload: P
    future: asyncio.Future[Timed[R]]
    submitted: float


class BatcherClosed(RuntimeError):
    """The batcher was stopped before the job ran."""


class MicroBatcher(Generic[P, R]):
    """Groups jobs of distinct keys into batches for ``process``.

    Args:
        process: runs a batch (on ``executor``) and returns one result per payload, in order. If it raises,
            every job of the batch fails with that exception.
        executor: where ``process`` runs; use a single-thread executor so batches run one at a time.
        max_batch_size: most jobs per batch.
        max_delay_s: longest time the oldest job waits for the batch to fill.
        demand: how many keys could contribute right now (for example the number of open streams); a batch
            is dispatched at once when it holds that many. ``None``: only size and delay decide.
        on_batch: called with the keys of each batch as it is dispatched (metrics, test hooks).
    """

    def __init__(
        self,
        process: Callable[[Sequence[P]], Sequence[R]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        demand: Callable[[], int] | None = None,
        on_batch: Callable[[Sequence[Hashable]], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._process = process
        self._executor = executor
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._demand = demand
        self._on_batch = on_batch
        self._pending: list[_Job[P, R]] = []
        self._wakeup = asyncio.Event()
        self._running: list[_Job[P, R]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, key: Hashable, payload: P) -> Timed[R]:
        """Queue ``payload`` under ``key`` and wait for its result.

        Raises:
            BatcherClosed: the batcher is stopped.
            Exception: whatever ``process`` raised for the job's batch.
        """
        if self._closed:
            raise BatcherClosed("the model runner is stopped")
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="micro-batcher")
        future: asyncio.Future[Timed[R]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(key, payload, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    async def stop(self) -> None:
        """Stop dispatching; jobs not yet dispatched fail with :class:`BatcherClosed`."""
        self._closed = True
        jobs = [*self._running, *self._pending]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the model runner stopped before this frame ran"))
        self._pending.clear()

    async def _loop(self) -> None:
        while True:
            self._drop_abandoned()
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_fill()
            batch = self._take_batch()
            if batch:
                await self._run(batch)

    async def _wait_for_fill(self) -> None:
        deadline = self._pending[0].submitted + self._max_delay_s
        while not self._full():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _full(self) -> bool:
        keys = len({job.key for job in self._pending})
        if keys >= self._max_batch_size:
            return True
        return self._demand is not None and keys >= self._demand()

    def _take_batch(self) -> list[_Job[P, R]]:
        self._drop_abandoned()
        batch: list[_Job[P, R]] = []
        keys: set[Hashable] = set()
        rest: list[_Job[P, R]] = []
        for job in self._pending:
            if len(batch) < self._max_batch_size and job.key not in keys:
                keys.add(job.key)
                batch.append(job)
            else:
                rest.append(job)
        self._pending = rest
        return batch

    async def _run(self, batch: list[_Job[P, R]]) -> None:
        self._running = batch
        started = time.perf_counter()
        try:
            if self._on_batch is not None:
                self._on_batch([job.key for job in batch])
            payloads = [job.payload for job in batch]
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._process, payloads)
        except Exception as error:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        finally:
            self._running = []
        run_s = time.perf_counter() - started
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(Timed(result, started - job.submitted, run_s, len(batch)))

    def _drop_abandoned(self) -> None:
        if any(job.future.done() for job in self._pending):
            self._pending = [job for job in self._pending if not job.future.done()]
