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

A runtime is not held to the float32 rounding of PyTorch itself. A model can amplify rounding at some input
(large slots, or a near-tie inside Slot Attention's competition), where correct fp32 implementations differ by
more than 1e-4 and fp32 PyTorch is no nearer the exact answer than the runtime. So where the maximum differences
exceed the limit in an fp32 check (not an fp16 one, which has its own limits), the same calls are run in float64
PyTorch (a copy of the model, each recurrence fed its own slots) and in fp32 PyTorch with its weights moved by one
unit in the last place, and the runtime is held to float64 instead: at every call it may be from float64 by the
limit plus a multiple of how far fp32 rounding takes this model there (the rule and its reasons:
:func:`measure_parity`). The figures are recorded (:class:`service.backends.manifest.Float64Reference`), and a
failure says how far fp32 PyTorch itself is from float64 where the runtime is farthest beyond its bound.

The graphs are traced at one batch size (:data:`training.export.graphs.EXAMPLE_BATCH`) and their batch axis is
dynamic, so a component that fixes the batch size in Python (a loop or branch over ``x.shape[0]``) gives a graph
that fails or answers wrongly at every other batch size: a runtime call at such a batch size that raises, or
answers another batch size, raises :class:`BatchSizeError`, and
:func:`training.export.batch_axis.fixed_batch_diagnosis` names the component.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from plugins import VideoSlotModel
from plugins.extras import install_command
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
from training.export.float64_reference import float64_check
from training.export.parity_calls import Outputs, distances, fed_states, run_calls, torch_caller

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
            f"the export runs its graphs in ONNX Runtime, which is not installed: {install_command('onnx')} (the CPU "
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
        # Fatal only: a graph that fails at a batch size raises with ONNX Runtime's message, which the check reports;
        # the run's own log line would repeat it on stderr, before the report, without saying which component.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4

    def first_step(self, frames: np.ndarray) -> Outputs:
        """See :class:`Runtime`."""
        slots, masks = self._first.run([OUTPUT_SLOTS, OUTPUT_MASKS], {INPUT_FRAMES: frames}, self._run_options)
        return Outputs(slots, masks)

    def step(self, frames: np.ndarray, state: np.ndarray) -> Outputs:
        """See :class:`Runtime`."""
        feed = {INPUT_FRAMES: frames, INPUT_PREV_SLOTS: state}
        slots, masks = self._step.run([OUTPUT_SLOTS, OUTPUT_MASKS], feed, self._run_options)
        return Outputs(slots, masks)


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
    float64_reference: bool = True,
) -> ParityReport:
    """Compare ``runtime`` with ``model`` on ``video`` fed recurrently, then at each of ``batch_sizes``.

    The maximum differences pass when both are within ``max_abs_threshold``. When one is not and
    ``float64_reference`` is set (fp32 checks), the same calls are run in float64 PyTorch and in fp32 PyTorch
    with every weight moved by one unit in the last place (:data:`MOVED_WEIGHT_RUNS` runs, directions drawn with
    :data:`MOVED_WEIGHT_SEED`), and the maxima pass instead when, at every call (each video frame, each
    batch-size call) and for slots and soft masks separately::

        |runtime - float64| <= max_abs_threshold + ROUNDING_FACTOR * max over fp32 runs of |fp32 - float64|

    the fp32 runs being the model as saved and the moved-weight runs. Why: float64 is closer to the exact answer
    than any fp32 implementation, so the runtime is judged by its own error, not by how it differs from one fp32
    implementation's. At an input the model amplifies rounding at, correct fp32 implementations (an exported
    graph folds constants and orders sums differently, which a one-ulp change of the weights imitates) spread
    widely around float64: fp32 PyTorch as saved is one draw, and can be several times nearer float64 than
    another correct implementation (a fine-tuned model's ONNX graph was 3.2 times farther at one call). The
    factor covers that spread: with four moved-weight runs, another moved-weight run stayed within three times
    the largest in about 99 % of trials on two such models (within once that, in half of them). Where the model
    does not amplify rounding the fp32 runs are within ~1e-6 of float64, so a runtime wrong by more than the
    limit there still fails. The segmentation agreement is always measured against fp32 PyTorch, either way.

    Args:
        model: the PyTorch reference, in eval mode, on the CPU.
        runtime: the runtime under test.
        name: the runtime's name for the report.
        video: float32 ``[T, B, 3, H, W]`` in ``[0, 1]``.
        batch_sizes: batch sizes at which one call of each graph is compared with PyTorch row by row (checks
            that the batch axis is really dynamic); their differences count towards the maxima.
        max_abs_threshold: largest allowed absolute difference of slots and soft masks.
        agreement_threshold: smallest allowed fraction of identical argmax mask pixels.
        float64_reference: measure against float64 PyTorch where the maxima exceed ``max_abs_threshold`` (the
            rule above; recorded in the report's ``float64_reference``). Off for fp16 checks, whose threshold is
            not about fp32 rounding.

    Raises:
        BatchSizeError: a runtime call raised, or returned slots or masks of another batch size than its frames
            (the message names the runtime, the graph and the batch size; the runtime's error is the cause).
    """
    fed = fed_states(model, video, batch_sizes)
    reference = run_calls(torch_caller(model), video, fed)
    measured = run_calls(lambda frames, state: _called(runtime, name, frames, state), video, fed)
    differences = distances(measured, reference)  # [calls, 2]: slots, masks
    over = np.flatnonzero(differences[: len(video)].max(axis=1) > max_abs_threshold)
    slots_diff, masks_diff = (float(value) for value in differences.max(axis=0))
    within = slots_diff <= max_abs_threshold and masks_diff <= max_abs_threshold
    check = None
    if float64_reference and not within:
        check = float64_check(model, video, batch_sizes, fed, measured, reference)
        within = check.excess_max_abs <= max_abs_threshold
    agree, agree_all, tied, total = _segmentation_counts(measured[: len(video)], reference[: len(video)])
    agreement = agree / max(total, 1)
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
        passed=within and agreement >= agreement_threshold,
        max_abs_threshold=max_abs_threshold,
        agreement_threshold=agreement_threshold,
        tie_tolerance=SEGMENTATION_TIE_TOLERANCE,
        reference_slots_max_abs=max(float(np.abs(out.slots).max(initial=0.0)) for out in reference[: len(video)]),
        first_frame_over_limit=int(over[0]) if over.size else None,
        float64_reference=check,
    )


def _segmentation_counts(measured: list[Outputs], reference: list[Outputs]) -> tuple[int, int, int, int]:
    """Over the calls: pixels whose :func:`plugins.segmentation.segment` agrees, whose plain argmax agrees, that
    are near-tied in ``reference``, and all pixels."""
    agree = agree_all = tied = total = 0
    for out, ref in zip(measured, reference, strict=True):
        reference_masks, runtime_masks = torch.from_numpy(ref.masks), torch.from_numpy(out.masks)
        agree += int((segment(runtime_masks) == segment(reference_masks)).sum())  # [B, h, w] compared
        agree_all += int((runtime_masks.argmax(dim=1) == reference_masks.argmax(dim=1)).sum())
        tied += int(near_ties(reference_masks).sum())
        total += reference_masks[:, 0].numel()
    return agree, agree_all, tied, total


def _called(runtime: Runtime, name: str, frames: np.ndarray, state: np.ndarray | None) -> tuple[Outputs, np.ndarray]:
    """``runtime`` (called ``name``) on ``frames``: its ``first_step`` without ``state``, else its ``step``, as a
    :data:`Caller`; raises :class:`BatchSizeError` when the call raises or answers another batch size than
    ``frames`` has."""
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
    return Outputs(out.slots, out.masks), out.slots
