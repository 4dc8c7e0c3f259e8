"""In-process per-frame pipeline timing (decode, model, masks; no gRPC): the baseline for the service overhead."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from service.engine import load_engine
from service.images import prepare_frame
from service.postprocess import MaskRequest, mask_outputs
from service.types import EncodedImage, ImageEncoding


class PipelineBench:
    """Times what the server does for one frame of one stream, minus gRPC and scheduling: decode the raw
    frame and resize it, run ``first_step``/``step`` at batch size 1, and compute the segmentation.

    Args:
        backend: engine backend.
        model_dir: model directory.
        clip: frames (uint8 ``[H, W, 3]``), cycled.
        device: device for the engine.
    """

    def __init__(self, backend: str, model_dir: Path, clip: list[np.ndarray], device: str = "cpu") -> None:
        self.engine = load_engine(backend, model_dir, name=model_dir.name, device=device, max_batch_size=1)
        self.card = self.engine.card
        self.engine.warmup([1])
        self._images = [EncodedImage(ImageEncoding.RAW_RGB8, f.tobytes(), f.shape[0], f.shape[1], 3) for f in clip]
        self._request = MaskRequest(self.card.image_size)
        self._state: np.ndarray | None = None
        self._next = 0

    def time_frames(self, count: int) -> tuple[list[float], list[float]]:
        """Run ``count`` frames of one continuing stream; returns per-frame pipeline and model-call times in ms."""
        pipeline, model = [], []
        for _ in range(count):
            image = self._images[self._next % len(self._images)]
            self._next += 1
            started = time.perf_counter()
            tensor = prepare_frame(image, self.card.image_size, 1 << 30)[None]  # [1, 3, H, W]
            called = time.perf_counter()
            out = self.engine.first_step(tensor) if self._state is None else self.engine.step(tensor, self._state)
            returned = time.perf_counter()
            mask_outputs(out.masks, [self._request])
            self._state = out.state
            pipeline.append((time.perf_counter() - started) * 1e3)
            model.append((returned - called) * 1e3)
        return pipeline, model
