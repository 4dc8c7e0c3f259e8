"""The inference engine interface that every backend implements, and the backend loader.

An engine runs the two recurrent steps of a slot model on a *batch of streams*: ``first_step`` for streams
at their first frame and ``step`` for the rest, with the per-stream states stacked on the batch axis. This
is exactly the signature of the exported ONNX graphs (``first_step(frames) -> slots, masks`` and
``step(frames, prev_slots) -> slots, masks``, dynamic batch axis), so ``torch``, ``onnx`` and ``tensorrt``
backends are interchangeable and the same conformance tests run against each.

Arrays at this boundary are numpy on the host; a backend moves them to its device.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from plugins.frame_fit import FrameFitName
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE

#: Backend name -> module defining ``load_engine`` (imported only when that backend is selected).
BACKEND_MODULES: dict[str, str] = {
    "torch": "service.backends.torch_backend",
    "onnx": "service.backends.onnx_backend",
    "tensorrt": "service.backends.tensorrt_backend",
}


@dataclass(frozen=True)
class ModelCard:
    """What a served model takes and gives (proto ``ModelCard``).

    Attributes:
        name: name clients use to select it.
        version: digest of the model's files (equal versions mean equal weights).
        backend: backend name.
        device: device the model runs on.
        image_size: ``(H, W)`` of the model input.
        num_slots: K.
        slot_dim: D.
        mask_size: ``(h, w)`` of the masks the model produces.
        max_batch_size: most frames per call the engine accepts.
        preprocessing: how frames become model input, in words.
        frame_fit: how the model was trained to see frames of another aspect ratio (its ``config.json``'s
            ``input.frame_fit``, or the export manifest's); ``None`` when it records none.
        default_frame_fit: the fit a stream that sets none gets on the server describing this card (proto
            ``ModelCard.default_frame_fit``); ``None`` on an engine's own card, where the server decides it.
        available_models: every model the server describing this card serves, its default first (proto
            ``ModelCard.available_models``); empty on an engine's own card.
        max_request_bytes: the largest request message the server describing this card accepts
            (``--max-message-bytes``; proto ``ModelCard.max_request_bytes``); 0 on an engine's own card, or from
            a server that does not report it.
        max_image_pixels: the largest image (width x height) that server accepts (``--max-image-pixels``; proto
            ``ModelCard.max_image_pixels``); 0 on an engine's own card, or from a server that does not report it.
        shared_memory: the server describing this card reads frames from shared memory for the caller that asked
            (``--shared-memory``, a caller on its host; proto ``ModelCard.shared_memory``); False on an engine's own
            card, or from a server older than the field.
    """

    name: str
    version: str
    backend: str
    device: str
    image_size: tuple[int, int]
    num_slots: int
    slot_dim: int
    mask_size: tuple[int, int]
    max_batch_size: int
    preprocessing: str
    frame_fit: FrameFitName | None = None
    default_frame_fit: FrameFitName | None = None
    available_models: tuple[str, ...] = ()
    max_request_bytes: int = 0
    max_image_pixels: int = 0
    shared_memory: bool = False


@dataclass(frozen=True)
class EngineOutput:
    """The result of one batched step; row ``b`` belongs to the ``b``-th stream of the call.

    Attributes:
        slots: float32 ``[B, K, D]``.
        masks: float32 ``[B, K, h, w]`` soft masks, summing to 1 over K.
        state: float32 ``[B, K, D]``: the recurrent state to pass to :meth:`Engine.step` with each stream's
            next frame.
    """

    slots: np.ndarray
    masks: np.ndarray
    state: np.ndarray


class Engine(abc.ABC):
    """A loaded model that runs batched recurrent steps.

    Contract, checked by ``tests/service/test_engine_conformance.py`` for every backend:

    - ``first_step`` and ``step`` take float32 frames ``[B, 3, H, W]`` in ``[0, 1]`` at ``card.image_size``,
      for any ``1 <= B <= card.max_batch_size``; ``step`` also takes the stacked states ``[B, K, D]``.
    - Rows are independent: row ``b`` of a batched call equals a call on that row alone (up to float
      rounding), so streams can share calls.
    - Deterministic: the same inputs give the same outputs.
    - Calls come from at most :attr:`max_concurrency` threads at once (default 1: engines need not be
      thread-safe). An engine that runs calls in parallel safely (and gains from it, like a CPU engine using
      one core per call) raises it; the server then runs that many batches at once ("model instances").

    Attributes:
        card: the model card.
    """

    card: ModelCard

    @property
    def max_concurrency(self) -> int:
        """How many calls may run at once from different threads."""
        return 1

    @property
    def tunes_per_batch_size(self) -> bool:
        """Whether the first call at each new batch size does slow one-off work (cuDNN's exhaustive convolution
        algorithm search, a compilation), which the server must run in :meth:`warmup` at every batch size the
        micro-batcher can form (1 to the largest), not only at 1 and the largest. Default ``False``: a new batch
        size costs nothing more than its call."""
        return False

    @abc.abstractmethod
    def first_step(self, frames: np.ndarray) -> EngineOutput:
        """Run the first frame of each stream in the batch.

        Args:
            frames: float32 ``[B, 3, H, W]`` in ``[0, 1]``.
        """

    @abc.abstractmethod
    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        """Run a later frame of each stream in the batch.

        Args:
            frames: float32 ``[B, 3, H, W]`` in ``[0, 1]``.
            state: float32 ``[B, K, D]``: each stream's state from its previous frame.
        """

    def warmup(self, batch_sizes: Sequence[int]) -> None:
        """Run both steps once at each batch size so the first real frame is not slow.

        Backends with per-shape compilation or tuning (TensorRT profiles, CUDA graphs, cuDNN's algorithm search)
        do it here, never on a frame: the server passes every batch size it can run to an engine whose
        :attr:`tunes_per_batch_size` is true.
        """
        height, width = self.card.image_size
        for size in batch_sizes:
            frames = np.zeros((size, 3, height, width), dtype=np.float32)
            out = self.first_step(frames)
            self.step(frames, out.state)

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing to free
        """Free the engine's resources; the engine is unusable afterwards."""


def check_batch(
    frames: np.ndarray, state: np.ndarray | None = None, *, image_size: tuple[int, int] | None = None
) -> None:
    """Refuse a call outside the engine contract before the model sees it, naming the fix:

    - ``frames`` that are no numpy array (a torch tensor: ``tensor.cpu().numpy()``);
    - a batch of no frames (on which ONNX Runtime's CPU kernels kill the whole process: SIGFPE, no Python
      exception);
    - frames of an integer (or other non-floating) dtype: the ``onnx`` and ``tensorrt`` backends would cast
      ``uint8`` 0-255 values to float32 and run the model on them silently (``frames.astype(np.float32) / 255``);
    - frames not laid out ``[B, 3, H, W]`` (one frame without the batch axis, channels last);
    - with ``image_size`` (the card's), frames of another ``(H, W)``: resize them to the card's ``image_size``;
    - a ``state`` of another batch size than ``frames`` (a model broadcasts a batch of one against the other
      input's rows, answering rows that mix streams; the exported ``step`` graph fails on it, but graphs exported
      before it had that check do not).

    Floating dtypes other than float32 pass: the ``onnx`` and ``tensorrt`` backends convert them, and the
    ``torch`` backend's model refuses any but its weights' dtype. Only the array's type, dtype and shape are
    looked at (a few comparisons), never its values, so values outside ``[0, 1]`` are the caller's to avoid.

    Raises:
        ValueError: naming what is wrong and how to fix it.
    """
    if not isinstance(frames, np.ndarray):
        raise ValueError(
            f"frames must be a numpy array [B, 3, H, W], not {type(frames).__module__}.{type(frames).__name__}"
            " (a torch tensor: pass tensor.cpu().numpy())"
        )
    batch = frames.shape[0] if frames.ndim else 0
    if batch < 1:
        raise ValueError(f"a call needs at least one frame (frames {list(frames.shape)}): an empty batch is never run")
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(
            f"frames are {frames.dtype}, but engines take float32 in [0, 1]: pass frames.astype(np.float32) / 255"
        )
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames {list(frames.shape)} are not laid out [B, 3, H, W]{_layout_hint(frames.shape)}")
    if image_size is not None and tuple(frames.shape[2:]) != tuple(image_size):
        height, width = image_size
        raise ValueError(
            f"frames are {frames.shape[2]}x{frames.shape[3]} (H x W), but the model takes {height}x{width}: resize "
            "them to the card's image_size (service.images.to_model_input resizes a PIL image and scales it to "
            "[0, 1])"
        )
    if state is not None and (state.ndim == 0 or state.shape[0] != batch):
        raise ValueError(
            f"step got {batch} frames but states of {state.shape[0] if state.ndim else 0} streams: each row of the "
            "state is the stream whose frame is the same row of frames"
        )


def _layout_hint(shape: tuple[int, ...]) -> str:
    """How to reach ``[B, 3, H, W]`` from frames of ``shape``, for the common mistakes; empty when none fits."""
    if len(shape) == 3 and shape[0] == 3:
        return ": one frame [3, H, W] needs the batch axis, frames[None]"
    if len(shape) == 3 and shape[-1] == 3:
        return ": one channels-last frame [H, W, 3] becomes a batch with frames.transpose(2, 0, 1)[None]"
    if len(shape) == 4 and shape[-1] == 3:
        return ": channels-last frames [B, H, W, 3] become [B, 3, H, W] with frames.transpose(0, 3, 1, 2)"
    return ""


class EngineLoader(Protocol):
    """What a backend module's ``load_engine`` looks like."""

    def __call__(
        self, model_dir: Path, *, name: str, device: str, max_batch_size: int, options: Mapping[str, Any] | None
    ) -> Engine:
        """Load the model in ``model_dir`` on ``device`` under ``name`` (``options``: the backend's settings)."""
        ...


class BackendUnavailable(RuntimeError):
    """The selected backend cannot be used here; the message says what to install or choose instead."""


def normalise_device(device: str) -> str:
    """``--device`` as every backend reads it: surrounding blanks removed, in lower case (``" CPU"`` -> ``"cpu"``).

    :func:`load_engine` hands the backends the device in this form and the configuration stores it so, hence
    ``device.startswith("cpu")`` and the backends' own parsing (ONNX Runtime's provider, ``torch.device``, the
    TensorRT GPU index) agree on which device it names."""
    return device.strip().lower()


def load_engine(
    backend: str,
    model_dir: str | os.PathLike[str],
    *,
    name: str,
    device: str,
    max_batch_size: int,
    options: Mapping[str, Any] | None = None,
) -> Engine:
    """Load ``model_dir`` (a path, or a string naming one) with ``backend``.

    ``options`` are the backend's settings (keyword arguments of its options class, see
    :meth:`service.config.ServiceConfig.backend_options`); ``None`` or empty lets the backend use its defaults,
    which the ``onnx`` and ``tensorrt`` backends read from their ``SLOTSTREAM_*`` variables. ``device`` is read
    in any case (:func:`normalise_device`).

    Raises:
        BackendUnavailable: unknown backend, or its module or optional dependency is missing.
    """
    model_dir = Path(model_dir)
    module_name = BACKEND_MODULES.get(backend)
    if module_name is None:
        raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_MODULES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise BackendUnavailable(
                f"the {backend!r} backend is not part of this installation ({module_name} is missing); "
                "use --backend torch"
            ) from error
        raise BackendUnavailable(
            f"the {backend!r} backend needs the package {error.name!r}, which is not installed"
        ) from error
    loader: EngineLoader = module.load_engine
    device = normalise_device(device)
    return loader(model_dir, name=name, device=device, max_batch_size=max_batch_size, options=options)


def model_version(model_dir: Path, files: Sequence[str] = (CONFIG_FILE, WEIGHTS_FILE)) -> str:
    """A short digest of the model's files: equal versions mean equal configuration and weights."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode())
        with (model_dir / name).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]
