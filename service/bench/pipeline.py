"""In-process per-frame pipeline timing (decode, model, masks; no gRPC): the baseline for the service overhead."""

from __future__ import annotations

import time

import numpy as np

from service.config import ServiceConfig
from service.images import prepare_frame
from service.postprocess import MaskRequest, mask_outputs
from service.types import EncodedImage


class PipelineBench:
    """Times what the server does for one frame of one stream, minus gRPC and scheduling: decode the frame
    (raw RGB, or JPEG as the client sends it) and resize it, run ``first_step``/``step`` at batch size 1, and
    compute the segmentation.

    Args:
        config: the served configuration: the engine is loaded as the server loads it (backend, device, threads
            and backend options), so the baseline and the server run the same model the same way.
        clip: frames (uint8 ``[H, W, 3]``), cycled.
        jpeg_quality: decode the frames from JPEG at this quality, as the server does for a client that sends
            JPEG (``None``: raw RGB).
        mask_size: ``(H, W)`` of the segmentation (``None``: the model's input size).
    """

    def __init__(
        self,
        config: ServiceConfig,
        clip: list[np.ndarray],
        jpeg_quality: int | None = None,
        mask_size: tuple[int, int] | None = None,
    ) -> None:
        from service.client.encoding import encode_image
        from service.server import default_engine_factory

        self.engine = default_engine_factory(config)
        self.card = self.engine.card
        self.engine.warmup([1])
        self._images: list[EncodedImage] = [encode_image(frame, jpeg_quality) for frame in clip]
        self._request = MaskRequest(mask_size or self.card.image_size)
        self._state: np.ndarray | None = None
        self._next = 0

    def time_frames(self, count: int) -> tuple[list[float], list[float]]:
        """Run ``count`` frames of one continuing stream; returns per-frame pipeline and model-call times in ms."""
        pipeline, model = [], []
        for _ in range(count):
            image = self._images[self._next % len(self._images)]
            self._next += 1
            started = time.perf_counter()
            tensor = prepare_frame(image, self.card.image_size, 1 << 30)[None]  # [3, H, W] -> [1, 3, H, W]
            called = time.perf_counter()
            out = self.engine.first_step(tensor) if self._state is None else self.engine.step(tensor, self._state)
            returned = time.perf_counter()
            mask_outputs(out.masks, [self._request])
            self._state = out.state
            pipeline.append((time.perf_counter() - started) * 1e3)
            model.append((returned - called) * 1e3)
        return pipeline, model
