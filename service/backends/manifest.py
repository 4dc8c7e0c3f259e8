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

The records a manifest is made of are defined in :mod:`service.backends.manifest_records`, read from the JSON by
:mod:`service.backends.manifest_parsing`, and the ``input`` object is checked by
:mod:`service.backends.manifest_input_checks`; this module holds :class:`Manifest` and the reading and writing
of the file, and re-exports those modules' public names (``__all__``): import them from here.

Only the standard library is imported here and in those modules, so serving code can read a manifest cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plugins.model_files import (
    EXPORT_MANIFEST_FILE,
    WEIGHTS_FILE,
    format_version_problem,
    parse_json,
    run_folder_models,
)
from service.backends import manifest_parsing as parsing
from service.backends.manifest_input_checks import (
    GRAPH_DTYPE,
    INSIDE_GRAPH_SUFFIX,
    SERVED_CHANNELS,
    SERVED_INPUT,
    SERVED_LAYOUT,
    SERVED_VALUE_RANGE,
    check_input,
)
from service.backends.manifest_records import (
    BATCH_AXIS,
    FIRST_STEP,
    GRAPH_FILES,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    INPUT_FRAMES,
    INPUT_PREV_SLOTS,
    OUTPUT_MASKS,
    OUTPUT_SLOTS,
    PRECISIONS,
    STEP,
    Float64Reference,
    GraphSpec,
    InputSpec,
    ManifestError,
    ParityReport,
    SourceSpec,
    TensorSpec,
)

__all__ = [
    "BATCH_AXIS",
    "FIRST_STEP",
    "GRAPH_DTYPE",
    "GRAPH_FILES",
    "GRAPH_INPUTS",
    "GRAPH_OUTPUTS",
    "INPUT_FRAMES",
    "INPUT_PREV_SLOTS",
    "INSIDE_GRAPH_SUFFIX",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "OUTPUT_MASKS",
    "OUTPUT_SLOTS",
    "PRECISIONS",
    "SERVED_CHANNELS",
    "SERVED_INPUT",
    "SERVED_LAYOUT",
    "SERVED_VALUE_RANGE",
    "STEP",
    "Float64Reference",
    "GraphSpec",
    "InputSpec",
    "Manifest",
    "ManifestError",
    "ParityReport",
    "SourceSpec",
    "TensorSpec",
    "file_sha256",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FILE = EXPORT_MANIFEST_FILE
MANIFEST_FORMAT = 1


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
            ManifestError: not JSON, arrays and objects nested deeper than
                :data:`~plugins.model_files.MAX_JSON_NESTING` levels (:func:`~plugins.model_files.parse_json`), an
                unknown format version, a missing field (``missing field 'num_slots'``, dotted inside objects:
                ``'input.height'``), a value of the wrong type, a graph ``file`` that is no bare file name, or an
                ``input`` the graphs or the runtimes disagree with (:meth:`check_input`).
        """
        try:
            raw = parse_json(text)
        except ValueError as error:  # not JSON, or nested too deeply (parse_json's message says which)
            raise ManifestError(str(error)) from error
        if not isinstance(raw, dict):
            raise ManifestError(f"expected a manifest (a JSON object) with format_version {MANIFEST_FORMAT}")
        problem = format_version_problem(raw.get("format_version"), MANIFEST_FORMAT, "export manifest")
        if problem is not None:
            raise ManifestError(problem)
        try:
            parsing.require(raw, parsing.required_fields(cls), "")
            manifest = cls(
                input=parsing.input_spec(raw["input"]),
                num_slots=parsing.positive_int(raw, "num_slots"),
                slot_dim=parsing.positive_int(raw, "slot_dim"),
                mask_size=parsing.int_pair(raw["mask_size"], "mask_size"),
                first_iters=parsing.positive_int(raw, "first_iters"),
                later_iters=parsing.positive_int(raw, "later_iters"),
                opset=parsing.positive_int(raw, "opset"),
                precision=parsing.precision(raw["precision"]),
                graphs={name: parsing.graph_spec(spec, f"graphs.{name}") for name, spec in raw["graphs"].items()},
                source=SourceSpec(
                    **parsing.known_fields(
                        SourceSpec, parsing.require(raw["source"], parsing.required_fields(SourceSpec), "source")
                    )
                ),
                parity=parsing.parity_reports(raw.get("parity", {})),
                exporter=dict(raw.get("exporter", {})),
                tensorrt_ops_source=str(raw.get("tensorrt_ops_source", "")),
                tensorrt_problems=parsing.string_list(raw.get("tensorrt_problems", []), "tensorrt_problems"),
                usage=parsing.json_object(raw.get("usage", {}), "usage"),
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
        compare each graph file with what is recorded here (:func:`~service.backends.graph_file.check_graph_file`),
        so a graph filed under the other step's name (the two entries swapped, file, digest and signature together,
        which pass the digest check) is refused at start-up instead of failing every call. A graph the manifest lacks
        is left to :func:`read_manifest`, which names it.

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
        """Check that ``input`` describes what the graphs take and what the runtimes feed them:
        :func:`service.backends.manifest_input_checks.check_input` on this manifest's ``input``, ``graphs`` and
        ``source.config``.

        Raises:
            ManifestError: naming the field, its value and what the graphs have or the runtimes feed.
        """
        check_input(self.input, self.graphs, self.source.config)


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
