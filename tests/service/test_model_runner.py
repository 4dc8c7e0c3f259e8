"""``ModelRunner`` on the tiny model without a network: a failed batch's frames are retried alone and say so."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from service_helpers import SlowEngine

from service.engine import Engine, EngineOutput, load_engine
from service.errors import ErrorCode, FrameRejected
from service.postprocess import MaskRequest
from service.runner import NOT_FINITE, ModelRunner, StepJob


class PoisonedFrames(SlowEngine):
    """``first_step`` raises for a batch holding an all-white frame (a frame the model chokes on)."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.batch_sizes: list[int] = []

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        self.batch_sizes.append(len(frames))
        if (frames.reshape(len(frames), -1).min(axis=1) == 1.0).any():  # [B, 3*H*W] -> [B]
            raise RuntimeError("the model choked on a frame")
        return self.inner.first_step(frames)


def _first_frames_together(engine: Engine, frames: dict[str, np.ndarray]) -> dict[str, object]:
    """Each of ``frames`` as a stream's first frame, all due together (one batch); their outcomes by key, a
    ``FrameRejected`` for a frame the runner refused."""
    height, width = engine.card.image_size

    async def scenario():
        runner = ModelRunner(engine, max_batch_size=4, max_delay_s=0.2, demand=lambda: len(frames))
        jobs = {key: StepJob(frame, None, MaskRequest((height, width))) for key, frame in frames.items()}
        outcomes = await asyncio.gather(*(runner.run(key, job) for key, job in jobs.items()), return_exceptions=True)
        await runner.close()
        return dict(zip(jobs, outcomes, strict=True))

    return asyncio.run(scenario())


def test_frames_of_a_failed_batch_are_retried_alone_and_report_batch_size_one(model_dir):
    engine = PoisonedFrames(load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=4))
    height, width = engine.card.image_size
    rng = np.random.default_rng(0)
    frames = {key: rng.random((3, height, width), dtype=np.float32) for key in ("a", "b")}
    frames["poisoned"] = np.ones((3, height, width), np.float32)

    outcomes = _first_frames_together(engine, frames)
    assert engine.batch_sizes == [3, 1, 1, 1], "one batch of three, then each frame alone"
    assert isinstance(outcomes["poisoned"], FrameRejected)
    for key in ("a", "b"):
        timed = outcomes[key]
        assert not isinstance(timed, BaseException), timed
        assert timed.batch_size == 1 and timed.result.batch_size == 1
        alone = engine.inner.first_step(frames[key][None])  # [1, 3, H, W]
        np.testing.assert_allclose(timed.result.slots, alone.slots[0], atol=1e-5)


class OverflowingFrames(SlowEngine):
    """``first_step`` returns a NaN state for an all-white frame and infinite slots for an all-black one (a model
    that overflows in one output or the other)."""

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        out = self.inner.first_step(frames)
        flat = frames.reshape(len(frames), -1)  # [B, 3, H, W] -> [B, 3*H*W]
        out.state[flat.min(axis=1) == 1.0] = np.nan
        out.slots[flat.max(axis=1) == 0.0] = np.inf
        return out


def test_a_frame_whose_outputs_are_not_finite_fails_alone(model_dir):
    """Its stream must not take a NaN state (every later frame would be NaN); the batch's other frames are fine."""
    engine = OverflowingFrames(load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=4))
    height, width = engine.card.image_size
    frames = {"fine": np.random.default_rng(1).random((3, height, width), dtype=np.float32)}
    frames["nan state"] = np.ones((3, height, width), np.float32)
    frames["infinite slots"] = np.zeros((3, height, width), np.float32)

    outcomes = _first_frames_together(engine, frames)
    for key in ("nan state", "infinite slots"):
        failed = outcomes[key]
        assert isinstance(failed, FrameRejected) and failed.code == ErrorCode.INFERENCE_FAILED, key
        assert failed.message == NOT_FINITE
    fine = outcomes["fine"]
    assert not isinstance(fine, BaseException) and fine.batch_size == 3, "answered from the shared call"
    assert np.isfinite(fine.result.state).all()


@pytest.mark.parametrize("size", [(64, 64), (1024, 1024)])
def test_masks_are_made_in_the_call_only_up_to_the_shared_size_limit(model_dir, size):
    engine = load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=1)
    height, width = engine.card.image_size
    job = StepJob(np.zeros((3, height, width), np.float32), None, MaskRequest(size))

    async def scenario():
        runner = ModelRunner(engine, max_batch_size=1, max_delay_s=0.0)
        timed = await runner.run("a", job)
        await runner.close()
        return timed.result

    result = asyncio.run(scenario())
    if size == (64, 64):
        assert result.masks is not None and result.masks.segmentation.shape == size and result.model_masks is None
    else:
        assert result.masks is None and result.model_masks.shape == (engine.card.num_slots, *engine.card.mask_size)


def test_a_failure_on_every_frame_logs_its_traceback_once_per_interval_naming_the_stream(model_dir, caplog):
    engine = PoisonedFrames(load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=1))
    height, width = engine.card.image_size
    poisoned = np.ones((3, height, width), np.float32)

    async def scenario():
        runner = ModelRunner(engine, max_batch_size=1, max_delay_s=0.0)
        for index in range(5):
            with pytest.raises(FrameRejected):
                await runner.run("a", StepJob(poisoned, None, MaskRequest((height, width)), stream_id=f"cam-{index}"))
        await runner.close()

    caplog.set_level("INFO", logger="service.runner")
    asyncio.run(scenario())
    failures = [record for record in caplog.records if record.getMessage() == "model call failed"]
    assert len(failures) == 1, "four more failures within the interval are only counted"
    (line,) = failures
    assert line.levelname == "ERROR" and line.exc_info is not None and "choked" in str(line.exc_info[1])
    assert (line.stream_id, line.failures, line.error) == ("cam-0", 1, "RuntimeError")
