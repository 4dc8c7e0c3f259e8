"""``training.export.operators``: every operator its docstring forbids (random operators, control flow) and every
opset outside TensorRT 10.15's parser range (9-24) is rejected, with a message naming it.

The expected lists are written out here, not read from the module, so that shrinking the module's sets fails.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from training.export import check_operators

RANDOM = ["RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"]
CONTROL_FLOW = ["If", "Loop", "Scan"]


def _one_node_model(node: onnx.NodeProto, opset: int = 17) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _random_node(op_type: str) -> onnx.NodeProto:
    if op_type.endswith("Like"):
        return helper.make_node(op_type, ["x"], ["y"], name="noise")
    return helper.make_node(op_type, [], ["y"], name="noise", shape=[2])


@pytest.mark.parametrize("op_type", RANDOM)
def test_random_operators_are_rejected_by_name(op_type: str) -> None:
    report = check_operators(_one_node_model(_random_node(op_type)))
    assert not report.ok and report.operators == {op_type: 1}
    (problem,) = report.problems
    assert f"node 'noise': {op_type} is random" in problem


def _body() -> onnx.GraphProto:
    out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])
    return helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "body", [], [out])


@pytest.mark.parametrize("op_type", CONTROL_FLOW)
@pytest.mark.parametrize("with_subgraph", [False, True], ids=["bare", "with-subgraph"])
def test_control_flow_operators_are_rejected_by_name(op_type: str, with_subgraph: bool) -> None:
    """By the operator's name alone, and as a real node carrying its subgraphs."""
    subgraphs: dict[str, onnx.GraphProto] = {}
    if with_subgraph:
        subgraphs = {"then_branch": _body(), "else_branch": _body()} if op_type == "If" else {"body": _body()}
    node = helper.make_node(op_type, ["x"], ["y"], name="flow", **subgraphs)
    report = check_operators(_one_node_model(node))
    (problem,) = report.problems
    assert f"node 'flow': {op_type} is dynamic control flow" in problem


def test_any_node_carrying_a_subgraph_is_control_flow() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="odd", branch=_body())
    (problem,) = check_operators(_one_node_model(node)).problems
    assert "node 'odd': Relu is dynamic control flow" in problem


@pytest.mark.parametrize("opset", [9, 17, 24])
def test_opsets_tensorrt_parses_are_accepted(opset: int) -> None:
    report = check_operators(_one_node_model(helper.make_node("Relu", ["x"], ["y"]), opset=opset))
    assert report.ok and report.opset == opset


@pytest.mark.parametrize("opset", [8, 25, 26])
def test_opsets_outside_tensorrt_parser_range_are_rejected_by_number(opset: int) -> None:
    report = check_operators(_one_node_model(helper.make_node("Relu", ["x"], ["y"]), opset=opset))
    assert not report.ok and report.opset == opset
    (problem,) = report.problems
    assert f"opset {opset} is outside" in problem and "(9-24)" in problem
