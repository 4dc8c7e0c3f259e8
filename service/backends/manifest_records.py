"""The records ``manifest.json`` is made of, the names of the graphs and their tensors, and :class:`ManifestError`.

Data only, no reading or checking: :mod:`service.backends.manifest_parsing` builds them from the
JSON, :mod:`service.backends.manifest` holds the :class:`~service.backends.manifest.Manifest` that groups them
(and re-exports every name defined here, its public home). A field added to a record after the format's first
release has a default, which is what a manifest written before the field means (the compatibility policy in
:mod:`service.backends.manifest`).

Only the standard library and :mod:`plugins.frame_fit` are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plugins.frame_fit import FrameFitName

FIRST_STEP = "first_step"
STEP = "step"
GRAPH_FILES = {FIRST_STEP: "first_step.onnx", STEP: "step.onnx"}
PRECISIONS = ("fp32", "fp16")

INPUT_FRAMES = "frames"
INPUT_PREV_SLOTS = "prev_slots"
OUTPUT_SLOTS = "slots"
OUTPUT_MASKS = "masks"
BATCH_AXIS = "batch"

#: Each graph's inputs, in order: the names the exporter traces and the backends feed by name.
GRAPH_INPUTS: dict[str, tuple[str, ...]] = {FIRST_STEP: (INPUT_FRAMES,), STEP: (INPUT_FRAMES, INPUT_PREV_SLOTS)}
#: Both graphs' outputs, in order.
GRAPH_OUTPUTS: tuple[str, ...] = (OUTPUT_SLOTS, OUTPUT_MASKS)


class ManifestError(ValueError):
    """A manifest is missing, unreadable or of an unknown format; the message says which and how to fix it."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: tensor name in the graph.
        shape: dimensions; the dynamic batch axis is the string ``"batch"``.
        dtype: numpy dtype name.
    """

    name: str
    shape: list[int | str]
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph.

    Attributes:
        file: file name inside the export directory.
        sha256: digest of the file.
        inputs: its inputs, in order.
        outputs: its outputs, in order.
        operators: operator type -> node count.
    """

    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    operators: dict[str, int]


@dataclass(frozen=True)
class InputSpec:
    """What the ``frames`` input holds and which pre-processing is (or is not) inside the graph.

    Attributes:
        height: H.
        width: W.
        layout: axis order.
        channels: channel order.
        dtype: numpy dtype name.
        value_range: range of the values.
        outside_graph: what the caller must do before the graph (decode, resize, scale).
        inside_graph: the normalisation the graph applies itself.
        frame_fit: how the source model was trained to see frames of another aspect ratio
            (``VideoSlotModel.frame_fit``: ``"stretch"``, ``"crop"`` or ``"pad"``); ``None`` when it records none
            (and in manifests written before it was recorded). Written to the JSON only when set.
    """

    height: int
    width: int
    outside_graph: str
    inside_graph: str
    layout: str = "NCHW"
    channels: str = "RGB"
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    frame_fit: FrameFitName | None = None


@dataclass(frozen=True)
class SourceSpec:
    """The PyTorch model the graphs were exported from.

    Attributes:
        version: :func:`service.engine.model_version` of the source (equal for every backend serving it).
        weights_sha256: digest of ``model.safetensors``.
        config: the model's constructor arguments.
    """

    version: str
    weights_sha256: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Float64Reference:
    """A runtime and fp32 PyTorch both measured against float64 PyTorch, which tells fp32 rounding from an export
    fault where the fp32 comparison exceeded its limit (the rule: :func:`training.export.parity.measure_parity`).

    The maxima are over the parity run's calls (the video fed recurrently, each implementation with its own
    slots, and the single calls at each batch size), for slots or for soft masks.

    Attributes:
        runtime_slots_max_abs: the runtime's largest slot distance from float64 PyTorch.
        runtime_masks_max_abs: the runtime's largest soft-mask distance from float64 PyTorch.
        pytorch_slots_max_abs: fp32 PyTorch's own (the model as saved) largest slot distance from float64 PyTorch.
        pytorch_masks_max_abs: the same for soft masks.
        rounding_slots_max_abs: the largest slot distance from float64 PyTorch of fp32 PyTorch and of its
            :attr:`moved_weight_runs` runs with every weight moved by one unit in the last place: how far fp32
            rounding alone takes this model.
        rounding_masks_max_abs: the same for soft masks.
        moved_weight_runs: the fp32 runs with moved weights in the rounding figures.
        rounding_factor: how many times the rounding figure at a call the runtime may be from float64 PyTorch
            there, beyond the limit.
        excess_max_abs: the largest, over the calls and the two outputs, of the runtime's distance from float64
            PyTorch minus :attr:`rounding_factor` times the rounding figure at that call (negative: nearer
            everywhere); the maxima pass where it is within the report's ``max_abs_threshold``.
        excess_at: where it is largest: the call and the output (``frame 3 of the video (slots)``,
            ``the first_step call at batch 8 (soft masks)``).
        runtime_at_excess: the runtime's distance from float64 PyTorch there.
        pytorch_at_excess: fp32 PyTorch's own (the model as saved) distance from float64 PyTorch there.
        rounding_at_excess: the rounding figure there.
        error: why float64 PyTorch could not run (then every figure is infinite and the check fails); empty when
            it ran.
    """

    runtime_slots_max_abs: float
    runtime_masks_max_abs: float
    pytorch_slots_max_abs: float
    pytorch_masks_max_abs: float
    rounding_slots_max_abs: float
    rounding_masks_max_abs: float
    moved_weight_runs: int
    rounding_factor: float
    excess_max_abs: float
    excess_at: str
    runtime_at_excess: float
    pytorch_at_excess: float
    rounding_at_excess: float
    error: str = ""


@dataclass(frozen=True)
class ParityReport:
    """Measured agreement of a runtime with PyTorch on a synthetic video fed recurrently.

    Attributes:
        runtime: the runtime and provider measured.
        frames: video length (frame 0 through ``first_step``, the rest through ``step`` with fed-back slots).
        videos: videos run side by side (the batch size of the run).
        slots_max_abs: largest absolute slot difference over all frames.
        masks_max_abs: largest absolute soft-mask difference over all frames.
        argmax_agreement: fraction of the mask pixels given the same slot by
            :func:`plugins.segmentation.segment` (the service's segmentation: near-ties go to the lowest slot).
        argmax_tied: fraction of mask pixels where PyTorch's two most likely slots differ by at most
            :attr:`tie_tolerance`, so the tie rule and not the model decided them (untrained models often have
            identical slots; trained ones, slots that share the background).
        argmax_agreement_all: the same comparison with a plain argmax, which float rounding decides at ties.
        batch_sizes: batch sizes at which both graphs were checked row by row against PyTorch.
        passed: whether the thresholds below held.
        max_abs_threshold: the threshold for both maximum differences.
        agreement_threshold: the threshold for :attr:`argmax_agreement`.
        tie_tolerance: the segmentation's tie tolerance: the largest top-2 gap of a tied pixel.
        build: what the measured runtime was built for, where that decides what ran: for TensorRT the
            precision, ``max_batch_size`` (the profile), TensorRT version, GPU and TF32
            (``service.backends.tensorrt_backend.EngineBuild``), so a server building other engines can say they
            were not checked. Empty for ONNX Runtime's CPU run, and in manifests written before it was recorded.
        reference_slots_max_abs: the largest absolute slot value PyTorch itself produced over the video: slots
            that grow large over the frames amplify float rounding, a model's divergence rather than an export
            bug. 0 in manifests written before it was recorded.
        first_frame_over_limit: the first frame of the video (0 is the ``first_step`` frame) where the slot or
            soft-mask difference exceeded :attr:`max_abs_threshold`; ``None`` when none did (the batch-size checks
            may still have), and in manifests written before it was recorded.
        float64_reference: where the slot or soft-mask difference exceeded :attr:`max_abs_threshold` in an fp32
            check, the runtime and fp32 PyTorch measured against float64 PyTorch: :attr:`passed` may then hold
            with maxima above the threshold, when the runtime is no farther from float64 than fp32 rounding
            allows. ``None`` where it did not run (maxima within the threshold, fp16 checks) and in manifests
            written before it was recorded.
    """

    runtime: str
    frames: int
    videos: int
    slots_max_abs: float
    masks_max_abs: float
    argmax_agreement: float
    argmax_tied: float
    argmax_agreement_all: float
    batch_sizes: list[int]
    passed: bool
    max_abs_threshold: float
    agreement_threshold: float
    tie_tolerance: float
    build: dict[str, Any] = field(default_factory=dict)
    reference_slots_max_abs: float = 0.0
    first_frame_over_limit: int | None = None
    float64_reference: Float64Reference | None = None
