"""A stream of the service run in this process, without a server: :class:`LocalStream`.

For notebooks, evaluation scripts and world-model pipelines that hold their frames in memory. Every frame goes
through the server's own code: taken as the client sends it (an array as raw RGB, JPEG or PNG bytes as they are),
decoded and fitted to the model (:func:`service.images.fit_frame`), stepped through the engine from the stream's
state, and its masks resized and segmented by :func:`service.postprocess.mask_outputs`. The results are therefore
a server stream's with the same model, backend, frame fit and mask size: bitwise equal to those of a server that
runs every frame alone (``--max-batch-size 1``) or that batches streams on the torch backend at one torch thread
(its default), within float32 rounding of a server that batches streams otherwise (README, "Serving").
``python -m service.extract`` runs its sources through it.

Example::

    from service import LocalStream

    stream = LocalStream.open()  # the embedded default model, torch on the CPU
    for frame in frames:  # uint8 [H, W, 3] RGB arrays
        result = stream.process(frame, mask_size=frame.shape[:2])
        result.slots, result.segmentation  # float32 [K, D], uint8 [H, W]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.client.encoding import ImageLike, encode_image
from service.config import DEFAULT_MODEL_DIR, ServiceConfig
from service.engine import Engine, ModelCard, load_engine
from service.errors import ErrorCode, FrameRejected
from service.images import fit_frame
from service.postprocess import MaskRequest, mask_outputs
from service.runner import NOT_FINITE, finite_rows
from service.session_limits import SessionLimits
from service.types import FrameFit


@dataclass(frozen=True)
class LocalResult:
    """One frame's outputs, as a server stream's ``FrameResult`` carries them.

    Attributes:
        frame_index: the frame's place in the stream: 0 for the first :meth:`LocalStream.process` call, one more
            for each later call (refused frames included), until :meth:`LocalStream.reset`.
        slots: float32 ``[K, D]``, in slot order (slot ``k`` follows the same object from frame to frame).
        segmentation: uint8 ``[H, W]`` at the mask size: the slot of each pixel, ties to the lowest slot;
            :data:`service.types.OUTSIDE_VIEW` (255) outside the part of the frame the model saw (a crop).
        soft_masks: float32 ``[K, H, W]`` summing to 1 over K (0 outside the view), or ``None`` when not asked for.
    """

    frame_index: int
    slots: np.ndarray
    segmentation: np.ndarray
    soft_masks: np.ndarray | None


class LocalStream:
    """One stream's recurrent state and the frames it is given, in order.

    Args:
        engine: a loaded engine (:func:`service.engine.load_engine`), or use :meth:`open`.
        frame_fit: how frames are fitted to the model's input; ``None`` or ``UNSPECIFIED``: as a server does by
            default (the fit the model was trained with, else ``STRETCH``).
        max_image_pixels: the largest frame taken (width x height), as the server's ``--max-image-pixels``
            (default: the server's default).
    """

    def __init__(
        self, engine: Engine, frame_fit: FrameFit | None = None, *, max_image_pixels: int | None = None
    ) -> None:
        if frame_fit is None or frame_fit == FrameFit.UNSPECIFIED:
            frame_fit = SessionLimits().frame_fit_for(engine.card)
        self.engine = engine
        self.frame_fit = frame_fit
        self.max_image_pixels = ServiceConfig().max_image_pixels if max_image_pixels is None else max_image_pixels
        self._state: np.ndarray | None = None
        self._next_index = 0

    @classmethod
    def open(
        cls,
        model_dir: str | os.PathLike[str] = DEFAULT_MODEL_DIR,
        *,
        backend: str = "torch",
        device: str = "cpu",
        frame_fit: FrameFit | str | None = None,
    ) -> LocalStream:
        """Load ``model_dir`` (a model folder; an export folder for ``backend="onnx"``) and start a stream of it.

        Args:
            frame_fit: a :class:`FrameFit` or its name (``"stretch"``, ``"crop"``, ``"pad"``); ``None``: the
                server's default for the model.

        Raises:
            FileNotFoundError, ValueError: ``model_dir`` holds no model the backend can load (the message says
                what is missing), or ``frame_fit`` names no fit.
            service.engine.BackendUnavailable: the backend is unknown or its extra is not installed.
        """
        fit = FrameFit.named(frame_fit) if isinstance(frame_fit, str) else frame_fit
        engine = load_engine(backend, Path(model_dir), name="local", device=device, max_batch_size=1)
        return cls(engine, fit)

    @property
    def card(self) -> ModelCard:
        """The model's card: ``num_slots`` (K), ``slot_dim`` (D), ``image_size`` and the rest."""
        return self.engine.card

    @property
    def state(self) -> np.ndarray | None:
        """The state the next frame continues from (float32 ``[1, K, D]``), ``None`` before the first frame."""
        return self._state

    def reset(self) -> None:
        """Start again: the next frame is a first frame (no state), with index 0."""
        self._state = None
        self._next_index = 0

    def process(
        self, image: ImageLike, *, mask_size: tuple[int, int] | None = None, soft_masks: bool = False
    ) -> LocalResult:
        """Run one frame from the stream's state and continue the stream from it.

        Args:
            image: uint8 ``[H, W, 3]`` RGB array, or the bytes of a JPEG or PNG (decoded as the server decodes
                them).
            mask_size: ``(H, W)`` of the segmentation and soft masks; ``None``: the model's input size, as a
                server's default.
            soft_masks: also return the float32 soft masks.

        Raises:
            ValueError: ``image`` is no image (not uint8 ``[H, W, 3]``, nor JPEG or PNG bytes), or ``mask_size``
                is not two positive whole numbers; the frame does not count.
            FrameRejected: a frame a server answers with a ``FrameError`` (``code`` and ``message`` as the
                server's): it cannot be decoded, is beyond ``max_image_pixels``, or its outputs are not finite.
                The frame counts (the next frame's index is one more), the state stays that of the frame
                before, as in a stream.
        """
        encoded = encode_image(image)  # [H, W, 3] uint8 -> RAW_RGB8, as the client sends it
        card = self.engine.card
        size = card.image_size if mask_size is None else _checked_mask_size(mask_size)
        index = self._next_index
        self._next_index += 1
        fitted = fit_frame(encoded, card.image_size, self.max_image_pixels, self.frame_fit)
        pixels = fitted.pixels[None]  # [3, H, W] -> [1, 3, H, W]: a batch of one
        out = self.engine.first_step(pixels) if self._state is None else self.engine.step(pixels, self._state)
        if not finite_rows(out)[0]:
            raise FrameRejected(ErrorCode.INFERENCE_FAILED, NOT_FINITE)
        self._state = out.state
        (masks,) = mask_outputs(out.masks, [MaskRequest(size, soft=soft_masks, view=fitted.view)])
        assert masks.segmentation is not None
        return LocalResult(index, out.slots[0], masks.segmentation, masks.soft_masks)


def _checked_mask_size(mask_size: tuple[int, int]) -> tuple[int, int]:
    """``mask_size`` as a pair of ints, or a ValueError naming it."""
    try:
        height, width = (int(side) for side in mask_size)
        whole = all(int(side) == side for side in mask_size)
    except (TypeError, ValueError):
        whole = False
    if not whole or height < 1 or width < 1:
        raise ValueError(f"mask_size must be (height, width), two positive whole numbers, got {mask_size!r}")
    return height, width


__all__ = ["LocalResult", "LocalStream"]
