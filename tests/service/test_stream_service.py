"""End-to-end stream behaviour over gRPC on loopback: ordering, isolation, batching, live mode, outputs.

Exactness: in eval mode the model is deterministic, so a stream's results are a pure function of its frames.
Batched and unbatched calls may still differ in the last float bits (different kernel blocking), so slots
are compared with a tight tolerance (1e-5) and segmentations must agree on at least 99.9% of pixels (an
argmax can flip only where two slots tie to within that rounding).
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from service_helpers import (
    SERVICE_TINY_MODEL,
    ServerThread,
    make_config,
    make_video,
    reference_outputs,
    run,
    slow_factory,
)

from service import runner as runner_module
from service import wire
from service.client import Client, FrameDropped, FrameError, FrameResult, Output, StreamClosed, StreamOptions
from service.errors import ErrorCode
from service.generated import pb, pb_grpc
from service.types import DropReason, EncodedImage, ImageEncoding


def assert_matches(results: list[FrameResult], reference: list[tuple[np.ndarray, np.ndarray]]) -> None:
    assert len(results) == len(reference)
    for result, (slots, segmentation) in zip(results, reference, strict=True):
        assert result.slots is not None and result.segmentation is not None
        np.testing.assert_allclose(result.slots, slots, atol=1e-5, rtol=0)
        agreement = float(np.mean(result.segmentation == segmentation))
        assert agreement >= 0.999, f"frame {result.frame_index}: segmentation agreement {agreement:.4f}"


async def stream_clip(target: str, clip: list[np.ndarray], window: int = 2, **options: object) -> list[FrameResult]:
    """Stream ``clip`` with up to ``window`` frames in flight; return the results in order."""
    async with Client(target) as client:
        stream = await client.open(StreamOptions(**options))  # type: ignore[arg-type]
        results: list[FrameResult] = []
        sent = 0
        while len(results) < len(clip):
            while sent < len(clip) and sent - len(results) < window:
                await stream.send(clip[sent])
                sent += 1
            response = await stream.receive()
            assert isinstance(response, FrameResult), response
            results.append(response)
        await stream.close()
        return results


def test_one_response_per_frame_in_order_with_errors_interleaved(server):
    """Pipelined frames, some bad, are answered one-to-one in send order; bad frames do not disturb the state."""
    clip = make_video(seed=1, frames=12)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            sent = []
            for index, frame in enumerate(clip):
                await stream.send(frame, frame_index=2 * index)
                sent.append(2 * index)
                if index % 4 == 1:  # a corrupt JPEG between good frames
                    await stream.send(
                        EncodedImage(ImageEncoding.JPEG, b"\xff\xd8 not a jpeg"), frame_index=2 * index + 1
                    )
                    sent.append(2 * index + 1)
            answers = [await stream.receive() for _ in sent]
            tail = await stream.close()
            return sent, answers, tail

    sent, answers, tail = run(scenario())
    assert [a.frame_index for a in answers] == sent
    assert isinstance(tail[-1], StreamClosed) and len(tail) == 1
    errors = [a for a in answers if isinstance(a, FrameError)]
    assert [e.frame_index % 2 for e in errors] == [1] * len(errors) and len(errors) == 3
    assert all(e.code == ErrorCode.UNDECODABLE_IMAGE for e in errors)
    results = [a for a in answers if isinstance(a, FrameResult)]
    assert {e.model_version for e in errors} == {results[0].model_version} != {""}, "every answer names the model"
    assert_matches(results, reference_outputs(server.model_dir, clip))
    assert server.session_count() == 0


@pytest.mark.parametrize("model_instances", [1, 2])
def test_sixteen_concurrent_streams_match_each_video_alone(start_server, model_instances):
    """16 streams x 100 frames at once: each stream's results equal its video run alone (state isolation),
    frames of different streams share model calls, and no call holds two frames of one stream; also with two
    model instances calling one engine at once, as production runs on a CPU (``--torch-threads 1``)."""
    server = start_server(model_instances=model_instances)
    assert server.model_instances() == model_instances
    streams, frames = 16, 100
    clips = [make_video(seed=100 + i, frames=frames) for i in range(streams)]
    clips[1] = clips[0]  # two streams with identical input must give identical output, whatever their batch slot
    server.server.batch_log = []

    async def scenario():
        return await asyncio.gather(*(stream_clip(server.target, clip) for clip in clips))

    all_results = run(scenario(), timeout=180)
    batches = server.on_loop(lambda: list(server.server.batch_log))
    for clip, results in zip(clips, all_results, strict=True):
        assert [r.frame_index for r in results] == list(range(frames))
        assert_matches(results, reference_outputs(server.model_dir, clip))
    for a, b in zip(all_results[0], all_results[1], strict=True):
        np.testing.assert_allclose(a.slots, b.slots, atol=1e-5, rtol=0)
    assert all(len(set(batch)) == len(batch) for batch in batches), "a batch held two frames of one stream"
    assert sum(len(b) for b in batches) == streams * frames
    assert max(len(b) for b in batches) > 1, "frames of different streams were never batched"
    assert server.metric("slotstream_frames_total", {"model": "tiny", "outcome": "result"}) == streams * frames


def test_the_default_models_streams_batched_together_equal_each_stream_alone_bitwise():
    """The shipped model, served at its default one torch thread: four streams sharing model calls get, bit for
    bit, what a stream run alone (``LocalStream``, one frame a call) gets, first frames and later ones alike, and
    two streams of one clip get the same answers whatever their batches. Its RandSF.Q transition once rounded a
    lone frame otherwise than a batched one, and the recurrence carried that to other slot assignments."""
    from service import LocalStream
    from service.config import DEFAULT_MODEL_DIR

    server = ServerThread(make_config(DEFAULT_MODEL_DIR, torch_threads=1)).start()
    try:
        server.server.batch_log = []
        clips = [make_video(seed=120 + i, frames=40) for i in range(4)]
        clips[1] = clips[0]
        size = clips[0][0].shape[:2]

        async def scenario():
            return await asyncio.gather(*(stream_clip(server.target, clip, 3, mask_size=size) for clip in clips))

        all_results = run(scenario(), timeout=180)
        batches = server.on_loop(lambda: list(server.server.batch_log))
    finally:
        server.stop(0.5)
    assert max(len(batch) for batch in batches) > 1, "the streams never shared a model call"
    for clip, results in zip(clips, all_results, strict=True):
        alone = LocalStream.open()
        for frame, result in zip(clip, results, strict=True):
            expected = alone.process(frame, mask_size=size)
            np.testing.assert_array_equal(result.slots, expected.slots)
            np.testing.assert_array_equal(result.segmentation, expected.segmentation)


def test_large_mask_outputs_are_made_outside_the_shared_model_call(start_server, monkeypatch):
    """A stream asking for 1024x1024 masks shares model calls with 64x64 streams, but its masks are made for it
    alone after the call (the 64x64 ones inside it), so it cannot hold the other streams up; every stream still
    gets its own video's results."""
    made_sizes: list[list[tuple[int, int]]] = []
    original = runner_module.mask_outputs

    def recording(masks, requests):
        made_sizes.append([request.size for request in requests])
        return original(masks, requests)

    monkeypatch.setattr(runner_module, "mask_outputs", recording)
    server = start_server()
    server.server.batch_log = []
    clips = [make_video(seed=60 + i, frames=12) for i in range(3)]
    sizes = [(1024, 1024), None, None]

    async def scenario():
        return await asyncio.gather(
            *(stream_clip(server.target, clip, mask_size=size) for clip, size in zip(clips, sizes, strict=True))
        )

    all_results = run(scenario(), timeout=180)
    for clip, size, results in zip(clips, sizes, all_results, strict=True):
        assert_matches(results, reference_outputs(server.model_dir, clip, size))
    assert all_results[0][0].segmentation.shape == (1024, 1024)
    batches = server.on_loop(lambda: list(server.server.batch_log))
    assert max(len(b) for b in batches) > 1, "the streams were never batched"
    assert all((1024, 1024) not in sizes_made for sizes_made in made_sizes), "large masks made in the shared call"
    assert sum(len(sizes_made) for sizes_made in made_sizes) == 2 * 12


def test_live_mode_keeps_only_the_newest_waiting_frame(start_server):
    """A client sending faster than the model gets SUPERSEDED drops for stale frames, one answer per frame.
    Every model call takes at least 20 ms on a model thread, so frames pile up while one is in the model."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    clip = make_video(seed=3, frames=40)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(live=True))
            for frame in clip:  # all at once: most frames wait while an earlier one is in the model
                await stream.send(frame)
            answers = [await stream.receive() for _ in clip]
            await stream.close()
            return answers

    answers = run(scenario())
    assert [a.frame_index for a in answers] == list(range(len(clip)))
    dropped = [a for a in answers if isinstance(a, FrameDropped)]
    assert dropped and all(d.reason == DropReason.SUPERSEDED for d in dropped)
    assert isinstance(answers[-1], FrameResult), "the newest frame is always processed"
    assert {d.model_version for d in dropped} == {answers[-1].model_version} != {""}, "every answer names the model"
    assert server.metric("slotstream_frames_dropped_total", {"reason": "superseded"}) == len(dropped)


def test_requested_outputs_and_mask_size(server):
    """Only the requested outputs are sent; masks come at the requested size; slot ids are stable."""
    clip = make_video(seed=4, frames=3)
    options = StreamOptions(
        outputs=frozenset({Output.SOFT_MASKS, Output.SEGMENTATION, Output.STATE}),
        mask_size=(30, 40),
        soft_masks_uint8=True,
    )
    results = run(stream_clip(server.target, clip, window=1, **vars(options)))
    k = SERVICE_TINY_MODEL["num_slots"]
    for result in results:
        assert result.slots is None
        assert result.segmentation is not None and result.segmentation.shape == (30, 40)
        assert result.segmentation.dtype == np.uint8 and result.segmentation.max() < k
        assert result.soft_masks is not None and result.soft_masks.shape == (k, 30, 40)
        assert result.soft_masks.dtype == np.uint8
        assert np.abs(result.soft_masks.astype(int).sum(axis=0) - 255).max() <= k  # sums to 1 up to rounding
        assert result.state is not None and result.state.last_frame_index == result.frame_index
        assert result.slot_ids == tuple(range(k))
        assert result.model_version and result.latency.total_ms > 0 and result.latency.batch_size >= 1


@pytest.mark.parametrize("outputs", [[], [0]], ids=["none", "unspecified only"])
def test_an_open_without_outputs_echoes_the_default_outputs_it_gets(server, outputs):
    """The proto echoes effective options: results carry slots and segmentation, so ``StreamOpened.options``
    says so (it used to say ``outputs: []``). (An output value the server does not know is refused instead:
    test_proto_comments_match_server.py.)"""
    clip = make_video(seed=7, frames=1)

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            await call.write(pb.StreamRequest(open=pb.OpenStream(options=pb.StreamOptions(outputs=outputs))))
            height, width, _ = clip[0].shape
            image = pb.Image(encoding=pb.IMAGE_ENCODING_RAW_RGB8, data=clip[0].tobytes(), height=height, width=width)
            await call.write(pb.StreamRequest(frame=pb.Frame(frame_index=0, image=image)))
            await call.write(pb.StreamRequest(close=pb.CloseStream()))
            await call.done_writing()
            return [response async for response in call]

    opened, result, _ = run(scenario())
    assert list(opened.opened.options.outputs) == [pb.OUTPUT_SLOTS, pb.OUTPUT_SEGMENTATION]
    assert result.result.HasField("slots") and result.result.HasField("segmentation")
    assert not result.result.HasField("soft_masks") and not result.result.HasField("state")
    echoed = wire.response_from_proto(opened)
    assert echoed.options.outputs == frozenset({Output.SLOTS, Output.SEGMENTATION})


def test_capture_time_and_camera_frame_id_are_echoed(server):
    """Robots sync results with odometry by the capture stamp and frame id they sent."""

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            result = await stream.process(make_video(5, 1)[0], capture_time_ns=123456789, camera_frame_id="cam_left")
            await stream.close()
            return result

    result = run(scenario())
    assert result.capture_time_ns == 123456789 and result.camera_frame_id == "cam_left"
    assert result.received_time_ns <= result.completed_time_ns


def test_describe_returns_the_model_card(server):
    card = run(_describe(server.target))
    assert card.name == "tiny" and card.backend == "torch"
    assert card.image_size == tuple(SERVICE_TINY_MODEL["image_size"])
    assert (card.num_slots, card.slot_dim) == (SERVICE_TINY_MODEL["num_slots"], SERVICE_TINY_MODEL["slot_dim"])
    assert card.mask_size == (12, 12) and len(card.version) == 12 and "bilinear" in card.preprocessing
    assert card.available_models == ("tiny",), "the models the server serves reach the client"


async def _describe(target: str):
    async with Client(target) as client:
        return await client.describe()


@pytest.mark.parametrize("encoding", ["jpeg", "png"])
def test_encoded_frames_are_decoded_to_their_pixels(server, encoding):
    """A PNG frame (lossless) gives the raw frame's results; a JPEG frame those of its own decoded pixels."""
    import io

    from PIL import Image

    frame = make_video(6, 1)[0]
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=encoding.upper(), **({"quality": 95} if encoding == "jpeg" else {}))
    pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    if encoding == "png":
        np.testing.assert_array_equal(pixels, frame)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            result = await stream.process(buffer.getvalue())
            await stream.close()
            return result

    result = run(scenario())
    assert isinstance(result, FrameResult)
    assert_matches([result], reference_outputs(server.model_dir, [pixels]))
