"""How to use an export from another runtime: the manifest's ``usage`` block and each graph's ``metadata_props``
(``training.export.usage``), and exports written before the block, which still read and serve."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL, quick_export, save_tiny_model

from plugins.model_files import CONFIG_FILE
from plugins.segmentation import SEGMENTATION_TIE_TOLERANCE
from service.backends.manifest import MANIFEST_FILE, Manifest, ManifestError, read_manifest
from service.engine import load_engine
from training.export.usage import GRAPH_KEY, INPUT_KEY, PRODUCER_NAME, USAGE_KEY

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def test_the_manifest_says_how_to_call_the_graphs_and_read_the_masks(exported):
    usage = read_manifest(exported, verify_graphs=True).usage
    assert usage["calls"] == {
        "first_frame": "first_step",
        "later_frames": "step",
        "state_input": "prev_slots",
        "state_from_output": "slots",
        "state_from": "the previous call's row for the same stream",
        "other_state": False,
    }
    assert usage["batch"] == {"min": 1, "inputs_same_batch": True, "rows_independent": True}
    masks = usage["masks"]
    assert masks["output"] == "masks" and masks["slot_axis"] == 1 and masks["sum_over_slots"] == 1.0
    assert masks["size"] == SERVICE_TINY_MODEL["decoder"]["kwargs"]["output_size"]
    assert masks["covers"] == "the whole model input" and "softmax over slots" in masks["kind"]
    assert usage["segmentation"]["resize"] == {"mode": "bilinear", "align_corners": False, "antialias": False}
    assert usage["segmentation"]["tie_tolerance"] == SEGMENTATION_TIE_TOLERANCE
    assert usage["frame_fit"] == {"effective": "stretch", "recorded": False}  # the tiny model records no fit
    assert "first_step on a stream's first frame" in usage["notes"]


def test_the_masks_are_what_the_usage_block_says(exported):
    """Probabilities over axis 1 at the recorded size, and ``step`` fed the previous call's ``slots`` row."""
    usage = read_manifest(exported).usage
    first = ort.InferenceSession(str(exported / "first_step.onnx"), providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(str(exported / "step.onnx"), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).random((2, 3, *SERVICE_TINY_MODEL["image_size"]), dtype=np.float32)
    slots, masks = first.run(None, {"frames": frames})
    later_slots, later_masks = step.run(None, {"frames": frames, usage["calls"]["state_input"]: slots})
    for soft in (masks, later_masks):
        assert list(soft.shape[2:]) == usage["masks"]["size"] and soft.min() >= 0
        np.testing.assert_allclose(soft.sum(axis=usage["masks"]["slot_axis"]), 1.0, atol=1e-5)
    assert later_slots.shape == slots.shape


def test_each_graph_carries_the_usage_block_and_its_producer(exported):
    manifest = read_manifest(exported)
    for which in ("first_step", "step"):
        proto = onnx.load(str(exported / f"{which}.onnx"))
        metadata = {entry.key: entry.value for entry in proto.metadata_props}
        assert metadata[GRAPH_KEY] == which
        assert json.loads(metadata[USAGE_KEY]) == manifest.usage
        described = json.loads(metadata[INPUT_KEY])
        assert described["layout"] == "NCHW" and described["dtype"] == "float32"
        assert described["value_range"] == [0.0, 1.0] and described["channels"] == "RGB"
        assert [described["height"], described["width"]] == SERVICE_TINY_MODEL["image_size"]
        assert proto.producer_name == PRODUCER_NAME and proto.producer_version


def test_a_recorded_frame_fit_is_the_effective_one(tmp_path):
    source = save_tiny_model(tmp_path / "source")
    config = json.loads((source / CONFIG_FILE).read_text())
    config["input"] = {**config.get("input", {}), "frame_fit": "crop"}
    (source / CONFIG_FILE).write_text(json.dumps(config))
    usage = read_manifest(quick_export(source, tmp_path / "export")).usage
    assert usage["frame_fit"] == {"effective": "crop", "recorded": True}


def test_an_export_written_before_the_usage_block_still_reads_and_serves(exported, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(exported, older)
    raw = json.loads((older / MANIFEST_FILE).read_text())
    del raw["usage"]
    (older / MANIFEST_FILE).write_text(json.dumps(raw))
    manifest = read_manifest(older, verify_graphs=True)
    assert manifest.usage == {}
    assert "usage" not in json.loads(manifest.to_json())  # written back as it was
    engine = load_engine("onnx", older, name="older", device="cpu", max_batch_size=2)
    frames = np.zeros((1, 3, *SERVICE_TINY_MODEL["image_size"]), dtype=np.float32)
    assert engine.first_step(frames).slots.shape[0] == 1


def test_a_usage_block_that_is_not_an_object_is_refused(exported):
    raw = json.loads((exported / MANIFEST_FILE).read_text())
    raw["usage"] = ["first_step", "step"]
    with pytest.raises(ManifestError, match=r"usage must be an object"):
        Manifest.from_json(json.dumps(raw))
