"""Service conformance for every backend on this machine: state isolation, ordering and resume over gRPC.

The scenarios are those of ``tests/service`` (their helpers and servers are reused), run against each backend
serving one export directory: ``torch`` always, ``onnx`` when onnxruntime imports, ``tensorrt`` when TensorRT
and a GPU are present. Each backend is compared with itself run frame by frame, so the checks are about the
service semantics; ``test_onnx_serves_what_torch_serves`` compares the backends with each other.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import (
    BACKENDS,
    HAVE_ONNXRUNTIME,
    ServerThread,
    make_config,
    make_video,
    quick_export,
    raw,
    run,
    save_tiny_model,
)
from test_stream_service import assert_matches, stream_clip

from service.bench import agreement
from service.client import Client, FrameResult, StreamOptions
from service.engine import load_engine
from service.images import prepare_frame
from service.postprocess import MaskRequest, mask_outputs
from training.configs import get_config
from training.datasets.synthetic import generate_video

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "service" / "models" / "default"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service tests' tiny model, exported (the directory serves every backend)."""
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("tiny")), tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def server(export_dir, backend):
    name, device = backend
    started = ServerThread(make_config(export_dir, backend=name, device=device)).start()
    yield started
    started.stop(0.5)


def reference(
    backend: tuple[str, str], model_dir: Path, clip: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(slots, segmentation)`` per frame from ``backend``'s engine alone, one frame at a time."""
    name, device = backend
    engine = load_engine(name, model_dir, name="tiny", device=device, max_batch_size=1)
    size = engine.card.image_size
    outputs, state = [], None
    for frame in clip:
        tensor = prepare_frame(raw(frame), size, 1 << 30)[None]  # [1, 3, H, W]
        out = engine.first_step(tensor) if state is None else engine.step(tensor, state)
        state = out.state
        (masks,) = mask_outputs(out.masks, [MaskRequest(size)])
        outputs.append((out.slots[0], masks.segmentation))
    engine.close()
    return outputs


def test_concurrent_streams_are_isolated(server, backend):
    """Streams served together, in shared batches, each equal their video run alone."""
    clips = [make_video(seed=200 + i, frames=20) for i in range(4)]
    clips[1] = clips[0]

    async def scenario():
        return await asyncio.gather(*(stream_clip(server.target, clip, window=3) for clip in clips))

    results = run(scenario())
    for clip, got in zip(clips, results, strict=True):
        assert [r.frame_index for r in got] == list(range(len(clip)))
        assert_matches(got, reference(backend, server.model_dir, clip))
    for a, b in zip(results[0], results[1], strict=True):
        np.testing.assert_allclose(a.slots, b.slots, atol=1e-5, rtol=0)


def test_pipelined_frames_are_answered_in_order(server, backend):
    clip = make_video(seed=210, frames=16)
    got = run(stream_clip(server.target, clip, window=6))
    assert [r.frame_index for r in got] == list(range(len(clip)))
    assert_matches(got, reference(backend, server.model_dir, clip))


def test_resume_after_a_dropped_connection_continues_exactly(server, backend):
    clip = make_video(seed=220, frames=16)

    async def scenario():
        results: dict[int, FrameResult] = {}
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            for index in range(8):
                await stream.send(clip[index])
            for _ in range(5):
                answer = await stream.receive()
                results[answer.frame_index] = answer
            stream.cancel()
            await asyncio.sleep(0.2)
        async with Client(server.target) as second:
            opened = await stream.reconnect(second)
            assert opened.last_frame_index == 4
            for index in range(8, len(clip)):
                await stream.send(clip[index])
            while len(results) < len(clip):
                answer = await stream.receive()
                results[answer.frame_index] = answer
            await stream.close()
        return [results[i] for i in range(len(clip))]

    assert_matches(run(scenario()), reference(backend, server.model_dir, clip))


@pytest.fixture(scope="module")
def default_sized_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model's architecture (``smoothsa_cnn``, 64x64, 6 slots of 64) with random weights, exported."""
    source = save_tiny_model(tmp_path_factory.mktemp("smoothsa_cnn"), get_config("smoothsa_cnn").model)
    return quick_export(source, tmp_path_factory.mktemp("export") / "smoothsa_cnn")


def served_agreement(export: Path, seed: int) -> tuple[float, float]:
    """Serve one 100-frame synthetic stream with the torch and the onnx backend; check that their slots agree
    to 1e-4 and return (share of pixels with the same segmentation, share of pixels tied within the tie rule's
    tolerance in the torch stream)."""
    clip = list(generate_video("medium", seed=seed, num_frames=100, size=(64, 64)).frames)
    outputs = {}
    for name in ("torch", "onnx"):
        started = ServerThread(make_config(export, backend=name)).start()
        try:
            outputs[name] = run(stream_clip(started.target, clip, window=4, outputs=agreement.OUTPUTS))
        finally:
            started.stop(0.5)
    held = {name: [agreement.held(answer) for answer in answers] for name, answers in outputs.items()}
    measured = agreement.compare(held["torch"], held["onnx"], seed)
    assert measured.slots_max_abs <= 1e-4, f"slots differ by up to {measured.slots_max_abs:.3g}"
    return measured.segmentation_agreement, measured.tied


@pytest.mark.skipif(not HAVE_ONNXRUNTIME, reason="onnxruntime missing")
def test_onnx_serves_what_torch_serves(default_sized_export):
    """The issue's acceptance check with the default architecture: over a 100-frame stream the onnx server's
    segmentations equal the torch server's on >= 99.9 % of the pixels, and the slots agree to 1e-4.

    With random weights the recurrence contracts: over a long stream the slots drift together until their masks
    tie to within float rounding over much of the frame. The service's segmentation gives such near-ties to the
    lowest-numbered slot (``plugins.segmentation``), so the two backends must agree on every pixel's slot, ties
    included; the test also checks that it measured real ties, which a plain argmax would leave to rounding.
    """
    agreement, tied = served_agreement(default_sized_export, seed=230)
    assert tied > 0.01, f"only {tied:.2%} of the pixels tied: the tie rule was not exercised"
    assert agreement >= 0.999


@pytest.fixture(scope="module")
def default_model_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default model (trained weights), exported."""
    return quick_export(DEFAULT_MODEL, tmp_path_factory.mktemp("export") / "default")


@pytest.mark.skipif(not HAVE_ONNXRUNTIME, reason="onnxruntime missing")
def test_the_default_model_served_by_onnx_matches_torch(default_model_export):
    """The same check on the shipped weights, whose slots share regions of the background (near-tied masks)."""
    agreement, _ = served_agreement(default_model_export, seed=230)
    assert agreement >= 0.999
