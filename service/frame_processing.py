"""A stream's frame through the model: :func:`process_frame`, from a decoded frame to its :class:`FrameResult`."""

from __future__ import annotations

import time
from concurrent.futures import Executor
from typing import NamedTuple, Protocol

import numpy as np

from service.decode_scheduling import run_timed
from service.images import ModelView
from service.postprocess import MaskOutputs, MaskRequest, mask_outputs
from service.runner import StepJob, StepResult
from service.sessions import Session, SessionManager
from service.types import FrameRequest, FrameResult, LatencyBreakdown, Output


class DecodedFrame(Protocol):
    """A frame accepted and decoded by its connection, waiting for the model."""

    @property
    def request(self) -> FrameRequest:
        """The frame's request (its image already dropped)."""

    @property
    def frame(self) -> np.ndarray:
        """float32 ``[3, H, W]``: the model's input."""

    @property
    def view(self) -> ModelView | None:
        """Where the model's input lies in the frame (``None``: all of it), for the mask outputs."""

    @property
    def received(self) -> float:
        """``perf_counter`` when the request was read."""

    @property
    def received_ns(self) -> int:
        """Wall-clock ns when the request was read."""

    @property
    def decode_s(self) -> float:
        """Seconds of decoding and fitting the image, without any wait for a decode thread."""

    @property
    def deadline(self) -> float | None:
        """``perf_counter`` time after which the frame must not reach the model (its stream's
        ``max_staleness_s``); ``None``: no limit."""


async def process_frame(
    manager: SessionManager, decode_executor: Executor, session: Session, item: DecodedFrame
) -> FrameResult:
    """Run ``item`` through ``session``'s model from its state (batched with other streams' frames by its runner),
    fold the result into the session, and make the outputs its options ask for, large masks on
    ``decode_executor``. The latency breakdown's stages add up to its total.

    Raises:
        FrameRejected, BatcherClosed, DeadlinePassed: as the runner raises them (the last when ``item.deadline``
            passes before its model call is dispatched).
    """
    options = session.options
    mask_size = options.mask_size or session.runner.card.image_size
    masks = MaskRequest(
        mask_size,
        options.wants(Output.SEGMENTATION),
        options.wants(Output.SOFT_MASKS),
        options.soft_masks_uint8,
        item.view,  # made inside the model call or, for large outputs, below: both map them onto the view
    )
    submitted = time.perf_counter()
    timed = await session.runner.run(
        session, StepJob(item.frame, session.state, masks, session.stream_id), item.deadline
    )
    step = timed.result
    outputs, own_post_s, own_post_wait_s = await step_mask_outputs(step, masks, decode_executor)
    manager.advance(session, item.request.frame_index, step.state)
    request = item.request
    # The reply window, a free decode thread, the stream's previous frame, the batch forming, the batch's other
    # model call when it ran first (later frames run before first frames), retries after a failed batched call
    # and a free thread for the frame's own masks: every wait, so the stages add up to total_ms.
    queue_s = submitted - item.received - item.decode_s + timed.queue_s + step.waited_s + own_post_wait_s
    latency = LatencyBreakdown(
        decode_ms=item.decode_s * 1e3,
        queue_ms=queue_s * 1e3,
        inference_ms=step.inference_s * 1e3,
        postprocess_ms=(step.postprocess_s + own_post_s) * 1e3,
        total_ms=(time.perf_counter() - item.received) * 1e3,
        batch_size=timed.batch_size,
    )
    return FrameResult(
        stream_id=session.stream_id,
        frame_index=request.frame_index,
        capture_time_ns=request.capture_time_ns,
        camera_frame_id=request.camera_frame_id,
        received_time_ns=item.received_ns,
        completed_time_ns=time.time_ns(),
        model_version=session.model_version,
        slot_ids=session.slot_ids,
        latency=latency,
        slots=step.slots if options.wants(Output.SLOTS) else None,
        segmentation=outputs.segmentation,
        soft_masks=outputs.soft_masks,
        state=session.handoff() if options.wants(Output.STATE) else None,
    )


class StepMasks(NamedTuple):
    """A frame's mask outputs (:func:`step_mask_outputs`) and what making them after the model call cost."""

    outputs: MaskOutputs
    made_s: float
    """Seconds spent making them after the model call (0 when the model call made them)."""
    wait_s: float
    """Seconds spent waiting for a thread to make them on (0 when the model call made them)."""


async def step_mask_outputs(step: StepResult, masks: MaskRequest, executor: Executor) -> StepMasks:
    """The mask outputs ``masks`` asks for of ``step``: those its model call made or, when they were too large for
    it, made now for this frame alone on ``executor``, off the model and event-loop threads."""
    if step.masks is not None:
        return StepMasks(step.masks, 0.0, 0.0)
    assert step.model_masks is not None
    started = time.perf_counter()
    # model masks [K, h, w] -> [1, K, h, w]: a batch of one
    made, post_s = await run_timed(executor, mask_outputs, step.model_masks[None], [masks])
    return StepMasks(made[0], post_s, time.perf_counter() - started - post_s)


__all__ = ["DecodedFrame", "StepMasks", "process_frame", "step_mask_outputs"]
