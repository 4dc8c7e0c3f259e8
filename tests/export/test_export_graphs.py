"""Export of the recurrent model to ONNX: graph structure, manifest, parity run, static TensorRT check, CLI.

One tiny model is exported once per module (the full 50-frame recurrent parity run included); the tests read
that export. Graph-level checks build small hand-written ONNX graphs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL as TINY_MODEL

from plugins import SlotState, VideoSlotModel
from service.backends.manifest import MANIFEST_FILE, ManifestError
from training.export import ExportError, ExportOptions, check_operators, export_graph, export_model, read_manifest
from training.export.__main__ import main as export_main
from training.export.out_folder import STAGING_PREFIX
from training.export.parity import measure_parity, synthetic_video

ort = pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("source")
    VideoSlotModel(**TINY_MODEL).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def exported(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export_model(source, out)
    return out


def graphs(directory: Path) -> dict[str, onnx.ModelProto]:
    return {name: onnx.load(str(directory / f"{name}.onnx")) for name in ("first_step", "step")}


def test_graphs_are_unrolled_checked_and_tensorrt_compatible(exported):
    """No Loop/If/Scan (Slot Attention unrolled), onnx.checker passes, every operator is TensorRT's."""
    for name, proto in graphs(exported).items():
        onnx.checker.check_model(proto, full_check=True)
        ops = {node.op_type for node in proto.graph.node}
        assert not ops & {"If", "Loop", "Scan"}, name
        report = check_operators(proto)
        assert report.ok, report.problems
    first, step = graphs(exported).values()
    # 3 iterations on the first frame, 1 later: one GRU update (3 sigmoid/tanh gates) per iteration.
    assert sum(n.op_type == "Tanh" for n in first.graph.node) == TINY_MODEL["first_iters"]
    assert sum(n.op_type == "Tanh" for n in step.graph.node) == TINY_MODEL["later_iters"]


def test_signature_has_a_dynamic_batch_axis(exported):
    k, d = TINY_MODEL["num_slots"], TINY_MODEL["slot_dim"]
    h, w = TINY_MODEL["image_size"]
    for name, proto in graphs(exported).items():
        shapes = {
            v.name: [dim.dim_param or dim.dim_value for dim in v.type.tensor_type.shape.dim]
            for v in (*proto.graph.input, *proto.graph.output)
        }
        expected = {"frames": ["batch", 3, h, w], "slots": ["batch", k, d], "masks": ["batch", k, 12, 12]}
        if name == "step":
            expected["prev_slots"] = ["batch", k, d]
        assert shapes == expected


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_ort_runs_any_batch_size_like_pytorch(source, exported, batch):
    model = VideoSlotModel.from_pretrained(source)
    frames = torch.rand(batch, 3, *TINY_MODEL["image_size"], generator=torch.Generator().manual_seed(batch))
    first = ort.InferenceSession(str(exported / "first_step.onnx"), providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(str(exported / "step.onnx"), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        out, state = model.first_step(frames)
        later, _ = model.step(frames, SlotState(slots=state.slots))
    slots, masks = first.run(None, {"frames": frames.numpy()})
    later_slots, later_masks = step.run(None, {"frames": frames.numpy(), "prev_slots": state.slots.numpy()})
    np.testing.assert_allclose(slots, out.slots.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(masks, out.masks.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(later_slots, later.slots.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(later_masks, later.masks.numpy(), atol=1e-5, rtol=0)


def test_manifest_records_what_runtimes_need(source, exported):
    manifest = read_manifest(exported)
    assert (manifest.input.height, manifest.input.width) == tuple(TINY_MODEL["image_size"])
    assert manifest.input.value_range == (0.0, 1.0) and manifest.input.layout == "NCHW"
    assert "x * 2 - 1" in manifest.input.inside_graph and "resize" in manifest.input.outside_graph
    assert (manifest.num_slots, manifest.slot_dim, manifest.mask_size) == (4, 16, (12, 12))
    assert (manifest.first_iters, manifest.later_iters, manifest.opset, manifest.precision) == (3, 1, 17, "fp32")
    assert [o.name for o in manifest.graphs["step"].outputs] == ["slots", "masks"]
    assert manifest.graphs["step"].outputs[1].shape == ["batch", 4, 12, 12]
    weights = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    assert manifest.source.weights_sha256 == weights
    assert manifest.source.config == VideoSlotModel.from_pretrained(source).config
    for name, spec in manifest.graphs.items():
        assert spec.sha256 == hashlib.sha256((exported / spec.file).read_bytes()).hexdigest(), name
        assert spec.operators == check_operators(graphs(exported)[name]).operators
    assert "TensorRT 10" in manifest.tensorrt_ops_source
    assert manifest.tensorrt_problems == []  # checked against TensorRT, nothing found
    # The export directory is also a model directory (the torch backend serves it, same version).
    assert (exported / "config.json").read_bytes() == (source / "config.json").read_bytes()
    assert not [p.name for p in exported.iterdir() if p.name.startswith(".")], "staging left behind"


def test_parity_run_is_recorded_and_within_tolerance(exported):
    """The export measured 50 frames fed recurrently (2 videos) and the batch sizes 1, 3 and 8."""
    parity = read_manifest(exported).parity["onnxruntime"]
    assert parity.passed and (parity.frames, parity.videos, parity.batch_sizes) == (50, 2, [1, 3, 8])
    assert parity.slots_max_abs <= 1e-4 and parity.masks_max_abs <= 1e-4
    assert parity.argmax_agreement >= 0.999
    assert (parity.max_abs_threshold, parity.agreement_threshold) == (1e-4, 0.999)  # the fp32 bounds


class _Perturbed:
    """A runtime that adds ``noise`` to PyTorch-exact graphs' slots (and ``mask_noise`` to their soft masks): the
    parity check must catch it. It records the state each ``step`` call gets."""

    def __init__(self, exported: Path, noise: float, mask_noise: float = 0.0) -> None:
        from training.export.parity import OrtGraphs

        self.inner = OrtGraphs(exported / "first_step.onnx", exported / "step.onnx")
        self.name = "perturbed"
        self.noise, self.mask_noise = noise, mask_noise
        self.outputs: list[np.ndarray] = []
        self.states: list[np.ndarray] = []

    def _perturb(self, out):
        out = type(out)(out.slots + self.noise, out.masks + self.mask_noise)
        self.outputs.append(out.slots)
        return out

    def first_step(self, frames):
        return self._perturb(self.inner.first_step(frames))

    def step(self, frames, state):
        self.states.append(state)
        return self._perturb(self.inner.step(frames, state))


def test_parity_fails_beyond_tolerance(source, exported):
    model = VideoSlotModel.from_pretrained(source)
    video = synthetic_video(tuple(TINY_MODEL["image_size"]), frames=4, videos=1)
    assert measure_parity(model, _Perturbed(exported, 0.0), "exact", video, (1,)).passed
    report = measure_parity(model, _Perturbed(exported, 1e-3), "noisy", video, (1,))
    assert not report.passed and report.slots_max_abs >= 1e-3
    masks_only = measure_parity(model, _Perturbed(exported, 0.0, mask_noise=1e-3), "noisy masks", video, (1,))
    assert not masks_only.passed and masks_only.masks_max_abs >= 1e-3 and masks_only.slots_max_abs <= 1e-4


def test_parity_feeds_each_step_the_runtimes_own_previous_slots(source, exported):
    """Recurrently: differences can then accumulate over the video, as they would in a server."""
    model = VideoSlotModel.from_pretrained(source)
    video = synthetic_video(tuple(TINY_MODEL["image_size"]), frames=4, videos=1)
    runtime = _Perturbed(exported, 1e-6)
    measure_parity(model, runtime, "recorded", video, ())
    assert len(runtime.states) == 3
    for state, previous in zip(runtime.states, runtime.outputs, strict=False):
        assert np.array_equal(state, previous)


class _NanAtLargeBatches(_Perturbed):
    """Exact graphs, except that calls with more than two frames return NaN (an fp16 overflow, say)."""

    def _spoil(self, out, frames):
        if len(frames) <= 2:
            return out
        return type(out)(np.full_like(out.slots, np.nan), np.full_like(out.masks, np.nan))

    def first_step(self, frames):
        return self._spoil(super().first_step(frames), frames)

    def step(self, frames, state):
        return self._spoil(super().step(frames, state), frames)


def test_parity_fails_on_nan_outputs(source, exported):
    """``max(0.0, nan)`` is ``0.0`` in Python: NaN differences must not vanish from the maxima."""
    model = VideoSlotModel.from_pretrained(source)
    video = synthetic_video(tuple(TINY_MODEL["image_size"]), frames=3, videos=2)
    assert measure_parity(model, _NanAtLargeBatches(exported, 0.0), "nan", video, (1, 2)).passed
    report = measure_parity(model, _NanAtLargeBatches(exported, 0.0), "nan", video, (1, 3))
    assert not report.passed and report.slots_max_abs == report.masks_max_abs == float("inf")


def test_failed_parity_fails_the_export_loudly_and_publishes_nothing(source, tmp_path, monkeypatch):
    import training.export.exporter as exporter

    monkeypatch.setattr(exporter, "OrtGraphs", lambda first, step: _Perturbed(first.parent, 1e-2))
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match=r"does not match PyTorch.*slots max \|diff\|"):
        export_model(source, out, ExportOptions(parity_frames=2, batch_sizes=(1,)))
    assert not out.exists(), "the folder the failed export created is removed"
    out.mkdir()  # a folder that was there before stays, empty
    with pytest.raises(ExportError, match=r"does not match PyTorch"):
        export_model(source, out, ExportOptions(parity_frames=2, batch_sizes=(1,)))
    assert list(out.iterdir()) == []


def test_export_keeps_the_models_training_mode(source):
    model = VideoSlotModel.from_pretrained(source).train()
    export_graph(model, "step")
    assert all(module.training for module in model.modules())


def test_model_that_tensorrt_cannot_take_is_rejected(tmp_path):
    """The DINOv2 encoder resizes bicubically when the frame size differs from the ViT's: not TensorRT's."""
    torch.manual_seed(0)
    config = {
        **TINY_MODEL,
        "encoder": {"name": "dinov2", "kwargs": {"depth": 1, "input_size": 28}},
        "decoder": {"name": "mlp", "kwargs": {"hidden_dims": [16]}},
    }
    VideoSlotModel(**config).save_pretrained(tmp_path / "model")
    with pytest.raises(ExportError, match="Resize mode 'cubic' is not supported by TensorRT"):
        export_model(tmp_path / "model", tmp_path / "out", ExportOptions(parity_frames=1, batch_sizes=()))


def _model(nodes: list[onnx.NodeProto], opset: int = 17, **graph_extras: object) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph(nodes, "g", [x], [y], **graph_extras)  # type: ignore[arg-type]
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_operator_check_lists_operators_and_accepts_supported_ones():
    report = check_operators(_model([helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Relu", ["t"], ["y"])]))
    assert report.ok and report.operators == {"Relu": 2} and report.opset == 17


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (helper.make_node("Unique", ["x"], ["y"]), "Unique is not supported by TensorRT"),
        (helper.make_node("Loop", ["x"], ["y"]), "dynamic control flow"),
        (helper.make_node("Scan", ["x"], ["y"]), "dynamic control flow"),
        (helper.make_node("RandomNormalLike", ["x"], ["y"]), "random"),
        (helper.make_node("Resize", ["x"], ["y"], mode="cubic"), "Resize mode 'cubic'"),
        (helper.make_node("Resize", ["x"], ["y"], mode="linear", antialias=1), "antialiased Resize"),
        (helper.make_node("Fancy", ["x"], ["y"], domain="com.example"), "custom operator"),
    ],
)
def test_operator_check_rejects(node, problem):
    report = check_operators(_model([node]))
    assert not report.ok and any(problem in p for p in report.problems), report.problems


def test_operator_check_rejects_if_with_subgraphs_and_bad_opsets():
    branch = helper.make_graph([], "b", [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])])
    node = helper.make_node("If", ["x"], ["y"], then_branch=branch, else_branch=branch)
    assert any("If is dynamic control flow" in p for p in check_operators(_model([node])).problems)
    relu = helper.make_node("Relu", ["x"], ["y"])
    assert any("opset 8" in p for p in check_operators(_model([relu], opset=8)).problems)


def test_cli_exports_and_summarises(source, tmp_path, capsys):
    assert export_main(["--model", str(source), "--out", str(tmp_path / "cli"), "--opset", "18", "--fp16"]) == 0
    printed = capsys.readouterr().out
    assert "first_step.onnx" in printed and "parity onnxruntime" in printed
    manifest = json.loads((tmp_path / "cli" / MANIFEST_FILE).read_text())
    assert manifest["opset"] == 18 and manifest["precision"] == "fp16"


def test_cli_reports_a_missing_model(tmp_path, capsys):
    assert export_main(["--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_read_manifest_detects_a_replaced_graph(source, tmp_path):
    out = tmp_path / "export"
    export_model(source, out, ExportOptions(parity_frames=1, batch_sizes=()))
    read_manifest(out, verify_graphs=True)
    (out / "step.onnx").write_bytes((out / "first_step.onnx").read_bytes())
    with pytest.raises(ManifestError, match="SHA-256 differs"):
        read_manifest(out, verify_graphs=True)


@pytest.mark.parametrize(("field", "value"), [("graphs", []), ("input", "64x64"), ("parity", "passed"), ("source", 3)])
def test_read_manifest_refuses_fields_of_the_wrong_type(source, tmp_path, field, value):
    out = tmp_path / "export"
    export_model(source, out, ExportOptions(parity_frames=1, batch_sizes=()))
    raw = json.loads((out / MANIFEST_FILE).read_text())
    (out / MANIFEST_FILE).write_text(json.dumps({**raw, field: value}))
    with pytest.raises(ManifestError, match="malformed manifest"):
        read_manifest(out)


def test_read_manifest_explains_a_plain_model_directory(source):
    with pytest.raises(ManifestError, match=r"python -m training\.export"):
        read_manifest(source)


def _edited_copy(exported: Path, tmp_path: Path, edit) -> Path:
    """A copy of the export whose manifest went through ``edit(raw) -> None``."""
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(exported, copy)
    raw = json.loads((copy / MANIFEST_FILE).read_text())
    edit(raw)
    (copy / MANIFEST_FILE).write_text(json.dumps(raw))
    return copy


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_slots", 7, r"the first_step graph's 'prev_slots'|the first_step graph's 'slots'"),
        ("mask_size", "16", r"mask_size must be a list of two whole numbers, got '16'"),
        ("precision", "FP16", r"precision must be one of fp32, fp16, got 'FP16'"),
        ("slot_dim", 0, r"slot_dim must be a whole number >= 1, got 0"),
    ],
)
def test_a_hand_edited_manifest_that_contradicts_its_graphs_is_refused(exported, tmp_path, field, value, message):
    copy = _edited_copy(exported, tmp_path, lambda raw: raw.update({field: value}))
    with pytest.raises(ManifestError, match=message):
        read_manifest(copy)


def test_weights_other_than_the_exported_ones_are_refused(exported, source, tmp_path):
    """A model directory's weights copied over an export's would be served by torch next to the old graphs."""
    import shutil

    copy = tmp_path / "swapped"
    shutil.copytree(exported, copy)
    torch.manual_seed(1)
    VideoSlotModel(**TINY_MODEL).save_pretrained(tmp_path / "other")
    shutil.copyfile(tmp_path / "other" / "model.safetensors", copy / "model.safetensors")
    read_manifest(copy)  # the cheap read does not hash the weights
    with pytest.raises(ManifestError, match="holds other weights than the graphs were exported from"):
        read_manifest(copy, verify_graphs=True)
    (copy / "model.safetensors").unlink()  # graphs alone still serve
    assert read_manifest(copy, verify_graphs=True).num_slots == TINY_MODEL["num_slots"]


def test_parity_records_keep_their_result_whatever_fields_a_newer_exporter_adds(exported, tmp_path):
    def add_field_and_fail(raw):
        raw["parity"]["tensorrt"] = {**raw["parity"]["onnxruntime"], "passed": False, "engine_build_s": 12.5}

    manifest = read_manifest(_edited_copy(exported, tmp_path, add_field_and_fail))
    assert manifest.parity["tensorrt"].passed is False and manifest.parity["onnxruntime"].passed is True

    def drop_field(raw):
        del raw["parity"]["onnxruntime"]["passed"]

    with pytest.raises(ManifestError, match="the 'onnxruntime' parity record lacks passed"):
        read_manifest(_edited_copy(exported, tmp_path / "dropped", drop_field))


def test_cli_refuses_an_out_folder_of_other_files_and_a_damaged_model(source, tmp_path, capsys):
    import shutil

    other = tmp_path / "other_model"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert export_main(["--model", str(source), "--out", str(other)]) == 2
    assert "already holds files and is not an export directory" in capsys.readouterr().err
    assert [path.name for path in other.iterdir()] == ["notes.txt"]

    web_app = tmp_path / "web_app"  # a manifest.json of something else is no earlier export
    web_app.mkdir()
    (web_app / "manifest.json").write_text('{"name": "my web app"}')
    assert export_main(["--model", str(source), "--out", str(web_app)]) == 2
    assert "already holds files and is not an export directory" in capsys.readouterr().err
    assert (web_app / "manifest.json").read_text() == '{"name": "my web app"}'

    damaged = tmp_path / "damaged"
    shutil.copytree(source, damaged)
    (damaged / "model.safetensors").write_bytes(b"xx")
    assert export_main(["--model", str(damaged), "--out", str(tmp_path / "out")]) == 2
    assert f"{damaged / 'model.safetensors'} cannot be loaded" in capsys.readouterr().err

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert export_main(["--model", str(source), "--out", str(a_file)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "1025"])
def test_cli_checks_the_batch_size_before_exporting(source, tmp_path, capsys, size):
    out = tmp_path / "out"
    assert export_main(["--model", str(source), "--out", str(out), "--tensorrt", "--max-batch-size", size]) == 2
    assert f"--max-batch-size must be in [1, 1024] (the most a server takes: its --max-batch-size), got {size}" in (
        capsys.readouterr().err
    )
    assert not out.exists(), "nothing is exported when the export cannot finish"


def test_an_export_killed_midway_does_not_block_the_next_one(source, tmp_path):
    """A killed export leaves its hidden staging folder behind; the same command run again cleans it up."""
    out = tmp_path / "out"
    leftover = out / f"{STAGING_PREFIX}abc123"
    leftover.mkdir(parents=True)
    (leftover / "first_step.onnx").write_bytes(b"half a graph")
    export_model(source, out, ExportOptions(parity_frames=1, batch_sizes=()))
    assert read_manifest(out, verify_graphs=True).num_slots == TINY_MODEL["num_slots"]
    assert not leftover.exists()


def test_a_model_directory_can_hold_its_own_export(source, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(source, model)
    export_model(model, model, ExportOptions(parity_frames=1, batch_sizes=()))
    assert read_manifest(model, verify_graphs=True).num_slots == TINY_MODEL["num_slots"]
    VideoSlotModel.from_pretrained(model)


def test_a_saved_model_given_where_an_export_belongs_is_told_how_to_export_it(tmp_path: Path) -> None:
    """The advice must not be to export into the model's own folder."""
    model_dir = Path(__file__).resolve().parents[2] / "service" / "models" / "default"
    with pytest.raises(ManifestError) as error:
        read_manifest(model_dir)
    message = str(error.value)
    assert f"--model {model_dir} --out <export dir>" in message and f"--out {model_dir}`" not in message
    with pytest.raises(ManifestError, match=rf"--model <model dir> --out {tmp_path}`"):
        read_manifest(tmp_path)


def test_a_models_card_travels_with_its_export_and_leaves_with_it(source, tmp_path):
    """The files training.model_card writes are copied; replacing the export with a model without a card removes
    the old card, so no export shows another model's card."""
    carded = tmp_path / "carded"
    carded.mkdir()
    for name in ("config.json", "model.safetensors"):
        (carded / name).write_bytes((source / name).read_bytes())
    (carded / "MODEL_CARD.md").write_text("# Model card: carded\n")
    (carded / "scores.json").write_text("{}\n")
    out = tmp_path / "export"
    options = ExportOptions(parity_frames=2, batch_sizes=(1,))
    export_model(carded, out, options)
    assert (out / "MODEL_CARD.md").read_text() == "# Model card: carded\n" and (out / "scores.json").is_file()
    assert not (out / "sample.png").exists()
    replacing = ExportOptions(parity_frames=2, batch_sizes=(1,), replace=True)
    export_model(source, out, replacing)  # another model, without a card, replaces that export
    assert not (out / "MODEL_CARD.md").exists() and not (out / "scores.json").exists()


def test_a_model_exported_in_place_is_not_replaced_by_another_models_export_without_replace(source, tmp_path, capsys):
    """Exported in place, a model directory holds the model beside its export: exporting another model there
    deleted that model (its weights, its card) without a word."""
    import shutil

    import torch

    other = tmp_path / "other"
    shutil.copytree(source, other)
    with torch.no_grad():  # another model: other weights, so another version
        model = VideoSlotModel.from_pretrained(other)
        for parameter in model.parameters():
            parameter.add_(0.01)
        model.save_pretrained(other)
    (other / "MODEL_CARD.md").write_text("# Model card: other\n")
    options = ExportOptions(parity_frames=2, batch_sizes=(1,))
    export_model(other, other, options)  # in place
    weights = (other / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"holds an export of another model .* pass --replace to replace it"):
        export_model(source, other, options)
    assert (other / "model.safetensors").read_bytes() == weights and (other / "MODEL_CARD.md").is_file()
    assert export_main(["--model", str(source), "--out", str(other)]) == 2
    assert "pass --replace" in capsys.readouterr().err
    export_model(other, other, options)  # the same model again: no flag needed


def test_a_model_saved_again_while_it_is_exported_is_refused(source, tmp_path, monkeypatch):
    """A training run saving its best model while that folder is exported: the graphs held the weights loaded,
    the copied files and the manifest the new ones, all under one version."""
    import shutil

    import torch

    from training.export import exporter

    moving = tmp_path / "moving"
    shutil.copytree(source, moving)
    export_checked = exporter._export_checked

    def saved_again_meanwhile(model, name, options, staging, version):
        checked = export_checked(model, name, options, staging, version)
        if name == "step":
            with torch.no_grad():
                changed = VideoSlotModel.from_pretrained(moving)
                for parameter in changed.parameters():
                    parameter.add_(0.01)
                changed.save_pretrained(moving)
        return checked

    monkeypatch.setattr(exporter, "_export_checked", saved_again_meanwhile)
    with pytest.raises(ValueError, match=r"changed while it was being exported .* export it again"):
        export_model(moving, tmp_path / "export", ExportOptions(parity_frames=2, batch_sizes=(1,)))
    assert not (tmp_path / "export").exists()


def test_weights_of_another_model_than_config_json_are_reported_in_a_few_lines(source, tmp_path, capsys):
    """A config.json of another model gives PyTorch's load_state_dict report, one line per tensor (dozens for a
    model of another size); the export says what mismatched, names the first few tensors and counts them."""
    import copy
    import shutil

    other = copy.deepcopy(TINY_MODEL)
    other["encoder"]["kwargs"].update(channels=[16, 16], out_dim=32)
    VideoSlotModel(**other).save_pretrained(tmp_path / "other")
    mixed = tmp_path / "mixed"
    shutil.copytree(source, mixed)
    shutil.copyfile(tmp_path / "other" / "config.json", mixed / "config.json")
    assert export_main(["--model", str(mixed), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert "model.safetensors does not fit config.json: 18 tensors have other shapes" in error
    assert "encoder.convs.0.weight (weights [8, 3, 5, 5], config [16, 3, 5, 5])" in error and "and 15 more" in error
    assert "size mismatch" not in error
    assert not (tmp_path / "out").exists()


def test_a_parity_record_keeps_the_build_it_measured_and_older_records_read_without_one(exported, tmp_path):
    """The TensorRT record names the engines it checked (``build``); records written before that read as empty."""
    import dataclasses
    import shutil

    from service.backends.manifest import write_manifest

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    manifest = read_manifest(copy)
    assert manifest.parity["onnxruntime"].build == {}
    build = {
        "precision": "fp32",
        "max_batch_size": 16,
        "tensorrt_version": "10.15.1",
        "gpu": "H100 sm_90",
        "tf32": False,
    }
    measured = dataclasses.replace(manifest.parity["onnxruntime"], runtime="tensorrt (fp32)", build=build)
    write_manifest(copy, dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": measured}))
    assert read_manifest(copy).parity["tensorrt"].build == build

    def older(raw):  # as an exporter before builds were recorded wrote it
        del raw["parity"]["tensorrt"]["build"]

    assert read_manifest(_edited_copy(copy, tmp_path / "older", older)).parity["tensorrt"].build == {}

    def not_an_object(raw):
        raw["parity"]["tensorrt"]["build"] = "H100"

    with pytest.raises(ManifestError, match="the 'tensorrt' parity record's build must be an object"):
        read_manifest(_edited_copy(copy, tmp_path / "bad", not_an_object))


def test_a_graph_onnx_refuses_is_reported_in_one_line(source, tmp_path, monkeypatch, capsys):
    """ONNX's and ONNX Runtime's exception classes derive from Exception alone: the command printed a traceback
    for them. (onnx.checker is made to refuse here; a plugin's unusual operator could make it.)"""

    def refuse(*args, **kwargs):
        raise onnx.checker.ValidationError("Field 'shape' of 'type' is required but missing.")

    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    assert export_main(["--model", str(source), "--out", str(tmp_path / "export")]) == 1
    assert capsys.readouterr().err.strip() == (
        "export failed: ONNX refused the exported graph: ValidationError: Field 'shape' of 'type' is required but "
        "missing."
    )
    assert not (tmp_path / "export").exists()
