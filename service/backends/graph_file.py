"""An exported graph file read as data and held to its manifest entry, before any runtime loads it.

The manifest's SHA-256 of a graph proves the file is the one the entry names, not that the entry describes it: a
hand-edited manifest (its digest updated to match another graph, its ``opset``, its operator counts or its
``tensorrt_problems`` changed) would pass the digest. :func:`check_graph_file` reads what the graph itself says
and refuses an entry that says otherwise:

- its inputs and outputs, names and shapes in order (:func:`check_recorded_signature`);
- its ``metadata_props``: which graph it is, the usage block, the source model's version
  (:func:`~service.backends.graph_metadata.check_graph_metadata`);
- its default-domain opset against the manifest's ``opset``, and its operators, node by node, against the entry's
  ``operators`` counts;
- the export's own serving checks run again on the graph (:func:`training.export.operators.check_operators`): no
  control flow, no random or custom operator, and, for TensorRT, only operators and opsets its parser takes. So
  an export whose ``tensorrt_problems`` were deleted from its manifest is still refused by the ``tensorrt``
  backend.

Both accelerated backends call it for each graph before they create a session or build an engine; it needs the
``onnx`` package (the ``export`` extra, which the ``onnx`` and ``gpu`` extras bring) and no runtime, so the
``tensorrt`` backend's checks run on machines without TensorRT or a GPU too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.backends.graph_metadata import check_graph_metadata
from service.backends.manifest_records import ManifestError
from service.engine import BackendUnavailable

if TYPE_CHECKING:
    import onnx

    from service.backends.manifest import Manifest

Signature = list[tuple[str, list[Any]]]
"""Tensors as ``(name, shape)`` pairs in order; a shape lists ints and the names of symbolic axes (``None`` for an
axis with neither)."""

_REEXPORT = "re-run python -m training.export"


def check_graph_file(manifest: Manifest, graph: str, path: Path, *, tensorrt: bool) -> None:
    """Check that the graph file ``path`` is what the manifest's ``graph`` entry records (see the module docstring).

    Args:
        manifest: the export's manifest.
        graph: ``first_step`` or ``step``.
        path: the entry's file.
        tensorrt: whether TensorRT will run the graph, so that TensorRT's own limits count too.

    Raises:
        ManifestError: the file is not an ONNX graph, or it differs from its entry or fails a serving check; the
            message names the entry, the file and both sides.
        BackendUnavailable: the ``onnx`` package is missing (the message names the extra to install).
    """
    from training.export.operators import check_operators

    proto = _load_graph(path)
    where = f"the manifest's {graph} graph, {path.name},"
    inputs, outputs = graph_signature(proto)
    check_recorded_signature(manifest, graph, "inputs", inputs)
    check_recorded_signature(manifest, graph, "outputs", outputs)
    check_graph_metadata(manifest, graph, {entry.key: entry.value for entry in proto.metadata_props})
    report = check_operators(proto)
    if report.opset != manifest.opset:
        raise ManifestError(
            f"{where} imports opset {report.opset}, but the manifest records opset {manifest.opset}; {_REEXPORT}"
        )
    recorded = manifest.graphs[graph].operators
    if report.operators != recorded:
        raise ManifestError(
            f"{where} has the operators {_counts(report.operators)}, but the manifest records {_counts(recorded)}; "
            f"{_REEXPORT}"
        )
    refusal = report.refusal(graph, tensorrt=tensorrt)
    if refusal is not None:
        raise ManifestError(f"{path.name}: {refusal}")


def check_recorded_signature(manifest: Manifest, graph: str, kind: str, loaded: Signature) -> None:
    """Check a graph's ``kind`` (``inputs`` or ``outputs``) as a runtime or the file gives them against the
    manifest's record of them.

    Raises:
        ManifestError: a name, an order or a shape differs, naming the entry and both lists.
    """
    spec = manifest.graphs[graph]
    recorded_specs = spec.inputs if kind == "inputs" else spec.outputs
    recorded = [(tensor.name, list(tensor.shape)) for tensor in recorded_specs]
    if loaded != recorded:
        raise ManifestError(
            f"the manifest's {graph} graph, {spec.file}, has the {kind} {loaded}, but the manifest records "
            f"{recorded}; {_REEXPORT}"
        )


def _load_graph(path: Path) -> onnx.ModelProto:
    try:
        import onnx
    except ImportError as error:
        from plugins.extras import install_command

        raise BackendUnavailable(
            f"checking {path.name} against its manifest needs the onnx package: {install_command('onnx')}"
        ) from error
    try:  # the weights stay on disk when a graph keeps them outside the file; only the structure is read
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and onnx's errors derive from Exception
        raise ManifestError(f"{path} is not a readable ONNX graph ({error}); {_REEXPORT}") from error


def graph_signature(proto: onnx.ModelProto) -> tuple[Signature, Signature]:
    """The inputs and the outputs of the graph ``proto`` as it declares them."""
    return _signature(proto.graph.input), _signature(proto.graph.output)


def _signature(values: Sequence[onnx.ValueInfoProto]) -> Signature:
    return [(value.name, [_dim(dim) for dim in value.type.tensor_type.shape.dim]) for value in values]


def _dim(dim: onnx.TensorShapeProto.Dimension) -> int | str | None:
    if dim.HasField("dim_param"):
        return dim.dim_param
    if dim.HasField("dim_value"):
        return dim.dim_value
    return None


def _counts(operators: dict[str, int]) -> str:
    return ", ".join(f"{op} x{count}" for op, count in sorted(operators.items()))


__all__ = ["Signature", "check_graph_file", "check_recorded_signature", "graph_signature"]
