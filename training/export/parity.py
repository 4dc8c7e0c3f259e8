"""Parity of an exported runtime with PyTorch: a synthetic video fed recurrently, and row-wise batch checks.

The recurrent run is what serving does: frame 0 goes through ``first_step``, every later frame through ``step``
with *that runtime's own* slots from the previous frame, so differences are allowed to accumulate over the
video exactly as they would in a stream. Thresholds (fp32): max absolute difference of slots and of soft
masks <= 1e-4, and the argmax masks identical on >= 99.9 % of pixels.

Argmax masks are compared as the service computes them, with :func:`plugins.segmentation.segment`: where
two slots' soft masks are within 1e-4 (the soft-mask bound above) the lowest-numbered slot wins, so float
rounding does not decide the pixel. Trained models have such near-ties over whole regions (two slots sharing
the background), and a plain argmax there differs between runtimes whose masks agree to 1e-6. The share of
pixels the tie rule decided (``argmax_tied``) and the plain argmax's agreement (``argmax_agreement_all``) are
reported alongside.

The graphs are traced at one batch size (:data:`training.export.graphs.EXAMPLE_BATCH`) and their batch axis is
dynamic, so a component that fixes the batch size in Python (a loop or branch over ``x.shape[0]``) gives a graph
that fails or answers wrongly at every other batch size: a runtime call at such a batch size that raises, or
answers another batch size, raises :class:`BatchSizeError`, and
:func:`training.export.batch_axis.fixed_batch_diagnosis` names the component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from plugins import SlotState, VideoSlotModel
from plugins.segmentation import SEGMENTATION_TIE_TOLERANCE, near_ties, segment
from service.backends.manifest import (
    FIRST_STEP,
    INPUT_FRAMES,
    INPUT_PREV_SLOTS,
    OUTPUT_MASKS,
    OUTPUT_SLOTS,
    STEP,
    ParityReport,
)
from training.export.errors import ExportError

FP32_MAX_ABS = 1e-4
FP32_AGREEMENT = 0.999
PARITY_FRAMES = 50
PARITY_VIDEOS = 2
BATCH_SIZES = (1, 3, 8)


class StepResult(Protocol):
    """What a runtime returns for one call (:class:`service.engine.EngineOutput` fits)."""

    @property
    def slots(self) -> np.ndarray:
        """float32 ``[B, K, D]``."""
        ...

    @property
    def masks(self) -> np.ndarray:
        """float32 ``[B, K, h, w]``."""
        ...


class Runtime(Protocol):
    """The two recurrent steps of some runtime (any :class:`service.engine.Engine` fits)."""

    def first_step(self, frames: np.ndarray) -> StepResult:
        """``frames [B, 3, H, W]`` -> outputs."""
        ...

    def step(self, frames: np.ndarray, state: np.ndarray) -> StepResult:
        """``frames [B, 3, H, W]`` and the previous slots ``[B, K, D]`` -> outputs."""
        ...


class BatchSizeError(ExportError):
    """A runtime's graph raised, or answered another batch size, at a batch size of the parity run.

    Attributes:
        which: the graph, ``"first_step"`` or ``"step"``.
        batch: the batch size it was called at.
    """

    def __init__(self, message: str, which: str, batch: int) -> None:
        super().__init__(message)
        self.which = which
        self.batch = batch


@dataclass(frozen=True)
class _Outputs:
    slots: np.ndarray
    masks: np.ndarray


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, which the export runs its graphs in.

    Raises:
        ImportError: it is not installed; the message names the extra that installs it.
    """
    try:
        import onnxruntime
    except ImportError as error:
        from service.backends.onnx_providers import GPU_EXTRA

        raise ImportError(
            "the export runs its graphs in ONNX Runtime, which is not installed: pip install -e '.[onnx]' (the CPU "
            f"build), or on a GPU machine the GPU build: {GPU_EXTRA}"
        ) from error
    return onnxruntime


class OrtGraphs:
    """The two exported graphs in ONNX Runtime sessions on the CPU (one thread), as a :class:`Runtime`.

    Args:
        first_step: path of ``first_step.onnx``.
        step: path of ``step.onnx``.
    """

    def __init__(self, first_step: Path, step: Path) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._first = ort.InferenceSession(str(first_step), options, providers=providers)
        self._step = ort.InferenceSession(str(step), options, providers=providers)
        self.name = f"onnxruntime {ort.__version__} CPUExecutionProvider"

    def first_step(self, frames: np.ndarray) -> _Outputs:
        """See :class:`Runtime`."""
        slots, masks = self._first.run([OUTPUT_SLOTS, OUTPUT_MASKS], {INPUT_FRAMES: frames})
        return _Outputs(slots, masks)

    def step(self, frames: np.ndarray, state: np.ndarray) -> _Outputs:
        """See :class:`Runtime`."""
        feed = {INPUT_FRAMES: frames, INPUT_PREV_SLOTS: state}
        slots, masks = self._step.run([OUTPUT_SLOTS, OUTPUT_MASKS], feed)
        return _Outputs(slots, masks)


def synthetic_video(size: tuple[int, int], frames: int = PARITY_FRAMES, videos: int = PARITY_VIDEOS) -> np.ndarray:
    """``videos`` synthetic multi-object clips (``medium`` level) side by side: float32 ``[T, B, 3, H, W]``."""
    from training.datasets.synthetic import generate_video

    clips = [generate_video("medium", seed=seed, num_frames=frames, size=size).frames for seed in range(videos)]
    stacked = np.stack(clips, axis=1)  # [T, B, H, W, 3] uint8
    return np.ascontiguousarray(stacked.transpose(0, 1, 4, 2, 3), dtype=np.float32) / 255.0  # [T, B, 3, H, W]


def measure_parity(
    model: VideoSlotModel,
    runtime: Runtime,
    name: str,
    video: np.ndarray,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    max_abs_threshold: float = FP32_MAX_ABS,
    agreement_threshold: float = FP32_AGREEMENT,
) -> ParityReport:
    """Compare ``runtime`` with ``model`` on ``video`` fed recurrently, then at each of ``batch_sizes``.

    Args:
        model: the PyTorch reference, in eval mode.
        runtime: the runtime under test.
        name: the runtime's name for the report.
        video: float32 ``[T, B, 3, H, W]`` in ``[0, 1]``.
        batch_sizes: batch sizes at which one call of each graph is compared with PyTorch row by row (checks
            that the batch axis is really dynamic); their differences count towards the maxima.
        max_abs_threshold: largest allowed absolute difference of slots and soft masks.
        agreement_threshold: smallest allowed fraction of identical argmax mask pixels.

    Raises:
        BatchSizeError: a runtime call raised, or returned slots or masks of another batch size than its frames
            (the message names the runtime, the graph and the batch size; the runtime's error is the cause).
    """
    slots_diff = masks_diff = magnitude = 0.0
    first_over: int | None = None
    agree = agree_all = tied = total = 0
    reference_state: torch.Tensor | None = None
    runtime_state: np.ndarray | None = None
    for index, frames in enumerate(video):
        reference, reference_state = _torch_step(model, frames, reference_state)
        out = _called(runtime, name, frames, runtime_state)
        runtime_state = out.slots
        frame_slots, frame_masks = _max_abs(out.slots, reference[0]), _max_abs(out.masks, reference[1])
        if first_over is None and max(frame_slots, frame_masks) > max_abs_threshold:
            first_over = index
        slots_diff, masks_diff = max(slots_diff, frame_slots), max(masks_diff, frame_masks)
        magnitude = max(magnitude, float(np.abs(reference[0]).max(initial=0.0)))
        reference_masks, runtime_masks = torch.from_numpy(reference[1]), torch.from_numpy(out.masks)
        agree += int((segment(runtime_masks) == segment(reference_masks)).sum())  # [B, h, w] compared
        agree_all += int((runtime_masks.argmax(dim=1) == reference_masks.argmax(dim=1)).sum())
        tied += int(near_ties(reference_masks).sum())
        total += reference_masks[:, 0].numel()
    for size in batch_sizes:
        frames = _tile(video.reshape(-1, *video.shape[2:]), size)  # [size, 3, H, W]
        (ref_slots, ref_masks), state = _torch_step(model, frames, None)
        out = _called(runtime, name, frames, None)
        (next_slots, next_masks), _ = _torch_step(model, frames, state)
        out_next = _called(runtime, name, frames, ref_slots)
        slots_diff = max(slots_diff, _max_abs(out.slots, ref_slots), _max_abs(out_next.slots, next_slots))
        masks_diff = max(masks_diff, _max_abs(out.masks, ref_masks), _max_abs(out_next.masks, next_masks))
    agreement = agree / max(total, 1)
    passed = slots_diff <= max_abs_threshold and masks_diff <= max_abs_threshold and agreement >= agreement_threshold
    return ParityReport(
        runtime=name,
        frames=int(video.shape[0]),
        videos=int(video.shape[1]),
        slots_max_abs=slots_diff,
        masks_max_abs=masks_diff,
        argmax_agreement=agreement,
        argmax_tied=tied / max(total, 1),
        argmax_agreement_all=agree_all / max(total, 1),
        batch_sizes=list(batch_sizes),
        passed=passed,
        max_abs_threshold=max_abs_threshold,
        agreement_threshold=agreement_threshold,
        tie_tolerance=SEGMENTATION_TIE_TOLERANCE,
        reference_slots_max_abs=magnitude,
        first_frame_over_limit=first_over,
    )


def _called(runtime: Runtime, name: str, frames: np.ndarray, state: np.ndarray | None) -> StepResult:
    """``runtime`` (called ``name``) on ``frames``: its ``first_step`` without ``state``, else its ``step``; raises
    :class:`BatchSizeError` when the call raises or answers another batch size than ``frames`` has."""
    batch, which = int(frames.shape[0]), FIRST_STEP if state is None else STEP
    try:
        out = runtime.first_step(frames) if state is None else runtime.step(frames, state)
    except Exception as error:  # a runtime's own error classes (ONNX Runtime's, TensorRT's) share no base
        raise BatchSizeError(
            f"{name}: the {which} graph fails at batch {batch}: {type(error).__name__}: {error}", which, batch
        ) from error
    answered = {int(out.slots.shape[0]), int(out.masks.shape[0])}
    if answered != {batch}:
        raise BatchSizeError(
            f"{name}: the {which} graph answers {batch} frames with slots {tuple(out.slots.shape)} and masks "
            f"{tuple(out.masks.shape)}",
            which,
            batch,
        )
    return out


def _torch_step(
    model: VideoSlotModel, frames: np.ndarray, state: torch.Tensor | None
) -> tuple[tuple[np.ndarray, np.ndarray], torch.Tensor]:
    with torch.inference_mode():
        tensor = torch.from_numpy(frames)
        out, next_state = model.first_step(tensor) if state is None else model.step(tensor, SlotState(slots=state))
    return (out.slots.numpy(), out.masks.numpy()), next_state.slots


def _max_abs(a: np.ndarray, b: np.ndarray | torch.Tensor) -> float:
    """The largest absolute difference; infinite when either side has a NaN or an infinity (which ``max`` over
    NaN would otherwise drop: ``max(0.0, nan)`` is ``0.0``)."""
    other = b.numpy() if isinstance(b, torch.Tensor) else b
    if a.shape != other.shape:
        # A RuntimeError, as for other failed checks: the export, not the command line, is wrong.
        raise RuntimeError(f"runtime output shape {a.shape} differs from PyTorch's {other.shape}")
    difference = np.abs(a.astype(np.float64) - other.astype(np.float64))
    return float(difference.max()) if np.isfinite(difference).all() else math.inf


def _tile(frames: np.ndarray, size: int) -> np.ndarray:
    repeats = -(-size // frames.shape[0])
    return np.ascontiguousarray(np.concatenate([frames] * repeats)[:size])
