"""Cross-stream micro-batching: frames of different streams that are due together share one model call.

A :class:`MicroBatcher` collects submitted jobs and dispatches a batch when it is full, when every stream
that could contribute has a job waiting, or when the oldest job has waited ``max_delay_s``. A batch never
holds two jobs with the same key (two frames of one stream): a second job of a key waits for the next
batch. A job that would be dispatched alone at once (one stream, or the only one with a frame due) skips the
dispatch loop and runs straight from :meth:`MicroBatcher.submit`, saving two event-loop hops on the
latency-critical path.

A batch may be split into groups that ``process`` runs one after the other on the batch's thread (first and
later frames need different model calls); each group's jobs are answered as soon as their group is done, not
when the whole batch is.

Batches run off the event loop, each on one of the given executors (model instances), at most one batch per
executor, on the lowest-numbered free one, so a lone stream always runs on the same thread with warm caches;
when several instances are free, the waiting jobs are split evenly between them. A model thread hands its
result back with one ``call_soon_threadsafe`` (:func:`_call_in_thread`), not through ``run_in_executor``'s
chain of futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Timed(Generic[R]):
    """A job's result with where its time went.

    Attributes:
        result: what the process function returned for the job.
        queue_s: from submission to the start of its process call (for a batch split into groups, the start of
            its group's call, so the wait for the groups before it is queueing).
        run_s: duration of that process call.
        batch_size: jobs in that call.
    """

    result: R
    queue_s: float
    run_s: float
    batch_size: int


@dataclass
class _Running(Generic[P, R]):
    """A dispatched batch: its jobs, the model instance it runs on and when it was dispatched."""

    jobs: list[_Job[P, R]]
    instance: int
    dispatched: float


@dataclass
class _Job(Generic[P, R]):
    key: Hashable
    payload: P
    future: asyncio.Future[Timed[R]]
    submitted: float
    deadline: float | None = None  # ``perf_counter`` time after which the job is not to start

    def overdue(self, now: float) -> bool:
        """Whether the job's deadline has passed at ``now`` (never without one)."""
        return self.deadline is not None and self.deadline <= now


@dataclass(frozen=True)
class _ThreadCall(Generic[R]):
    """A call running on an executor thread.

    Attributes:
        result: resolves with the call's return value or exception; cancelling it (a cancelled caller) does not
            stop the call.
        finished: resolves when the thread is done, whatever happened to ``result``; cancelling it cancels
            ``result`` too.
    """

    result: asyncio.Future[R]
    finished: asyncio.Future[None]


def _call_in_thread(executor: Executor, function: Callable[[Any], R], argument: Any) -> _ThreadCall[R]:
    """Run ``function(argument)`` on ``executor``; the thread wakes the event loop once, with the outcome."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[R] = loop.create_future()
    finished: asyncio.Future[None] = loop.create_future()
    finished.add_done_callback(lambda done: result.cancel() if done.cancelled() else None)

    def settle(outcome: Callable[[asyncio.Future[R]], None]) -> None:  # on the event loop
        if not finished.done():
            finished.set_result(None)
        if not result.done():
            outcome(result)

    def work() -> None:  # on the executor thread
        try:
            value = function(argument)
        except BaseException as error:
            failure = error  # ``error`` is unbound once the except clause ends
            loop.call_soon_threadsafe(settle, lambda future: future.set_exception(failure))
            return
        loop.call_soon_threadsafe(settle, lambda future: future.set_result(value))

    executor.submit(work)
    return _ThreadCall(result, finished)


class BatcherClosed(RuntimeError):
    """The batcher was stopped before the job ran."""


class DeadlinePassed(RuntimeError):
    """The job's deadline passed before it was given to the model; it did not run."""


class MicroBatcher(Generic[P, R]):
    """Groups jobs of distinct keys into batches for ``process``.

    Args:
        process: runs a batch (on one of ``executors``) and returns one result per payload, in order. If it
            raises, every job of the batch fails with that exception.
        executors: one per model instance (one thread each); as many batches run at once.
        max_batch_size: most jobs per batch.
        max_delay_s: longest time the oldest job waits for the batch to fill.
        demand: how many keys could contribute right now (for example the number of open streams); a batch
            is dispatched at once when it holds all of them that are not already running. ``None``: only
            size and delay decide.
        on_batch: called with the keys of each batch as it is dispatched (metrics, test hooks).
        split: divides a batch's payloads into groups (lists of indices, each payload in exactly one; empty
            groups are skipped) that ``process`` runs one after the other, in the given order; each group's jobs
            get their results as soon as its call returns, and a group whose call raises fails only its own jobs.
            ``None``: the batch is one group. A lone job runs alone whatever ``split`` says.
        inline_below_s: a lone due job runs on the event loop's thread, without a thread hand-off, when no other
            batch is running and the previous lone job's call was of the same key and took less than this (0:
            never). The loop serves nothing else meanwhile, so this only suits calls far shorter than any
            deadline the server keeps (health probes); a call that turns out slower sends the next one back to a
            model thread. Another key's timing says nothing about this key's cost (streams differ in output
            size), so a key's first lone call always runs on a model thread.

    Raises:
        ValueError: ``max_batch_size`` is below 1 or ``executors`` is empty.
    """

    def __init__(
        self,
        process: Callable[[Sequence[P]], Sequence[R]],
        executors: Sequence[Executor],
        *,
        max_batch_size: int,
        max_delay_s: float,
        demand: Callable[[], int] | None = None,
        on_batch: Callable[[Sequence[Hashable]], None] | None = None,
        inline_below_s: float = 0.0,
        split: Callable[[Sequence[P]], Sequence[Sequence[int]]] | None = None,
    ) -> None:
        if max_batch_size < 1 or not executors:
            raise ValueError(f"need max_batch_size >= 1 and at least one executor: {max_batch_size}, {executors}")
        self._process = process
        self._executors = list(executors)
        self._free = list(range(len(executors)))  # a heap of idle instance numbers
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._demand = demand
        self._on_batch = on_batch
        self._inline_below_s = inline_below_s
        self._split = split
        self._last_lone_run: tuple[Hashable, float] | None = None  # key and duration of the latest lone call
        self._pending: list[_Job[P, R]] = []
        self._running: dict[asyncio.Future[Any], _Running[P, R]] = {}  # batch task or direct call -> batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, key: Hashable, payload: P, deadline: float | None = None) -> Timed[R]:
        """Queue ``payload`` under ``key`` and wait for its result.

        ``deadline`` (a :func:`time.perf_counter` time; ``None``: none) is checked when the job is submitted, when
        a batch is formed and when its group's call starts (a batch split into groups runs them one after the
        other): a job found past its deadline then is not run. A job whose call has started runs whatever the time.

        Raises:
            BatcherClosed: the batcher is stopped.
            DeadlinePassed: ``deadline`` passed before the job was dispatched.
            Exception: whatever ``process`` raised for the job's batch.
        """
        if self._closed:
            raise BatcherClosed("the model runner is stopped")
        now = time.perf_counter()
        if deadline is not None and deadline <= now:
            raise DeadlinePassed("the deadline passed before the job was submitted")
        job = _Job(key, payload, asyncio.get_running_loop().create_future(), now, deadline)
        if self._alone_and_due(key):
            return await self._run_direct(job)
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="micro-batcher")
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    def _alone_and_due(self, key: Hashable) -> bool:
        """True when a job of ``key`` would form a batch of one that is dispatched at once: nothing is waiting,
        a model instance is free, the key is not running, and no other stream could join (demand is met)."""
        if self._pending or not self._free:
            return False
        running = self._running_jobs()
        if any(job.key == key for job in running):
            return False
        return self._max_batch_size == 1 or (self._demand is not None and self._demand() - len(running) <= 1)

    async def _run_direct(self, job: _Job[P, R]) -> Timed[R]:
        """Run a batch of one straight from :meth:`submit`, without the dispatch loop and batch task hops
        (one stream alone: the latency case). Bookkeeping is that of a batch task."""
        started = time.perf_counter()
        job.future.cancel()  # the answer comes back through this coroutine; stop() must not fill the future
        if self._on_batch is not None:
            self._on_batch([job.key])
        if self._inline_ok(job.key):
            results = self._process([job.payload])
        else:
            instance = heapq.heappop(self._free)
            call = _call_in_thread(self._executors[instance], self._process, [job.payload])
            self._track(call.finished, [job], instance)
            try:
                results = await call.result  # a cancelled submitter cancels only this, not the tracked call
            except asyncio.CancelledError:
                if self._closed and call.finished.cancelled():
                    raise BatcherClosed("the model runner stopped before this frame ran") from None
                raise
        run_s = time.perf_counter() - started
        self._last_lone_run = (job.key, run_s)
        return Timed(results[0], started - job.submitted, run_s, 1)

    def _inline_ok(self, key: Hashable) -> bool:
        """True when a lone job of ``key`` may run on the event loop's thread (see ``inline_below_s``)."""
        last = self._last_lone_run
        return not self._running and last is not None and last[0] == key and last[1] < self._inline_below_s

    async def stop(self) -> None:
        """Stop dispatching; jobs not yet finished fail with :class:`BatcherClosed`."""
        self._closed = True
        jobs = self._running_jobs() + self._pending
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the model runner stopped before this frame ran"))
        self._pending.clear()

    async def _loop(self) -> None:
        while True:
            self._drop_abandoned()
            if not self._pending or not self._free:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_fill()
            batch = self._take_batch()
            if not batch:  # every waiting key is running already: wait for a batch to finish
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            instance = heapq.heappop(self._free)
            task = asyncio.create_task(self._run(batch, self._executors[instance]), name="micro-batch")
            self._track(task, batch, instance)

    def _track(self, running: asyncio.Future[Any], batch: list[_Job[P, R]], instance: int) -> None:
        self._running[running] = _Running(batch, instance, time.perf_counter())
        running.add_done_callback(self._finished)

    def running_for_s(self) -> float:
        """Seconds since the oldest batch still running was dispatched (0 when none runs): how long the
        model has been busy with one call, which a watchdog compares with a stall timeout."""
        if not self._running:
            return 0.0
        return time.perf_counter() - min(batch.dispatched for batch in self._running.values())

    def _running_jobs(self) -> list[_Job[P, R]]:
        return [job for batch in self._running.values() for job in batch.jobs]

    def _finished(self, task: asyncio.Future[Any]) -> None:
        heapq.heappush(self._free, self._running.pop(task).instance)
        self._wakeup.set()

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
        if self._demand is None:
            return False
        running = len(self._running_jobs())
        return keys >= self._demand() - running

    def _take_batch(self) -> list[_Job[P, R]]:
        self._expire_overdue()
        self._drop_abandoned()
        keys_waiting = len({job.key for job in self._pending})
        free = max(1, len(self._free))
        limit = min(self._max_batch_size, max(1, math.ceil(keys_waiting / free)))
        batch: list[_Job[P, R]] = []
        keys: set[Hashable] = {job.key for job in self._running_jobs()}
        rest: list[_Job[P, R]] = []
        for job in self._pending:
            if len(batch) < limit and job.key not in keys:
                keys.add(job.key)
                batch.append(job)
            else:
                rest.append(job)
        self._pending = rest
        return batch

    async def _run(self, batch: list[_Job[P, R]], executor: Executor) -> None:
        payloads = [job.payload for job in batch]
        try:
            if self._on_batch is not None:
                self._on_batch([job.key for job in batch])
            groups = self._groups(payloads)
        except Exception as error:
            self._fail(batch, error)
            return
        loop = asyncio.get_running_loop()
        this = asyncio.current_task()

        def answer(jobs: list[_Job[P, R]], outcome: Sequence[R] | BaseException, started: float, run_s: float) -> None:
            """On the event loop, as soon as a group's call is done: answer its jobs, and stop counting them as
            running, so their streams' next frames can be batched (or run) while the batch's other groups run."""
            if isinstance(outcome, BaseException):
                self._fail(jobs, outcome)
            else:
                for job, result in zip(jobs, outcome, strict=True):
                    if not job.future.done():
                        job.future.set_result(Timed(result, started - job.submitted, run_s, len(jobs)))
            running = self._running.get(this) if this is not None else None
            if running is not None:
                answered = {id(job) for job in jobs}  # by identity: payloads may be arrays
                running.jobs = [job for job in running.jobs if id(job) not in answered]
                self._wakeup.set()

        def run_groups(_: None) -> None:  # on the model thread
            for group in groups:
                jobs = [batch[index] for index in group]
                if all(job.future.done() for job in jobs):  # stopped or abandoned meanwhile: nobody to answer
                    continue
                started = time.perf_counter()
                overdue = [job for job in jobs if job.overdue(started)]
                if overdue:  # a later group's jobs waited for the earlier groups' calls past their deadlines
                    passed = DeadlinePassed("the deadline passed while the job waited for its group's call")
                    loop.call_soon_threadsafe(answer, overdue, passed, started, 0.0)
                    jobs = [job for job in jobs if not job.overdue(started)]
                    if not jobs:
                        continue
                outcome: Sequence[R] | BaseException
                try:
                    outcome = self._process([job.payload for job in jobs])
                    if len(outcome) != len(jobs):
                        raise RuntimeError(f"process returned {len(outcome)} results for {len(jobs)} jobs")
                except BaseException as error:  # answered on the loop; the thread goes on with the next group
                    outcome = error
                loop.call_soon_threadsafe(answer, jobs, outcome, started, time.perf_counter() - started)

        try:
            await _call_in_thread(executor, run_groups, None).result
        except Exception as error:  # the thread could not run the groups at all (an executor shut down)
            self._fail(batch, error)

    def _groups(self, payloads: list[P]) -> list[list[int]]:
        """The groups of a batch's ``payloads`` (indices), in the order their calls run.

        Raises:
            ValueError: ``split`` did not place every payload in exactly one group.
        """
        if self._split is None:
            return [list(range(len(payloads)))]
        groups = [list(group) for group in self._split(payloads) if group]
        if sorted(index for group in groups for index in group) != list(range(len(payloads))):
            raise ValueError(f"split must place each of the {len(payloads)} payloads in exactly one group: {groups}")
        return groups

    @staticmethod
    def _fail(jobs: list[_Job[P, R]], error: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    def _expire_overdue(self) -> None:
        """Fail the waiting jobs whose deadline has passed with :class:`DeadlinePassed` (dropped from the
        queue by :meth:`_drop_abandoned`)."""
        now = time.perf_counter()
        for job in self._pending:
            if job.overdue(now) and not job.future.done():
                job.future.set_exception(DeadlinePassed("the deadline passed while the job waited for a batch"))

    def _drop_abandoned(self) -> None:
        if any(job.future.done() for job in self._pending):
            self._pending = [job for job in self._pending if not job.future.done()]
