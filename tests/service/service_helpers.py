"""Helpers for the service tests: in-process servers on loopback, test clips and reference outputs.

Servers run in a background thread with their own event loop; tests drive them through the real client
library with ``asyncio.run``. Every server listens on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from plugins.testing import tiny_model_config
from service.client.sources import open_source
from service.config import ServiceConfig
from service.engine import Engine, EngineOutput, load_engine
from service.images import prepare_frame
from service.server import Server, default_engine_factory
from service.types import EncodedImage, ImageEncoding

NEEDS_GPU = "needs an NVIDIA GPU and TensorRT (the gpu extra: README, TensorRT on a GPU machine)"
NEEDS_ORT_GPU = (
    "needs an NVIDIA GPU and the GPU build of ONNX Runtime with this provider (the gpu extra: README, TensorRT on a "
    "GPU machine)"
)
HAVE_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def _has_ort_gpu_provider(provider: str) -> bool:
    """Whether ONNX Runtime offers ``provider`` and a CUDA device is visible."""
    if not (HAVE_ONNXRUNTIME and torch.cuda.is_available()):
        return False
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


#: Every backend as ``(backend, device)``, for parametrizing: the accelerated ones serve an export of the model
#: and are skipped, with the reason, where they cannot run.
BACKENDS = [
    pytest.param(("torch", "cpu"), id="torch"),
    pytest.param(
        ("onnx", "cpu"), id="onnx", marks=pytest.mark.skipif(not HAVE_ONNXRUNTIME, reason="onnxruntime missing")
    ),
    pytest.param(
        ("onnx", "cuda:0"),
        id="onnx-cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not _has_ort_gpu_provider("CUDAExecutionProvider"), reason=NEEDS_ORT_GPU),
        ],
    ),
    pytest.param(
        ("onnx", "tensorrt:0"),
        id="onnx-tensorrt-ep",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(
                not (HAVE_TENSORRT and _has_ort_gpu_provider("TensorrtExecutionProvider")), reason=NEEDS_ORT_GPU
            ),
        ],
    ),
    pytest.param(
        ("tensorrt", "cuda:0"),
        id="tensorrt",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not HAVE_TENSORRT, reason=NEEDS_GPU)],
    ),
]

#: A model that runs in a few milliseconds on a CPU: 24x24 frames, 4 slots of 16, masks at 12x12.
SERVICE_TINY_MODEL: dict[str, Any] = tiny_model_config(
    encoder={"name": "small_cnn", "kwargs": {"channels": [8, 8], "strides": [2, 1], "out_dim": 16}},
    decoder={"name": "broadcast", "kwargs": {"broadcast_size": 3, "channels": 8, "output_size": [12, 12]}},
    num_slots=4,
    image_size=[24, 24],
)


ADMIN_TOKEN = "admin-0123456789abcdefghijklmnop"
"""The operators' token the Admin tests start servers with (the ``admin_file`` fixture's)."""


def make_config(model_dir: Path, **overrides: Any) -> ServiceConfig:
    """A test config: ephemeral port, metrics off, quiet, torch's own thread count (``torch_threads=0``), plus
    ``overrides``."""
    base = ServiceConfig(
        listen="127.0.0.1:0",
        model_dir=model_dir,
        metrics_listen="",
        torch_threads=0,
        grace_period_s=5.0,
        max_queue_delay_ms=5.0,
    )
    return replace(base, **overrides)


class ServerThread:
    """A :class:`Server` running on its own event loop in a background thread."""

    def __init__(self, config: ServiceConfig, engine_factory: Callable[[ServiceConfig], Engine] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self.thread.start()
        self.server = Server(config) if engine_factory is None else Server(config, engine_factory)
        self.stopped = False

    def start(self, wait_ready: bool = True) -> ServerThread:
        self.call(self.server.start(wait_ready=wait_ready))
        return self

    @property
    def model_dir(self) -> Path:
        return self.server.config.model_dir

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def call(self, coroutine: Any, timeout: float = 60.0) -> Any:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def on_loop(self, function: Callable[[], Any]) -> Any:
        """Call ``function`` on the server's loop thread (to read its state safely)."""

        async def wrapper() -> Any:
            return function()

        return self.call(wrapper())

    def session_count(self) -> int:
        manager = self.server.manager
        assert manager is not None
        return int(self.on_loop(lambda: len(manager.sessions)))

    def model_instances(self) -> int:
        """Model calls the server's runner may run at once (after the engine's ``max_concurrency`` cap)."""
        runner = self.server._runner
        assert runner is not None
        return runner.instances

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's value, 0 when it was never exported (a labelled counter that has not counted yet)."""
        value = self.server.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else float(value)

    def gauge(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's value; fails when it is not exported, so a gauge never set cannot pass for a zero."""
        value = self.server.metrics.registry.get_sample_value(name, labels or {})
        assert value is not None, f"{name}{labels or ''} is not exported"
        return float(value)

    def stop(self, grace_s: float | None = None) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.call(self.server.stop(grace_s))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


# -- videos and reference outputs --------------------------------------------------------------------------


def make_video(seed: int, frames: int, size: tuple[int, int] = (30, 40)) -> list[np.ndarray]:
    """A reproducible clip: a few coloured squares moving over a noisy background, uint8 ``[H, W, 3]`` each."""
    rng = np.random.default_rng(seed)
    height, width = size
    background = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    objects = []
    for _ in range(3):
        position = rng.integers(0, (height - 8, width - 8))
        velocity = rng.integers(-2, 3, size=2)
        objects.append((position, velocity, rng.integers(80, 255, 3)))
    clip = []
    for t in range(frames):
        frame = background.copy()
        for position, velocity, colour in objects:
            top, left = (position + velocity * t) % (height - 8, width - 8)
            frame[top : top + 8, left : left + 8] = colour
        clip.append(frame)
    return clip


def raw(frame: np.ndarray) -> EncodedImage:
    """A frame as a raw RGB image."""
    height, width, _ = frame.shape
    return EncodedImage(ImageEncoding.RAW_RGB8, frame.tobytes(), height, width, 3)


def reference_outputs(
    model_dir: Path, clip: list[np.ndarray], mask_size: tuple[int, int] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(slots [K, D], segmentation [H, W])`` per frame from the engine alone, one frame at a time."""
    from service.postprocess import MaskRequest, mask_outputs

    engine = load_engine("torch", model_dir, name="tiny", device="cpu", max_batch_size=1)
    size = engine.card.image_size
    outputs = []
    state = None
    for frame in clip:
        tensor = prepare_frame(raw(frame), size, 1 << 30)[None]  # [1, 3, H, W]
        out = engine.first_step(tensor) if state is None else engine.step(tensor, state)
        state = out.state
        (masks,) = mask_outputs(out.masks, [MaskRequest(mask_size or size)])
        assert masks.segmentation is not None
        outputs.append((out.slots[0], masks.segmentation))
    return outputs


async def results_of(stream: Any, clip: list[np.ndarray]) -> list[Any]:
    """Send ``clip``'s frames on ``stream`` one at a time, each answered before the next; return the answers, which
    must all be results."""
    from service.types import FrameResult

    results = []
    for frame in clip:
        await stream.send(frame)
        answer = await stream.receive()
        assert isinstance(answer, FrameResult), answer
        results.append(answer)
    return results


def run(coroutine: Any, timeout: float = 120.0) -> Any:
    """Run a client coroutine to completion in a fresh event loop, with a timeout."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


async def raw_exchange(
    target: str, *requests: Any, metadata: Any = (), answer_first: bool = False
) -> tuple[list[Any], Any]:
    """Send proto requests on a raw ``Stream`` call and half-close it; return ``(responses, error)``, where
    ``error`` is the call's final ``grpc.aio.AioRpcError`` or ``None`` when it ended OK.

    With ``answer_first`` the first request's answer (or the call's end) is read before the rest is written: for an
    open the server may refuse, since a write that races the refusal can make grpc report the call as ``INTERNAL``
    ("Internal error from Core") instead of the server's status.
    """
    import grpc

    from service.generated import pb_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        call = pb_grpc.PerceptionStub(channel).Stream(metadata=metadata)
        responses = []
        rest = list(requests)
        if answer_first and rest:
            await call.write(rest.pop(0))
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as error:
                return responses, error
            if first is grpc.aio.EOF:
                return responses, None
            responses.append(first)
        try:
            for request in rest:
                await call.write(request)
            await call.done_writing()
        except Exception as error:  # the server ended the call first (a refused open): its status says why
            # grpc raises one of these, by timing (ExecuteBatchError is internal: matched by name); others are bugs
            if type(error).__name__ not in ("AioRpcError", "InvalidStateError", "ExecuteBatchError"):
                raise
        try:
            while (response := await call.read()) is not grpc.aio.EOF:  # one API: reads, never iteration
                responses.append(response)
        except grpc.aio.AioRpcError as error:
            return responses, error
        return responses, None


def wait_for_child(process: Any, ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``ready()`` holds while the child ``process`` (a ``subprocess.Popen`` with stderr piped) runs; fail
    with its stderr if it exits first, or saying ``what`` did not happen after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` (from a thread other than the server's) until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def save_tiny_model(directory: Path, model: dict[str, Any] | None = None) -> Path:
    """``model`` (default :data:`SERVICE_TINY_MODEL`) with weights drawn under torch seed 0, saved with
    ``save_pretrained`` into ``directory``."""
    from plugins import VideoSlotModel

    torch.manual_seed(0)
    VideoSlotModel(**(model or SERVICE_TINY_MODEL)).save_pretrained(directory)
    return directory


def quick_export(model_dir: Path, out: Path) -> Path:
    """``training.export`` of ``model_dir`` into ``out`` with a short parity run (2 frames, batch size 1)."""
    from training.export import ExportOptions, export_model

    export_model(model_dir, out, ExportOptions(parity_frames=2, batch_sizes=(1,)))
    return out


class SlowEngine(Engine):
    """Wraps an engine: warm-up waits for :attr:`release`, every call sleeps :attr:`delay_s`."""

    def __init__(self, inner: Engine, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.card = inner.card
        self.delay_s = delay_s
        self.release = threading.Event()

    @property
    def max_concurrency(self) -> int:
        return self.inner.max_concurrency

    def warmup(self, batch_sizes):
        assert self.release.wait(30), "warm-up was never released"
        super().warmup(batch_sizes)

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        time.sleep(self.delay_s)
        return self.inner.first_step(frames)

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        time.sleep(self.delay_s)
        return self.inner.step(frames, state)


def slow_factory(delay_s: float = 0.0, released: bool = True):
    """An engine factory making :class:`SlowEngine` wrappers of the configured engine, and the list of them."""
    engines: list[SlowEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engine = SlowEngine(default_engine_factory(config), delay_s)
        if released:
            engine.release.set()
        engines.append(engine)
        return engine

    return factory, engines


def interrupted_source_opener(frames: int) -> Callable[..., Any]:
    """An ``open_source`` stand-in for ``service.extract``: it opens ``synthetic:10`` whatever it is asked for, and
    its frames raise ``KeyboardInterrupt`` (a Ctrl-C) after ``frames`` of them."""

    def open_interrupted(spec: str, max_frames: int | None, fps: float | None, **options: Any) -> Any:
        source = open_source("synthetic:10", max_frames, fps, **options)
        given = source.frames

        def interrupted() -> Any:
            for count, frame in enumerate(given):
                if count == frames:
                    raise KeyboardInterrupt
                yield frame

        source.frames = interrupted()
        return source

    return open_interrupted
