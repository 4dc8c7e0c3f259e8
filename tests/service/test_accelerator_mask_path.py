"""Where mask outputs are made for an engine on an accelerator (a GPU): inside the batch's model call only up to
128 x 128 pixels, larger ones per frame on the decode threads, with the same bytes either way. The engine here is
the CPU engine presenting a CUDA engine's card: the runner chooses the path from the card's device, so the
accelerator's path runs on any machine."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest
from service_helpers import SlowEngine, make_video, run

from service import frame_processing
from service.client import Client, FrameFit, FrameResult, Output, StreamOptions
from service.config import ServiceConfig
from service.engine import Engine, load_engine
from service.postprocess import (
    ACCELERATOR_SHARED_CALL_MAX_PIXELS,
    SHARED_CALL_MAX_PIXELS,
    MaskRequest,
    mask_outputs,
    shared_call_max_pixels,
)
from service.runner import ModelRunner, StepJob
from service.server import default_engine_factory

CROP = (0.0, 0.25, 1.0, 0.5)  # the middle half of the columns


class AcceleratorCard(SlowEngine):
    """``inner``, the CPU engine, with the card of the same model on ``cuda:0``."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.card = replace(inner.card, device="cuda:0")
        self.release.set()


def test_the_limit_is_the_cpu_one_only_on_a_cpu():
    assert shared_call_max_pixels("cpu") == SHARED_CALL_MAX_PIXELS == 512 * 512
    for device in ("cuda", "cuda:0", "cuda:1", "tensorrt:0"):
        assert shared_call_max_pixels(device) == ACCELERATOR_SHARED_CALL_MAX_PIXELS == 128 * 128


def _batch(engine: Engine, requests: list[MaskRequest]) -> list:
    """Each request with its own first frame, all due together (one model call of them all); the results."""
    height, width = engine.card.image_size
    rng = np.random.default_rng(3)
    jobs = [StepJob(rng.random((3, height, width), dtype=np.float32), None, request) for request in requests]

    async def scenario():
        runner = ModelRunner(engine, max_batch_size=len(jobs), max_delay_s=5.0, demand=lambda: len(jobs))
        timed = await asyncio.gather(*(runner.run(index, job) for index, job in enumerate(jobs)))
        await runner.close()
        return [one.result for one in timed]

    results = asyncio.run(scenario())
    assert [result.batch_size for result in results] == [len(jobs)] * len(jobs), "one shared call"
    return results


@pytest.mark.parametrize(
    ("size", "on_cpu", "on_gpu"),
    [((64, 64), True, True), ((128, 128), True, True), ((128, 129), True, False), ((512, 512), True, False)],
    ids=["64x64", "128x128", "128x129", "512x512"],
)
def test_an_accelerator_engine_makes_only_small_masks_in_the_call(model_dir, size, on_cpu, on_gpu):
    """A batch of frames asking for masks of ``size``: made in the call (``masks``) or left to the stream
    (``model_masks``), by the engine's device; made later, they are the bytes the call makes, whatever the frame's
    outputs (segmentation, float32 or uint8 soft masks, a crop) and the frames batched with it."""
    cpu = load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=4)
    requests = [
        MaskRequest(size),
        MaskRequest(size, soft=True, soft_uint8=True),
        MaskRequest(size, segmentation=False, soft=True),
        MaskRequest(size, soft=True, soft_uint8=True, view=CROP),
    ]
    in_call = _batch(cpu, requests)
    by_card = _batch(AcceleratorCard(cpu), requests)
    assert all((result.masks is not None) == on_cpu for result in in_call)
    assert all((result.masks is not None) == on_gpu for result in by_card)
    for request, made, other in zip(requests, in_call, by_card, strict=True):
        np.testing.assert_array_equal(made.slots, other.slots)
        if other.masks is None:
            assert other.model_masks is not None
            (later,) = mask_outputs(other.model_masks[None], [request])  # as the stream makes them
        else:
            later = other.masks
        assert made.masks is not None
        for ours, theirs in ((made.masks.segmentation, later.segmentation), (made.masks.soft_masks, later.soft_masks)):
            assert (ours is None) == (theirs is None)
            if ours is not None:
                assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_a_stream_of_an_accelerator_server_gets_the_cpu_servers_masks(start_server, monkeypatch):
    """320 x 160 masks (above the accelerator's limit, below the CPU's) of a cropped stream: the accelerator's
    server makes them on the decode threads, the CPU server inside the model call, and the answers carry the same
    bytes."""
    made_by_stream: list[MaskRequest] = []
    original = frame_processing.mask_outputs

    def recording(masks, requests):
        made_by_stream.extend(requests)
        return original(masks, requests)

    monkeypatch.setattr(frame_processing, "mask_outputs", recording)
    clip = make_video(seed=31, frames=3, size=(48, 96))
    options = StreamOptions(
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION, Output.SOFT_MASKS}),
        mask_size=(160, 320),
        soft_masks_uint8=True,
        frame_fit=FrameFit.CROP,
    )

    async def answers(target: str) -> list[FrameResult]:
        async with Client(target) as client:
            stream = await client.open(options)
            results = [await stream.process(frame) for frame in clip]
            await stream.close()
        assert all(isinstance(result, FrameResult) for result in results), results
        return results

    def accelerator(config: ServiceConfig) -> Engine:
        return AcceleratorCard(default_engine_factory(config))

    on_cpu = run(answers(start_server().target))
    assert made_by_stream == []
    on_gpu = run(answers(start_server(engine_factory=accelerator).target))
    assert len(made_by_stream) == len(clip)
    for ours, theirs in zip(on_cpu, on_gpu, strict=True):
        assert ours.soft_masks.dtype == theirs.soft_masks.dtype == np.uint8
        np.testing.assert_array_equal(ours.segmentation, theirs.segmentation)
        np.testing.assert_array_equal(ours.soft_masks, theirs.soft_masks)
        np.testing.assert_array_equal(ours.slots, theirs.slots)
