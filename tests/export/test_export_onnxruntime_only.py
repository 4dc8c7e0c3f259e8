"""``--onnxruntime-only``: an operator TensorRT lacks is recorded in the manifest instead of failing the export,
and the ``tensorrt`` backend refuses such an export. A test-only transition computes a determinant (ONNX ``Det``,
which ONNX Runtime runs and TensorRT's parser does not take)."""

from __future__ import annotations

import json
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
from plugins.testing import check_exportable, tiny_model_config
from service.backends.manifest import MANIFEST_FILE
from service.engine import BackendUnavailable, load_engine
from training.export import ExportError, ExportOptions, ManifestError, check_operators, export_model, read_manifest
from training.export.__main__ import main as export_main

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

FAST = ExportOptions(parity_frames=2, parity_videos=1, batch_sizes=(1,))
ORT_ONLY = ExportOptions(parity_frames=2, parity_videos=1, batch_sizes=(1,), onnxruntime_only=True)


@pytest.fixture
def own() -> ComponentRegistry:
    return determinant_registry()


@pytest.fixture
def source(own, tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(plugins.manager, "_default_registry", own)  # from_pretrained finds the transition
    torch.manual_seed(0)
    VideoSlotModel(**{**SERVICE_TINY_MODEL, "transition": "determinant"}, registry=own).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def test_an_operator_tensorrt_lacks_fails_the_export_and_names_the_flag(source, tmp_path):
    with pytest.raises(ExportError, match=r"Det is not supported by TensorRT.*\n.*export with --onnxruntime-only"):
        export_model(source, tmp_path / "out", FAST)


def test_with_the_flag_the_export_passes_and_its_manifest_records_the_problem(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert export_main(["--model", str(source), "--out", str(out), "--onnxruntime-only"]) == 0
    assert "warning: exported for ONNX Runtime only" in capsys.readouterr().out
    manifest = read_manifest(out, verify_graphs=True)
    (problem,) = manifest.tensorrt_problems
    assert problem.startswith("step: node ") and "Det is not supported by TensorRT" in problem
    assert manifest.parity["onnxruntime"].passed
    with pytest.raises(BackendUnavailable, match=r"exported with --onnxruntime-only.*Det.*--backend onnx"):
        load_engine("tensorrt", out, name="det", device="cuda:0", max_batch_size=4)
    onnx_engine = load_engine("onnx", out, name="det", device="cpu", max_batch_size=4)
    onnx_engine.close()


def test_tensorrt_and_the_flag_together_are_a_usage_error(source, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--model", str(source), "--out", str(tmp_path / "out"), "--tensorrt", "--onnxruntime-only"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ValueError, match="give one of them"):
        export_model(source, tmp_path / "out", ExportOptions(tensorrt=True, onnxruntime_only=True))
    assert not (tmp_path / "out").exists()


def test_the_flag_does_not_let_through_what_no_runtime_should_serve():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["t"]), helper.make_node("Det", ["t"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y])
    report = check_operators(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert len(report.problems) == 2
    assert [p for p in report.tensorrt_only if "Det" in p] == report.tensorrt_only
    assert len(report.serving_problems) == 1 and "random" in report.serving_problems[0]


def test_check_exportable_can_leave_tensorrt_out(own):
    config = tiny_model_config(transition="determinant")
    with pytest.raises(ContractViolation, match="Det is not supported by TensorRT"):
        check_exportable(config, own)
    check_exportable(config, own, tensorrt=False)


def test_manifests_without_the_field_read_as_checked_and_a_malformed_one_is_refused(source, tmp_path):
    out = tmp_path / "out"
    export_model(source, out, ORT_ONLY)
    raw = json.loads((out / MANIFEST_FILE).read_text())
    (out / MANIFEST_FILE).write_text(json.dumps({**raw, "tensorrt_problems": "Det"}))
    with pytest.raises(ManifestError, match="tensorrt_problems must be a list of strings"):
        read_manifest(out)
    del raw["tensorrt_problems"]  # as an exporter before the flag wrote it
    (out / MANIFEST_FILE).write_text(json.dumps(raw))
    assert read_manifest(out).tensorrt_problems == []
