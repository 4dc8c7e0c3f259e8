"""One refusal for a graph the serving path cannot take (``OperatorReport.refusal``): the export and
``plugins.testing.check_exportable`` choose the same problems and say them in the same words."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from determinant_transition import determinant_registry
from service_helpers import SERVICE_TINY_MODEL

import plugins.manager
from plugins import ComponentRegistry, VideoSlotModel
from plugins.interfaces import ContractViolation
from plugins.testing import check_exportable
from training.export import ExportError, ExportOptions, check_operators, export_graph, export_model
from training.export.operators import OperatorReport
from training.export.tracing import component_descriptions

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")


def report_of(*op_types: str) -> OperatorReport:
    """The operator report of a chain of ``op_types`` nodes on a float vector."""
    names = ["x", *(f"t{index}" for index in range(len(op_types)))]
    nodes = [helper.make_node(op, [names[i]], [names[i + 1]], name=f"n{i}") for i, op in enumerate(op_types)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [2])],
    )
    return check_operators(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_the_refusal_lists_the_problems_that_count_for_the_runtimes_asked_for():
    """A problem of every runtime (a random operator) is not put down to TensorRT: TensorRT's own come after it."""
    both = report_of("RandomNormalLike", "Det")
    random, det = both.problems
    assert (
        both.refusal("step", tensorrt=True)
        == f"the step graph cannot be served:\n  {random}\nTensorRT also refuses it:\n  {det}"
    )
    assert both.refusal("step", tensorrt=False) == f"the step graph cannot be served:\n  {random}"
    assert (
        report_of("RandomNormalLike").refusal("step", tensorrt=True) == f"the step graph cannot be served:\n  {random}"
    )
    tensorrt_only = report_of("Det")
    assert tensorrt_only.refusal("first_step", tensorrt=False) is None
    assert tensorrt_only.refusal("first_step", tensorrt=True).startswith("the first_step graph cannot be served with")
    assert report_of("Relu").refusal("step", tensorrt=True) is None


@pytest.fixture
def own() -> ComponentRegistry:
    return determinant_registry()


def test_the_export_and_check_exportable_refuse_a_graph_in_the_same_words(own, tmp_path, monkeypatch):
    monkeypatch.setattr(plugins.manager, "_default_registry", own)  # from_pretrained finds the transition
    torch.manual_seed(0)
    model = VideoSlotModel(**{**SERVICE_TINY_MODEL, "transition": "determinant"}, registry=own)
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ContractViolation) as checked:
        check_exportable(model)
    with pytest.raises(ExportError) as exported:
        export_model(tmp_path / "m", tmp_path / "out", ExportOptions(parity_frames=2, parity_videos=1))
    assert str(checked.value).startswith("the step graph cannot be served with TensorRT:\n  node ")
    assert str(exported.value).startswith(str(checked.value) + "\nTo serve it with ONNX Runtime only")
    assert "\n  node '/transition/Det' of the transition: Det is not supported by TensorRT" in str(checked.value)


def test_a_problem_names_the_component_whose_module_made_the_node():
    """The exporter names a node after the module that ran it, the model component first: the problem names that
    component (by role, or as the caller describes it), the model's own code, or the node alone."""
    names = ["/transition/Det", "/decoder/block/Det", "/Det", "Det_7", "/graph/Det"]
    values = ["x", *names]
    nodes = [helper.make_node("Det", [values[i]], [values[i + 1]], name=name) for i, name in enumerate(names)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info(values[-1], TensorProto.FLOAT, [])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    decoder = "the decoder 'mine' (my_plugin.Mine, registered by plugin 'my_plugin')"
    problems = check_operators(proto, {"decoder": decoder}).problems
    said = [problem.split(": Det is not supported by TensorRT")[0] for problem in problems]
    assert said == [
        "node '/transition/Det' of the transition",
        f"node '/decoder/block/Det' of {decoder}",
        "node '/Det' of the model's own code",
        "node 'Det_7'",
        "node '/graph/Det'",
    ]


def test_the_components_described_by_the_model_name_the_plugin(own):
    model = VideoSlotModel(**{**SERVICE_TINY_MODEL, "transition": "determinant"}, registry=own)
    (problem,) = check_operators(export_graph(model, "step"), component_descriptions(model)).problems
    assert problem.startswith(
        "node '/transition/Det' of the transition 'determinant' (determinant_transition.DeterminantTransition, "
        "registered by plugin '<direct>'): Det is not supported by TensorRT"
    )
