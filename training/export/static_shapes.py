"""Give every ``Reshape`` of an exported graph a constant target shape.

The tracer records ``x.flatten(2)``, ``x.reshape(-1, x.shape[1], ...)`` and the like with their sizes read from
the input at run time: each reshape gets a chain of ``Shape``, ``Gather``/``Slice``, ``Unsqueeze`` and
``Concat`` nodes that ONNX Runtime executes on every call, and shape inference loses the static sizes after it
(a ``[batch, 32, 256]`` feature map comes out as ``[batch, 32, ?]``), so later shapes cannot be folded either.

In our graphs every size except the batch is fixed by the exported model (the input size is part of the
graph), so each computed target shape is either constant or has one entry that follows the batch (``B`` or
``B * K``). :func:`freeze_reshape_shapes` runs the graph in ONNX Runtime at several batch sizes, reads the shape
each reshape produced, and replaces its target by that shape as a constant, with ``-1`` at the one entry that
changed with the batch: ``Reshape`` infers that entry from the element count, so it takes the same value as
before at every batch size. A reshape whose output has more than one entry that changes with the batch is left
as traced. The export's parity run (at batch sizes 1, 3 and 8) then checks the result like any other export.

On the default model this takes the ``step`` graph from 187 to 129 nodes and ``first_step`` from 410 to 265,
and ONNX Runtime's ``step`` p50 at batch 1 from 1.89 to 1.86 ms (``first_step`` from 2.16 to 2.10 ms), measured
side by side on one thread of the 2-core Intel Xeon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

#: Batch sizes the target shapes are evaluated at: an entry that follows the batch changes across them.
PROBE_BATCH_SIZES = (2, 3, 5)


def freeze_reshape_shapes(proto: onnx.ModelProto, batch_sizes: Sequence[int] = PROBE_BATCH_SIZES) -> int:
    """Replace the computed target shapes of ``proto``'s ``Reshape`` nodes by constants, in place.

    The ``Shape``/``Gather``/``Concat`` chains that computed them are left dangling for a dead-node pass
    (:func:`training.export.graphs.optimize`) to remove.

    Args:
        proto: a graph whose inputs have a symbolic batch axis first and fixed sizes elsewhere (float inputs).
        batch_sizes: at least two batch sizes to run the graph at.

    Returns:
        How many ``Reshape`` nodes got a constant target shape.

    Raises:
        ValueError: fewer than two distinct ``batch_sizes``.
        ImportError: ONNX Runtime is not installed (the message names the extra).
    """
    if len(set(batch_sizes)) < 2:
        raise ValueError(f"need at least two distinct batch sizes to tell batch-dependent sizes, got {batch_sizes}")
    reshapes = _computed_reshapes(proto)
    if not reshapes:
        return 0
    shapes = _output_shapes(proto, [node.output[0] for node in reshapes], batch_sizes)
    frozen = 0
    for node in reshapes:
        target = _constant_target(shapes[node.output[0]])
        if target is None:
            continue
        name = f"{node.output[0]}/frozen_shape"
        proto.graph.initializer.append(_onnx_tensor(target, name))
        node.input[1] = name
        frozen += 1
    return frozen


def _computed_reshapes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """``Reshape`` nodes whose target shape is neither an initializer nor a ``Constant`` output."""
    constants = {initializer.name for initializer in proto.graph.initializer}
    constants.update(output for node in proto.graph.node if node.op_type == "Constant" for output in node.output)
    return [node for node in proto.graph.node if node.op_type == "Reshape" and node.input[1] not in constants]


def _output_shapes(
    proto: onnx.ModelProto, names: list[str], batch_sizes: Sequence[int]
) -> dict[str, list[tuple[int, ...]]]:
    """Shapes the tensors ``names`` take when ``proto`` runs on random inputs at each batch size."""
    import onnx

    from training.export.parity import import_onnxruntime

    ort = import_onnxruntime()
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    element_types = {
        value.name: value.type.tensor_type.elem_type
        for value in (*inferred.value_info, *inferred.output, *inferred.input)
    }
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.output[:]
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, element_types.get(name, onnx.TensorProto.FLOAT), None)
        for name in names
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # fatal only: a graph that fails at a batch size raises, and its caller reports it
    generator = np.random.default_rng(0)
    shapes: dict[str, list[tuple[int, ...]]] = {name: [] for name in names}
    for batch in batch_sizes:
        feeds = {value.name: _random_input(value, batch, generator) for value in proto.graph.input}
        for name, array in zip(names, session.run(names, feeds, quiet), strict=True):
            shapes[name].append(tuple(np.shape(array)))
    return shapes


def _random_input(value: onnx.ValueInfoProto, batch: int, generator: np.random.Generator) -> np.ndarray:
    """A float32 array of ``value``'s declared shape, the symbolic axis set to ``batch``."""
    dims = [dim.dim_value if dim.HasField("dim_value") else batch for dim in value.type.tensor_type.shape.dim]
    return generator.random(dims, dtype=np.float32)


def _constant_target(shapes: list[tuple[int, ...]]) -> np.ndarray | None:
    """A constant target shape giving ``shapes`` (one per batch size), or None when one entry cannot do it."""
    first = shapes[0]
    if any(len(shape) != len(first) for shape in shapes):
        return None
    changing = [axis for axis in range(len(first)) if len({shape[axis] for shape in shapes}) > 1]
    if len(changing) > 1:
        return None
    target = np.asarray(first, dtype=np.int64)
    if changing:
        target[changing[0]] = -1  # Reshape infers it from the element count: B, or B * K, at any batch size
    return target


def _onnx_tensor(array: np.ndarray, name: str) -> onnx.TensorProto:
    """``array`` as an ONNX initializer called ``name``."""
    import onnx

    return onnx.numpy_helper.from_array(array, name)
