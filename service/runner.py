"""``ModelRunner``: one engine behind a micro-batcher, with mask post-processing, on its own model thread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from service.batcher import MicroBatcher, Timed
from service.engine import Engine, EngineOutput, ModelCard
from service.errors import ErrorCode, FrameRejected
from service.logs import RateLimitedError
from service.postprocess import MaskOutputs, MaskRequest, mask_outputs, shared_call_max_pixels

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepJob:
    """One stream's frame to run.

    Attributes:
        frame: float32 ``[3, H, W]`` model input.
        state: float32 ``[K, D]`` state from the stream's previous frame, or ``None`` for its first frame.
        masks: which mask outputs to produce.
        stream_id: the stream the frame belongs to, for the log.
    """

    frame: np.ndarray
    state: np.ndarray | None
    masks: MaskRequest
    stream_id: str = ""


@dataclass(frozen=True)
class StepResult:
    """One stream's outputs for a frame.

    Attributes:
        slots: float32 ``[K, D]``.
        state: float32 ``[K, D]`` state for the stream's next frame.
        masks: the requested mask outputs, or ``None`` when they are too large to make inside the shared model
            call (``MaskRequest.in_shared_call`` of :func:`~service.postprocess.shared_call_max_pixels` of the
            engine's device): then :attr:`model_masks` holds what to make them from.
        model_masks: float32 ``[K, h, w]`` soft masks at the model's resolution when :attr:`masks` is ``None``.
        inference_s: duration of the model call the frame was part of.
        postprocess_s: duration of the mask post-processing inside that call.
        batch_size: frames in that call (1 for a frame retried alone after its batch failed).
        waited_s: time spent in other calls of the frame's group: when a batched call fails, its frames are
            retried alone one after the other, so each waits for the failed call and the retries before its own.
    """

    slots: np.ndarray
    state: np.ndarray
    masks: MaskOutputs | None
    model_masks: np.ndarray | None
    inference_s: float
    postprocess_s: float
    batch_size: int
    waited_s: float = 0.0


def _nothing() -> None:
    """Run on a model thread to learn when the call before it has returned."""


@dataclass(frozen=True)
class _Failed:
    message: str


NOT_FINITE = (
    "the model's slots or state for this frame are not finite (NaN or infinity); the frame is answered with this "
    "error and the stream keeps the state of its previous frame"
)
"""The ``INFERENCE_FAILED`` message of a frame whose outputs overflowed (the other frames of its batch are fine)."""


def finite_rows(out: EngineOutput) -> np.ndarray:
    """bool ``[B]``: which rows of a batch have finite slots and state. A row that overflowed (NaN, infinity) must
    not become its stream's state: its frame is answered ``INFERENCE_FAILED`` (:data:`NOT_FINITE`)."""
    # [B, K, D] -> [B] each
    return np.isfinite(out.state).all(axis=(1, 2)) & np.isfinite(out.slots).all(axis=(1, 2))  # type: ignore[no-any-return]


def _with_wait(result: StepResult | _Failed, group_s: float) -> StepResult | _Failed:
    """``result`` with :attr:`StepResult.waited_s` set: the group's ``group_s`` less the frame's own call."""
    if isinstance(result, _Failed):
        return result
    return replace(result, waited_s=max(0.0, group_s - result.inference_s - result.postprocess_s))


def later_then_first(jobs: Sequence[StepJob]) -> list[list[int]]:
    """The groups of a batch: its later frames (``step``), then its first frames (``first_step``)."""
    return [
        [index for index, job in enumerate(jobs) if job.state is not None],
        [index for index, job in enumerate(jobs) if job.state is None],
    ]


class ModelRunner:
    """Runs frames of many streams through one :class:`Engine`, batching frames that are due together.

    Batches run on ``instances`` model threads (on a CPU, one core each with one intra-op thread: several
    medium batches in parallel beat one large batch on one core).

    A batch may mix first frames and later frames; they go to ``step`` and then ``first_step`` as two calls,
    each group answered as soon as its own call is done, so streams already running never wait for a new
    stream's first frame. If a batched call fails, each of its frames is retried alone so that one bad frame
    cannot fail another stream's frame.

    Args:
        engine: the loaded engine.
        max_batch_size: most frames per model call (capped by the engine's own limit).
        max_delay_s: longest wait for a batch to fill.
        instances: model calls that may run at once (capped by the engine's ``max_concurrency``).
        demand: number of streams that could contribute to a batch right now (see :class:`MicroBatcher`).
        on_batch: called with the keys of each dispatched batch.
        inline_below_s: a lone stream's call runs on the event-loop thread while its calls take less than this
            (see :class:`MicroBatcher`; 0: always on a model thread).
        on_call: called after each model call (engine call and mask post-processing) with whether it succeeded,
            on the thread that ran it (a model thread or the event-loop thread); a failed batched call and each
            retry of its frames count as separate calls. Must be thread-safe and must not block.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int,
        max_delay_s: float,
        instances: int = 1,
        demand: Callable[[], int] | None = None,
        on_batch: Callable[[Sequence[Hashable]], None] | None = None,
        inline_below_s: float = 0.0,
        on_call: Callable[[bool], None] | None = None,
    ) -> None:
        self.engine = engine
        self._on_call = on_call
        self._failure_log = RateLimitedError(_log, "model call failed", "failures")
        self._batch_failure_log = RateLimitedError(
            _log, "batched model call failed; retrying each frame alone", "batch_failures"
        )
        self.card: ModelCard = engine.card
        self.max_batch_size = min(max_batch_size, engine.card.max_batch_size)
        self._shared_max_pixels = shared_call_max_pixels(engine.card.device)
        self.instances = max(1, min(instances, engine.max_concurrency))
        self._executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"model-{engine.card.name}-{index}")
            for index in range(self.instances)
        ]
        self._warm_up: asyncio.Future[None] | None = None
        self._batcher: MicroBatcher[StepJob, StepResult | _Failed] = MicroBatcher(
            self._process,
            self._executors,
            max_batch_size=self.max_batch_size,
            max_delay_s=max_delay_s,
            demand=demand,
            on_batch=on_batch,
            inline_below_s=inline_below_s,
            split=later_then_first,
        )

    async def run(self, key: Hashable, job: StepJob, deadline: float | None = None) -> Timed[StepResult]:
        """Run ``job`` for the stream identified by ``key`` (at most one job per key at a time), unless
        ``deadline`` (a :func:`time.perf_counter` time) passes before its model call is dispatched.

        Raises:
            FrameRejected: the model failed on this frame (``INFERENCE_FAILED``).
            BatcherClosed: the runner is closed.
            DeadlinePassed: ``deadline`` passed first; the job did not run.
        """
        timed = await self._batcher.submit(key, job, deadline)
        if isinstance(timed.result, _Failed):
            raise FrameRejected(ErrorCode.INFERENCE_FAILED, timed.result.message)
        return Timed(timed.result, timed.queue_s, timed.run_s, timed.result.batch_size)

    def busy_for_s(self) -> float:
        """Seconds the longest-running model call has been running (0 when the model is idle)."""
        return self._batcher.running_for_s()

    def warm_up_sizes(self) -> list[int]:
        """The batch sizes :meth:`warm_up` runs: every size from 1 to the largest for an engine that tunes per
        batch size (:attr:`Engine.tunes_per_batch_size`: the micro-batcher may form any of them), else 1 and
        the largest."""
        if self.engine.tunes_per_batch_size:
            return list(range(1, self.max_batch_size + 1))
        return sorted({1, self.max_batch_size})

    async def warm_up(self) -> None:
        """Run the engine at :meth:`warm_up_sizes`, on the model thread. Cancelling the wait leaves the call
        running (:attr:`warming_up` says until when)."""
        sizes = self.warm_up_sizes()
        self._warm_up = asyncio.get_running_loop().run_in_executor(self._executors[0], self.engine.warmup, sizes)
        await asyncio.shield(self._warm_up)

    @property
    def warming_up(self) -> bool:
        """Whether the warm-up's model call is running (whether or not anything still waits for it)."""
        return self._warm_up is not None and not self._warm_up.done()

    async def abandon(self) -> None:
        """Fail frames still queued and leave the model threads behind without waiting for the calls they run (a
        warm-up cut short by a shutdown): the engine is not freed, and the process is expected to exit without
        joining the threads."""
        await self._batcher.stop()
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)

    async def close(self, timeout_s: float | None = None) -> bool:
        """Fail frames still queued, wait for the model calls still running on every model thread, and free the
        engine.

        Args:
            timeout_s: how long to wait for the running model calls and the engine's release together (``None``:
                as long as it takes).

        Returns:
            ``False`` when a model call (on any model thread) or the release was still running after
            ``timeout_s``: the engine was not freed and the threads were left behind (a hung model); ``True``
            otherwise. Never blocks the event loop for longer than ``timeout_s``.
        """
        await self._batcher.stop()
        loop = asyncio.get_running_loop()

        async def finish_and_release() -> None:
            # A no-op on each model thread completes once that thread's running call (if any) has returned, so
            # the engine is released only when no thread uses it any more.
            await asyncio.gather(*(loop.run_in_executor(executor, _nothing) for executor in self._executors))
            await loop.run_in_executor(self._executors[0], self.engine.close)

        closing = asyncio.ensure_future(finish_and_release())
        try:
            await asyncio.wait_for(asyncio.shield(closing), timeout_s)
        except TimeoutError:
            _log.error("a model call is still running %.1f s into shutdown; not waiting for it", timeout_s)
            for executor in self._executors:
                executor.shutdown(wait=False, cancel_futures=True)
            return False
        for executor in self._executors:
            executor.shutdown(wait=True)  # every thread is idle: returns at once
        return True

    # -- on the model thread ------------------------------------------------------------------------------

    def _process(self, jobs: Sequence[StepJob]) -> list[StepResult | _Failed]:
        """Run a group of first frames or of later frames (the batcher splits mixed batches)."""
        started = time.perf_counter()
        results = self._run_group(jobs)
        group_s = time.perf_counter() - started
        return [_with_wait(result, group_s) for result in results]

    def _run_group(self, jobs: Sequence[StepJob]) -> list[StepResult | _Failed]:
        try:
            results = self._call(jobs)
        except Exception as error:
            if self._on_call is not None:
                self._on_call(False)
            if len(jobs) == 1:  # a failure repeating on every frame logs its traceback once per interval
                self._failure_log(type(error).__name__, stream_id=jobs[0].stream_id, error=type(error).__name__)
                return [_Failed(f"the model failed on this frame: {type(error).__name__}: {error}")]
            failed = type(error).__name__
            self._batch_failure_log(failed, frames=len(jobs), streams=[job.stream_id for job in jobs], error=failed)
        else:
            if self._on_call is not None:
                self._on_call(True)
            return results
        return [result for job in jobs for result in self._run_group([job])]

    def _call(self, jobs: Sequence[StepJob]) -> list[StepResult | _Failed]:
        frames = np.stack([job.frame for job in jobs])  # B x [3, H, W] -> [B, 3, H, W]
        started = time.perf_counter()
        out: EngineOutput
        if jobs[0].state is None:
            out = self.engine.first_step(frames)
        else:
            # states B x [K, D] -> [B, K, D]
            out = self.engine.step(frames, np.stack([job.state for job in jobs if job.state is not None]))
        inferred = time.perf_counter()
        shared = [row for row, job in enumerate(jobs) if job.masks.in_shared_call(self._shared_max_pixels)]
        source = (
            out.masks if len(shared) == len(jobs) else out.masks[shared]
        )  # [S, K, h, w], no copy in the usual case
        made = mask_outputs(source, [jobs[row].masks for row in shared]) if shared else []
        masks: dict[int, MaskOutputs] = dict(zip(shared, made, strict=True))
        post_s = time.perf_counter() - inferred
        infer_s = inferred - started
        finite = finite_rows(out)
        return [
            StepResult(
                out.slots[row].copy(),
                out.state[row].copy(),
                masks.get(row),
                None if row in masks else out.masks[row].copy(),  # [K, h, w]
                infer_s,
                post_s,
                len(jobs),
            )
            if finite[row]
            else _Failed(NOT_FINITE)
            for row in range(len(jobs))
        ]
