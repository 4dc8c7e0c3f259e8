"""``manifest.json``: what an export directory holds, written by the exporter and read by the ONNX/TensorRT backends.

An export directory is a model directory (``config.json`` + ``model.safetensors``, copied from the source, so
the ``torch`` backend serves it too) plus the two graphs and this manifest::

    first_step.onnx   frames [B, 3, H, W]                   -> slots [B, K, D], masks [B, K, h, w]
    step.onnx         frames [B, 3, H, W], prev_slots [B, K, D] -> slots [B, K, D], masks [B, K, h, w]
    manifest.json     input size and normalisation, K and D, opset, output names and shapes, the source
                      weights' hash, the operators used, the measured parity and how to use the graphs
                      (``usage``: the call order, the state, the batch rules, what the masks are)

Compatibility within one :data:`MANIFEST_FORMAT` (a server reads manifests of exporters older and newer than it):

- *Older manifests*: every field added after the format's first release has a default, which is what a manifest
  written before the field means (``InputSpec.frame_fit``, ``ParityReport.build``, ``reference_slots_max_abs``,
  ``first_frame_over_limit`` and ``float64_reference``, ``Manifest.tensorrt_problems``, ``Manifest.usage``).
- *Newer manifests*: keys this version does not know are ignored, in every object (top level, ``input``,
  ``source``, the tensor specs, the parity records): a newer exporter's additions. Readers of earlier releases
  ignored them only at the top level and in the parity records and refuse any other unknown key, so a field added
  to another object is written only when it holds something (:meth:`Manifest.to_json` leaves ``input.frame_fit``
  out when it is ``None``): every manifest that does not use the field still reads there.
- A change an older reader must not ignore (a field whose absence it would misread) needs a new format version.

What the ``input`` object says the graphs take is checked against the graphs' entries and against what the
runtimes feed (:meth:`Manifest.check_input`): float32 NCHW RGB frames in ``[0, 1]``, normalised inside the graph.

Only the standard library is imported here, so serving code can read a manifest cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plugins.frame_fit import FRAME_FITS, FrameFitName
from plugins.model_files import WEIGHTS_FILE, run_folder_models

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1

FIRST_STEP = "first_step"
STEP = "step"
GRAPH_FILES = {FIRST_STEP: "first_step.onnx", STEP: "step.onnx"}
PRECISIONS = ("fp32", "fp16")

INPUT_FRAMES = "frames"
INPUT_PREV_SLOTS = "prev_slots"
OUTPUT_SLOTS = "slots"
OUTPUT_MASKS = "masks"
BATCH_AXIS = "batch"

#: The dtype of every graph input and output (the graphs are fp32; ``precision`` is for engines built from them).
GRAPH_DTYPE = "float32"
SERVED_LAYOUT = "NCHW"
SERVED_CHANNELS = "RGB"
SERVED_VALUE_RANGE = (0.0, 1.0)
#: What every runtime feeds the ``frames`` input: ``input`` field -> its only value (:meth:`Manifest.check_input`).
SERVED_INPUT: dict[str, str | tuple[float, float]] = {
    "layout": SERVED_LAYOUT,
    "channels": SERVED_CHANNELS,
    "dtype": GRAPH_DTYPE,
    "value_range": SERVED_VALUE_RANGE,
}
#: How every exporter ended ``input.inside_graph``: the normalisation is the graph's own.
INSIDE_GRAPH_SUFFIX = "inside the graph"

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


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs to know about an export directory.

    Attributes:
        input: the frames input.
        num_slots: K.
        slot_dim: D.
        mask_size: ``(h, w)`` of the masks.
        first_iters: Slot Attention iterations unrolled in ``first_step``.
        later_iters: Slot Attention iterations unrolled in ``step``.
        opset: default-domain ONNX opset.
        precision: precision the accelerated runtimes should build with (``fp32`` or ``fp16``); the ONNX
            graphs themselves are always fp32.
        graphs: ``first_step`` and ``step``.
        source: the source model.
        parity: runtime name -> its parity run.
        exporter: tool versions that wrote the graphs.
        tensorrt_ops_source: the support matrix the operators were checked against.
        tensorrt_problems: what that check found in an export made with ``--onnxruntime-only`` (one line per
            problem, the graph's name first); the ``tensorrt`` backend refuses an export that lists any. Empty, or
            missing in manifests written before it was recorded: the graphs passed the check.
        usage: how to call the graphs and read their outputs from another runtime, as data (the call order and
            the state fed back, the batch rules, what the masks are, the service's segmentation rule, the frame
            fit a stream gets by default; ``training.export.usage`` writes it and says what each entry means). Read
            as written, not interpreted by the backends; empty in manifests written before it was recorded, and
            then left out of the JSON.
        format_version: manifest format.
    """

    input: InputSpec
    num_slots: int
    slot_dim: int
    mask_size: tuple[int, int]
    first_iters: int
    later_iters: int
    opset: int
    precision: str
    graphs: dict[str, GraphSpec]
    source: SourceSpec
    parity: dict[str, ParityReport] = field(default_factory=dict)
    exporter: dict[str, str] = field(default_factory=dict)
    tensorrt_ops_source: str = ""
    tensorrt_problems: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    format_version: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        """The manifest as indented JSON; ``input.frame_fit`` only when set (readers of earlier releases refuse the
        key, see the module docstring), ``usage`` only when it holds something."""
        raw = asdict(self)
        if self.input.frame_fit is None:
            del raw["input"]["frame_fit"]
        if not self.usage:
            del raw["usage"]
        return json.dumps(raw, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse :meth:`to_json` output.

        Raises:
            ManifestError: not JSON, an unknown format version, a missing field (``missing field 'num_slots'``,
                dotted inside objects: ``'input.height'``), a value of the wrong type, or an ``input`` the graphs
                or the runtimes disagree with (:meth:`check_input`).
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ManifestError(f"not valid JSON: {error}") from error
        if not isinstance(raw, dict) or raw.get("format_version") != MANIFEST_FORMAT:
            raise ManifestError(f"expected a manifest with format_version {MANIFEST_FORMAT}")
        try:
            _require(raw, _required_fields(cls), "")
            manifest = cls(
                input=_input_spec(raw["input"]),
                num_slots=_positive_int(raw, "num_slots"),
                slot_dim=_positive_int(raw, "slot_dim"),
                mask_size=_int_pair(raw["mask_size"], "mask_size"),
                first_iters=_positive_int(raw, "first_iters"),
                later_iters=_positive_int(raw, "later_iters"),
                opset=_positive_int(raw, "opset"),
                precision=_precision(raw["precision"]),
                graphs={name: _graph_spec(spec, f"graphs.{name}") for name, spec in raw["graphs"].items()},
                source=SourceSpec(
                    **_known_fields(SourceSpec, _require(raw["source"], _required_fields(SourceSpec), "source"))
                ),
                parity=_parity_reports(raw.get("parity", {})),
                exporter=dict(raw.get("exporter", {})),
                tensorrt_ops_source=str(raw.get("tensorrt_ops_source", "")),
                tensorrt_problems=_string_list(raw.get("tensorrt_problems", []), "tensorrt_problems"),
                usage=_object(raw.get("usage", {}), "usage"),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as error:  # AttributeError: wrong type
            raise ManifestError(f"malformed manifest: {type(error).__name__}: {error}") from error
        manifest.check_tensor_names()
        manifest.check_shapes()
        manifest.check_input()
        return manifest

    def check_tensor_names(self) -> None:
        """Check that the ``first_step`` and ``step`` graphs are recorded with their own inputs and outputs
        (:data:`GRAPH_INPUTS`, :data:`GRAPH_OUTPUTS`), in order. The backends feed each graph by these names, and
        compare the loaded graph with what is recorded here (``onnx_backend.check_signature``), so a graph filed
        under the other step's name (the two entries swapped, file, digest and signature together, which pass the
        digest check) is refused at start-up instead of failing every call. A graph the manifest lacks is left to
        :func:`read_manifest`, which names it.

        Raises:
            ManifestError: a graph's recorded inputs or outputs are not its step's (the message says when they
                are the other step's).
        """
        for graph_name, inputs in GRAPH_INPUTS.items():
            graph = self.graphs.get(graph_name)
            if graph is None:
                continue
            recorded = ([spec.name for spec in graph.inputs], [spec.name for spec in graph.outputs])
            expected = (list(inputs), list(GRAPH_OUTPUTS))
            if recorded == expected:
                continue
            others = [
                other for other, names in GRAPH_INPUTS.items() if other != graph_name and list(names) == recorded[0]
            ]
            swapped = (
                f"; those are the {others[0]} graph's: the manifest's graph entries are swapped" if others else ""
            )
            raise ManifestError(
                f"the {graph_name} graph ({graph.file}) is recorded as taking {recorded[0]} and giving {recorded[1]}, "
                f"but a {graph_name} graph takes {expected[0]} and gives {expected[1]}{swapped}; re-run python -m "
                "training.export"
            )

    def check_shapes(self) -> None:
        """Check that the graphs' recorded shapes agree with the input size, K, D and mask size.

        Raises:
            ManifestError: a graph's frames, previous-slots, slots or masks shape says otherwise (a hand-edited
                manifest, or one whose graphs belong to another model).
        """
        height, width = self.input.height, self.input.width
        mask_h, mask_w = self.mask_size
        expected: dict[str, list[int | str]] = {
            INPUT_FRAMES: [BATCH_AXIS, 3, height, width],
            INPUT_PREV_SLOTS: [BATCH_AXIS, self.num_slots, self.slot_dim],
            OUTPUT_SLOTS: [BATCH_AXIS, self.num_slots, self.slot_dim],
            OUTPUT_MASKS: [BATCH_AXIS, self.num_slots, mask_h, mask_w],
        }
        for graph_name, graph in self.graphs.items():
            for spec in (*graph.inputs, *graph.outputs):
                want = expected.get(spec.name)
                if want is not None and list(spec.shape) != want:
                    raise ManifestError(
                        f"the {graph_name} graph's {spec.name!r} is {list(spec.shape)}, but the manifest's input "
                        f"size {height}x{width}, {self.num_slots} slots of {self.slot_dim} and {mask_h}x{mask_w} "
                        f"masks make it {want}; re-run python -m training.export"
                    )

    def check_input(self) -> None:
        """Check that ``input`` describes what the graphs take and what the runtimes feed them.

        The graphs take float32 ``frames [batch, 3, H, W]`` (recorded in their entries, checked by
        :meth:`check_shapes`), and every backend feeds them decoded RGB frames scaled to ``[0, 1]`` as float32 NCHW
        (:data:`SERVED_INPUT`), which the graph normalises itself. A manifest saying otherwise (``NHWC``,
        ``float16``, ``[0, 255]``, ``BGR``, no normalisation inside the graph) was edited by hand, and another
        runtime following it would feed the graphs wrongly while the service serves them as exported. Every
        recorded graph input and output must be float32 too: the graphs are fp32 (``precision`` says which
        engines accelerated runtimes build from them).

        ``inside_graph`` is a description: it must say that the normalisation is ``inside the graph``, as every
        exporter wrote it, and name the source's encoder (``source.config``'s ``encoder.name``) when the source
        records one.

        Raises:
            ManifestError: naming the field, its value and what the graphs have or the runtimes feed.
        """
        spec = self.input
        for graph_name, graph in self.graphs.items():
            for kind, tensors in (("inputs", graph.inputs), ("outputs", graph.outputs)):
                for index, tensor in enumerate(tensors):
                    if tensor.dtype != GRAPH_DTYPE:
                        raise ManifestError(
                            f"graphs.{graph_name}.{kind}[{index}].dtype is {tensor.dtype!r}, but the exported graphs "
                            f"take and give {GRAPH_DTYPE} (fp16 engines are built from them at load: precision "
                            "says so); re-run python -m training.export"
                        )
        frames = next(
            (tensor for graph in self.graphs.values() for tensor in graph.inputs if tensor.name == INPUT_FRAMES), None
        )
        has = f"the graphs' {INPUT_FRAMES} input is {frames.dtype} {list(frames.shape)}, and " if frames else ""
        low, high = spec.value_range
        recorded: dict[str, str | tuple[float, float]] = {
            "layout": spec.layout,
            "channels": spec.channels,
            "dtype": spec.dtype,
            "value_range": (low, high),
        }
        for name, served in SERVED_INPUT.items():
            if recorded[name] != served:
                raise ManifestError(
                    f"input.{name} is {_json_value(recorded[name])}, but {has}every runtime feeds the graphs "
                    f"{_served_input()}: input.{name} must be {_json_value(served)} (a manifest edited by hand; "
                    "re-run python -m training.export)"
                )
        encoder = _encoder_name(self.source.config)
        inside = spec.inside_graph
        described = isinstance(inside, str) and inside.endswith(INSIDE_GRAPH_SUFFIX)
        if not described or (encoder is not None and encoder not in inside):
            whose = f"the source's {encoder} encoder's" if encoder else "the source encoder's"
            naming = f" names {encoder} and" if encoder else ""
            raise ManifestError(
                f"input.inside_graph is {json.dumps(inside)}, but the graphs normalise the [0, 1] frames themselves "
                f"({whose} normalisation, exported into them): the export's description of it{naming} ends "
                f"{INSIDE_GRAPH_SUFFIX!r} (a manifest edited by hand; re-run python -m training.export)"
            )


def read_manifest(directory: str | os.PathLike[str], verify_graphs: bool = False) -> Manifest:
    """Read ``directory/manifest.json`` and check that the graphs it names exist.

    Args:
        directory: the export directory.
        verify_graphs: also check each graph's SHA-256 against the manifest, and that of ``model.safetensors``
            when the directory holds one (what runtimes do before use).

    Raises:
        ManifestError: the manifest or a graph is missing (the message says how to make them), unreadable, or
            (with ``verify_graphs``) a graph or the weights are not the ones the manifest describes.
    """
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        folder = Path(directory)
        models = run_folder_models(folder)
        if models:  # a training run: its models are RUN/best and RUN/model, neither of them exported
            named = " or ".join(str(model) for model in models)
            raise ManifestError(
                f"{path} not found: {folder} is a training run, not an export directory; export one of its models "
                f"({named}) with `python -m training.export --model {models[0]} --out <export dir>` and use that"
            )
        if (folder / WEIGHTS_FILE).is_file():  # a saved model: export it into a folder of its own
            how = f"export it with `python -m training.export --model {folder} --out <export dir>` and use that"
        else:
            how = f"make one with `python -m training.export --model <model dir> --out {folder}`"
        raise ManifestError(f"{path} not found: {folder} is not an export directory; {how}")
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (ManifestError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: {error}") from error
    for name in GRAPH_FILES:
        if name not in manifest.graphs:
            raise ManifestError(f"{path} names no {name!r} graph; re-run python -m training.export")
        graph_path = Path(directory) / manifest.graphs[name].file
        if not graph_path.is_file():
            raise ManifestError(f"{graph_path} (named by {path}) not found; re-run python -m training.export")
        if verify_graphs and file_sha256(graph_path) != manifest.graphs[name].sha256:
            raise ManifestError(
                f"{graph_path} is not the graph {path} describes (SHA-256 differs); re-run python -m training.export"
            )
    weights = Path(directory) / WEIGHTS_FILE
    if verify_graphs and weights.is_file() and file_sha256(weights) != manifest.source.weights_sha256:
        raise ManifestError(
            f"{weights} holds other weights than the graphs were exported from (SHA-256 differs from {path}'s "
            "source.weights_sha256): the backends would serve different models under one version; re-run python "
            "-m training.export on the model directory"
        )
    return manifest


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``directory`` atomically (temporary file + rename)."""
    path = Path(directory) / MANIFEST_FILE
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".manifest.", delete=False) as handle:
        handle.write(manifest.to_json())
        temporary = Path(handle.name)
    os.chmod(temporary, 0o644)  # readable by a server running as another user, like the graphs
    os.replace(temporary, path)
    return path


def _known_fields(cls: type[Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``raw`` that name a field of the dataclass ``cls``: those a newer exporter adds are left out
    (the module docstring's compatibility policy)."""
    known = {spec.name for spec in dataclasses.fields(cls)}
    return {key: value for key, value in raw.items() if key in known}


def _required_fields(cls: type[Any]) -> list[str]:
    """The fields of the dataclass ``cls`` without a default: those every manifest has."""
    return [
        spec.name
        for spec in dataclasses.fields(cls)
        if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    ]


def _require(raw: Any, names: list[str], where: str) -> dict[str, Any]:
    """``raw``, checked to be an object holding every key of ``names``.

    Args:
        raw: a JSON object of the manifest.
        names: the keys it must hold.
        where: its dotted path in the manifest (``""`` for the top level), for the message.

    Raises:
        ManifestError: ``raw`` is not an object, or lacks a key (the message names the first, with its path).
    """
    if not isinstance(raw, dict):
        raise ManifestError(f"malformed manifest: {where or 'the manifest'} must be an object, got {raw!r}")
    missing = [name for name in names if name not in raw]
    if missing:
        fields = ", ".join(repr(f"{where}.{name}" if where else name) for name in missing)
        plural, it = ("s", "them") if len(missing) > 1 else ("", "it")
        raise ManifestError(
            f"missing field{plural} {fields}: every manifest python -m training.export writes has {it}; re-run "
            f"python -m training.export (or restore {it})"
        )
    return raw


def _parity_reports(raw: dict[str, Any]) -> dict[str, ParityReport]:
    """The parity records. Fields this version does not know are ignored (a newer exporter's additions); a
    record without a field this version needs is an error, since a backend may refuse to serve on its result.
    Fields with a default (``build``) are optional: older exports lack them."""
    required = set(_required_fields(ParityReport))
    reports = {}
    for name, report in raw.items():
        missing = sorted(required - set(report))
        if missing:
            raise ManifestError(
                f"the {name!r} parity record lacks {', '.join(missing)}; re-run python -m training.export"
            )
        if not isinstance(report.get("build", {}), dict):
            raise ManifestError(f"the {name!r} parity record's build must be an object, got {report['build']!r}")
        known = _known_fields(ParityReport, report)
        known["float64_reference"] = _float64_reference(report.get("float64_reference"), name)
        reports[name] = ParityReport(**known)
    return reports


def _float64_reference(raw: Any, name: str) -> Float64Reference | None:
    """The ``float64_reference`` object of the parity record ``name`` (``None``: null or absent); keys this
    version does not know are ignored.

    Raises:
        ManifestError: it is neither an object nor null, or lacks a field.
    """
    if raw is None:
        return None
    where = f"parity.{name}.float64_reference"
    return Float64Reference(
        **_known_fields(Float64Reference, _require(raw, _required_fields(Float64Reference), where))
    )


def _object(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"{key} must be an object, got {value!r}")
    return dict(value)


def _json_value(value: str | tuple[float, float]) -> str:
    """``value`` as the manifest's JSON writes it (a range as a list)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _served_input() -> str:
    """:data:`SERVED_INPUT` in words."""
    low, high = SERVED_VALUE_RANGE
    return f"{GRAPH_DTYPE} {SERVED_LAYOUT} {SERVED_CHANNELS} frames in [{low:g}, {high:g}]"


def _encoder_name(config: dict[str, Any]) -> str | None:
    """The encoder's registry name in a model config (``config["encoder"]["name"]``), ``None`` where it has none."""
    encoder = config.get("encoder") if isinstance(config, dict) else None
    name = encoder.get("name") if isinstance(encoder, dict) else None
    return name if isinstance(name, str) and name else None


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ManifestError(f"{key} must be a list of strings, got {value!r}")
    return list(value)


def _positive_int(raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(f"{key} must be a whole number >= 1, got {value!r}")
    return value


def _int_pair(value: Any, key: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ManifestError(f"{key} must be a list of two whole numbers, got {value!r}")
    first, second = (_positive_int({key: item}, key) for item in value)
    return first, second


def _precision(value: Any) -> str:
    if value not in PRECISIONS:
        raise ManifestError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return str(value)


def _input_spec(raw: dict[str, Any]) -> InputSpec:
    """The ``input`` object; keys this version does not know are ignored (a newer exporter's additions)."""
    _require(raw, _required_fields(InputSpec), "input")
    low, high = raw.get("value_range", (0.0, 1.0))
    fit = raw.get("frame_fit")
    if fit is not None and fit not in FRAME_FITS:
        raise ManifestError(f"input.frame_fit must be one of {', '.join(FRAME_FITS)} or null, got {fit!r}")
    return InputSpec(**{**_known_fields(InputSpec, raw), "value_range": (float(low), float(high))})


def _graph_spec(raw: dict[str, Any], where: str) -> GraphSpec:
    _require(raw, _required_fields(GraphSpec), where)
    return GraphSpec(
        file=str(raw["file"]),
        sha256=str(raw["sha256"]),
        inputs=[_tensor_spec(spec, f"{where}.inputs[{index}]") for index, spec in enumerate(raw["inputs"])],
        outputs=[_tensor_spec(spec, f"{where}.outputs[{index}]") for index, spec in enumerate(raw["outputs"])],
        operators={str(k): int(v) for k, v in raw["operators"].items()},
    )


def _tensor_spec(raw: Any, where: str) -> TensorSpec:
    return TensorSpec(**_known_fields(TensorSpec, _require(raw, _required_fields(TensorSpec), where)))
