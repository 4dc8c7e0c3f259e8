"""In-process per-frame pipeline timing (decode, model, masks; no gRPC): the baseline for the service overhead."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from service.bench.stats import summarize
from service.engine import load_engine
from service.images import prepare_frame
from service.postprocess import MaskRequest, mask_outputs
from service.types import EncodedImage, ImageEncoding


def measure_pipeline(
    backend: str, model_dir: Path, clip: list[np.ndarray], frames: int, batch_sizes: list[int], device: str = "cpu"
) -> dict[str, Any]:
    """Per-frame latency of one stream run in-process, and batched throughput.

    The per-frame latency covers what the server does for a frame minus gRPC and scheduling: decode the raw
    frame and resize it, run ``first_step``/``step`` at batch size 1, and compute the segmentation.

    Args:
        backend: engine backend.
        model_dir: model directory.
        clip: frames, cycled.
        frames: frames to time (after 10 warm-up frames).
        batch_sizes: batch sizes for the throughput measurement.
        device: device for the engine.
    """
    engine = load_engine(backend, model_dir, name=model_dir.name, device=device, max_batch_size=max(batch_sizes))
    card = engine.card
    engine.warmup(sorted({1, *batch_sizes}))
    images = [EncodedImage(ImageEncoding.RAW_RGB8, f.tobytes(), f.shape[0], f.shape[1], 3) for f in clip]
    request = MaskRequest(card.image_size)
    state = None
    latencies, model_only = [], []
    for i in range(frames + 10):
        started = time.perf_counter()
        tensor = prepare_frame(images[i % len(images)], card.image_size, 1 << 30)[None]  # [1, 3, H, W]
        called = time.perf_counter()
        out = engine.first_step(tensor) if state is None else engine.step(tensor, state)
        returned = time.perf_counter()
        mask_outputs(out.masks, [request])
        state = out.state
        if i >= 10:
            latencies.append((time.perf_counter() - started) * 1e3)
            model_only.append((returned - called) * 1e3)
    throughput = {}
    for batch in batch_sizes:
        tensors = np.stack([prepare_frame(images[j % len(images)], card.image_size, 1 << 30) for j in range(batch)])
        states = engine.first_step(tensors).state
        calls = max(5, frames // batch)
        started = time.perf_counter()
        for _ in range(calls):
            out = engine.step(tensors, states)
            mask_outputs(out.masks, [request] * batch)
        throughput[str(batch)] = round(calls * batch / (time.perf_counter() - started), 2)
    return {
        "backend": backend,
        "model": card.name,
        "model_version": card.version,
        "frame_shape": list(clip[0].shape),
        "frame_latency_ms": summarize(latencies),
        "model_call_ms": summarize(model_only),
        "frames_per_second_at_batch": throughput,
    }
