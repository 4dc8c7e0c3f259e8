"""Constant target shapes for the ``Reshape`` nodes of an exported graph (``training.export.static_shapes``).

A hand-written graph reshapes ``x [batch, 3, 4]`` to ``[batch * 3, 4]`` and back to ``[batch, 12]`` with target
shapes computed from ``Shape(x)``, the way the tracer writes ``x.flatten(0, 1)`` and ``x.flatten(1)``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.export.graphs import optimize
from training.export.static_shapes import _constant_target, freeze_reshape_shapes

ort = pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")


def computed_reshape_graph() -> onnx.ModelProto:
    """``x [batch, 3, 4] -> y [batch, 12]`` through ``[batch * 3, 4]``, both target shapes read from ``Shape(x)``."""
    constants = {
        "zero": np.array([0], dtype=np.int64),
        "one": np.array([1], dtype=np.int64),
        "four": np.array([4], dtype=np.int64),
        "twelve": np.array([12], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"]),
        helper.make_node("Gather", ["shape", "one"], ["slots"]),
        helper.make_node("Mul", ["batch", "slots"], ["rows"]),
        helper.make_node("Concat", ["rows", "four"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("Relu", ["flat"], ["activated"]),
        helper.make_node("Concat", ["batch", "twelve"], ["out_shape"], axis=0),
        helper.make_node("Reshape", ["activated", "out_shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "computed_reshapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 12])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": x})
    return np.asarray(y)


def test_computed_target_shapes_become_constants_with_minus_one_at_the_batch_entry():
    proto = computed_reshape_graph()
    assert freeze_reshape_shapes(proto) == 2
    initializers = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    targets = [initializers[node.input[1]].tolist() for node in proto.graph.node if node.op_type == "Reshape"]
    assert targets == [[-1, 4], [-1, 12]]


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_frozen_graph_computes_the_same_at_batch_sizes_it_was_not_probed_at(batch):
    original = computed_reshape_graph()
    frozen = computed_reshape_graph()
    freeze_reshape_shapes(frozen)
    frozen = optimize(frozen)
    assert "Shape" not in {node.op_type for node in frozen.graph.node}  # the dead shape chain is gone
    x = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(frozen, x), run(original, x))


def test_a_graph_without_computed_shapes_is_left_alone():
    proto = computed_reshape_graph()
    freeze_reshape_shapes(proto)
    before = proto.SerializeToString()
    assert freeze_reshape_shapes(proto) == 0
    assert proto.SerializeToString() == before


def test_target_shapes_that_one_constant_cannot_give_are_left_as_traced():
    assert _constant_target([(2, 3), (3, 3), (5, 3)]) is not None
    assert _constant_target([(2, 2), (3, 3), (5, 5)]) is None  # two entries follow the batch
    assert _constant_target([(2, 3), (3, 3, 1)]) is None  # the rank changes
    assert _constant_target([(4, 6), (4, 6)]).tolist() == [4, 6]  # nothing follows the batch


def test_one_batch_size_cannot_tell_what_follows_the_batch():
    with pytest.raises(ValueError, match="two distinct batch sizes"):
        freeze_reshape_shapes(computed_reshape_graph(), batch_sizes=(2, 2))
