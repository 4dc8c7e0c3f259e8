"""Each graph of an export is recorded with its own step's inputs and outputs: ``first_step`` takes ``frames``,
``step`` takes ``frames`` and ``prev_slots``. A manifest whose two graph entries were swapped (file, digest and
signature together, so every graph matches its own entry and its digest) is refused when it is read, by every
backend and by the server before it serves, instead of failing at warm-up or on every frame. A manifest that
passes the digests but describes its graphs otherwise than they describe themselves (their tensors, metadata,
opset, operators) is refused by both accelerated backends, the ``tensorrt`` one before it looks for TensorRT."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL, quick_export, save_tiny_model

from service.__main__ import main as serve_main
from service.backends import onnx_backend, tensorrt_backend
from service.backends.manifest import MANIFEST_FILE, ManifestError, read_manifest

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

SWAPPED = r"the first_step graph \(step\.onnx\) is recorded as taking \['frames', 'prev_slots'\].*entries are swapped"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def edited_copy(export_dir: Path, target: Path, edit: Any) -> Path:
    """A copy of ``export_dir`` whose manifest's ``graphs`` object went through ``edit``."""
    shutil.copytree(export_dir, target)
    raw = json.loads((target / MANIFEST_FILE).read_text())
    edit(raw["graphs"])
    (target / MANIFEST_FILE).write_text(json.dumps(raw))
    return target


def load_onnx(export: Path) -> None:
    onnx_backend.load_engine(export, name="tiny", device="cpu", max_batch_size=2)


def load_tensorrt(export: Path) -> None:
    """Raises what the backend says before it looks for TensorRT; without TensorRT, that it is missing."""
    tensorrt_backend.load_engine(export, name="tiny", device="cuda", max_batch_size=2)


BOTH_BACKENDS = pytest.mark.parametrize("load", [load_onnx, load_tensorrt], ids=["onnx", "tensorrt"])


def rewritten_step_graph(export_dir: Path, target: Path, edit: Any) -> Path:
    """A copy of ``export_dir`` whose ``step.onnx`` went through ``edit`` (on its ONNX model), with the manifest's
    digest and operator counts brought up to date, so that only what ``edit`` did can be refused."""
    import hashlib

    import onnx

    from training.export.operators import check_operators

    shutil.copytree(export_dir, target)
    proto = onnx.load(str(target / "step.onnx"))
    edit(proto)
    onnx.save(proto, str(target / "step.onnx"))
    raw = json.loads((target / MANIFEST_FILE).read_text())
    raw["graphs"]["step"]["sha256"] = hashlib.sha256((target / "step.onnx").read_bytes()).hexdigest()
    raw["graphs"]["step"]["operators"] = check_operators(proto).operators
    (target / MANIFEST_FILE).write_text(json.dumps(raw))
    return target


def swap_entries(graphs: dict[str, Any]) -> None:
    graphs["first_step"], graphs["step"] = graphs["step"], graphs["first_step"]


def test_an_export_reads_with_each_graph_in_its_own_role(export_dir):
    manifest = read_manifest(export_dir, verify_graphs=True)
    assert [spec.name for spec in manifest.graphs["first_step"].inputs] == ["frames"]
    assert [spec.name for spec in manifest.graphs["step"].inputs] == ["frames", "prev_slots"]


def test_swapped_graph_entries_are_refused_when_the_manifest_is_read(export_dir, tmp_path):
    swapped = edited_copy(export_dir, tmp_path / "swapped", swap_entries)
    with pytest.raises(ManifestError, match=SWAPPED):
        read_manifest(swapped, verify_graphs=True)
    with pytest.raises(ManifestError, match=SWAPPED):
        onnx_backend.load_engine(swapped, name="tiny", device="cpu", max_batch_size=2)


def test_the_tensorrt_backend_refuses_swapped_entries_before_looking_for_a_gpu(export_dir, tmp_path):
    swapped = edited_copy(export_dir, tmp_path / "swapped", swap_entries)
    with pytest.raises(ManifestError, match=SWAPPED):
        tensorrt_backend.load_engine(swapped, name="tiny", device="cuda", max_batch_size=2)


def test_the_server_exits_2_on_swapped_entries_before_serving(export_dir, tmp_path, capsys):
    swapped = edited_copy(export_dir, tmp_path / "swapped", swap_entries)
    argv = ["--model-dir", str(swapped), "--backend", "onnx", "--listen", "127.0.0.1:0", "--metrics-listen", ""]
    assert serve_main(argv) == 2
    err = capsys.readouterr().err
    assert "entries are swapped" in err and "re-run python -m training.export" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda graphs: graphs["step"]["inputs"].pop(), r"a step graph takes \['frames', 'prev_slots'\]"),
        (lambda graphs: graphs["first_step"]["outputs"].reverse(), r"giving \['masks', 'slots'\]"),
    ],
    ids=["step-without-prev-slots", "outputs-reordered"],
)
def test_a_graph_recorded_with_other_tensors_than_its_step_is_refused(export_dir, tmp_path, edit, named):
    edited = edited_copy(export_dir, tmp_path / "edited", edit)
    with pytest.raises(ManifestError, match=named):
        read_manifest(edited)


@BOTH_BACKENDS
def test_graph_files_swapped_under_their_entries_are_caught_against_the_graph_files(export_dir, tmp_path, load):
    """File and digest swapped, the recorded signatures left: the digests pass, the loaded graphs do not."""

    def swap_files(graphs: dict[str, Any]) -> None:
        for key in ("file", "sha256"):
            graphs["first_step"][key], graphs["step"][key] = graphs["step"][key], graphs["first_step"][key]

    swapped = edited_copy(export_dir, tmp_path / "swapped", swap_files)
    with pytest.raises(ManifestError, match=r"the manifest's first_step graph, step\.onnx, has the inputs .* but the"):
        load(swapped)


@BOTH_BACKENDS
def test_a_graph_of_another_model_is_refused_though_its_digest_was_edited_to_match(export_dir, tmp_path, load):
    """A step graph of the same shapes from another model's export, its SHA-256 written into the manifest: the
    graph's own metadata names the model it came from, and the export would mix two models' graphs."""
    import hashlib

    import torch

    from plugins import VideoSlotModel

    torch.manual_seed(1)  # other weights, the same shapes
    other_model = tmp_path / "other_model"
    VideoSlotModel(**SERVICE_TINY_MODEL).save_pretrained(other_model)
    other = quick_export(other_model, tmp_path / "other_export")
    mixed = tmp_path / "mixed"
    shutil.copytree(export_dir, mixed)
    shutil.copyfile(other / "step.onnx", mixed / "step.onnx")
    raw = json.loads((mixed / MANIFEST_FILE).read_text())
    raw["graphs"]["step"]["sha256"] = hashlib.sha256((mixed / "step.onnx").read_bytes()).hexdigest()
    (mixed / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"step graph, step\.onnx, was exported from model version \w+, but"):
        load(mixed)


@BOTH_BACKENDS
def test_a_usage_block_edited_in_the_manifest_is_refused_against_the_graphs(export_dir, tmp_path, load):
    edited = tmp_path / "edited"
    shutil.copytree(export_dir, edited)
    raw = json.loads((edited / MANIFEST_FILE).read_text())
    raw["usage"]["segmentation"]["tie_tolerance"] = 0.5
    (edited / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"first_step graph, first_step\.onnx, carries another usage block"):
        load(edited)


@BOTH_BACKENDS
def test_an_opset_edited_in_the_manifest_is_refused_against_the_graphs(export_dir, tmp_path, load):
    edited = tmp_path / "edited"
    shutil.copytree(export_dir, edited)
    raw = json.loads((edited / MANIFEST_FILE).read_text())
    exported = raw["opset"]
    raw["opset"] = exported + 1
    (edited / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=rf"first_step\.onnx, imports opset {exported}, but the manifest records "):
        load(edited)


@BOTH_BACKENDS
def test_operator_counts_edited_in_the_manifest_are_refused_against_the_graphs(export_dir, tmp_path, load):
    def one_node_more(graphs: dict[str, Any]) -> None:
        operators = graphs["step"]["operators"]
        operators[sorted(operators)[0]] += 1

    edited = edited_copy(export_dir, tmp_path / "edited", one_node_more)
    with pytest.raises(ManifestError, match=r"step graph, step\.onnx, has the operators .* but the manifest records"):
        load(edited)


def test_an_operator_tensorrt_lacks_is_refused_by_the_tensorrt_backend_though_the_manifest_hides_it(
    export_dir, tmp_path
):
    """The manifest's digest, operator counts and (empty) ``tensorrt_problems`` all agree with the edited graph:
    only reading the graph finds the operator TensorRT cannot parse."""

    def det_node(proto: Any) -> None:
        proto.graph.node[0].op_type = "Det"

    edited = rewritten_step_graph(export_dir, tmp_path / "edited", det_node)
    assert json.loads((edited / MANIFEST_FILE).read_text()).get("tensorrt_problems", []) == []
    refused = r"step\.onnx: the step graph cannot be served with TensorRT:\n.*Det is not"
    with pytest.raises(ManifestError, match=refused):
        load_tensorrt(edited)


@BOTH_BACKENDS
def test_a_random_operator_in_a_graph_is_refused_by_every_backend(export_dir, tmp_path, load):
    def random_node(proto: Any) -> None:
        proto.graph.node[0].op_type = "RandomNormalLike"

    edited = rewritten_step_graph(export_dir, tmp_path / "edited", random_node)
    refused = r"step\.onnx: the step graph cannot be served:\n.*RandomNormalLike is random"
    with pytest.raises(ManifestError, match=refused):
        load(edited)


def test_a_file_that_is_no_onnx_graph_is_refused_by_name_before_a_runtime_loads_it(export_dir, tmp_path):
    import hashlib

    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    (broken / "step.onnx").write_bytes(b"not a graph")
    raw = json.loads((broken / MANIFEST_FILE).read_text())
    raw["graphs"]["step"]["sha256"] = hashlib.sha256(b"not a graph").hexdigest()
    (broken / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"step\.onnx is not a readable ONNX graph .*re-run python -m training"):
        load_tensorrt(broken)


def test_the_onnx_backend_checks_both_graph_files_before_it_makes_a_session(export_dir, tmp_path, monkeypatch):
    """A session can take minutes to build (ONNX Runtime's TensorRT provider): a step graph the manifest
    misdescribes is refused before the first_step graph's session is made."""
    import onnxruntime

    made: list[str] = []
    real_session = onnxruntime.InferenceSession

    def recording(path, *args, **kwargs):
        made.append(Path(path).name)
        return real_session(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)

    def one_node_more(graphs: dict[str, Any]) -> None:
        operators = graphs["step"]["operators"]
        operators[sorted(operators)[0]] += 1

    edited = edited_copy(export_dir, tmp_path / "edited", one_node_more)
    with pytest.raises(ManifestError, match=r"step graph, step\.onnx, has the operators"):
        load_onnx(edited)
    assert made == []
    load_onnx(export_dir)
    assert made == ["first_step.onnx", "step.onnx"]
