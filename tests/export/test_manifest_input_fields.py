"""The manifest's ``input`` fields are checked against the graphs' entries and what the runtimes feed
(``Manifest.check_input``): a manifest edited to NHWC, float16, [0, 255], BGR or no normalisation is refused, naming
the field, its value and what the graphs have; one of an earlier exporter still reads."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import quick_export, save_tiny_model

from service.backends.manifest import MANIFEST_FILE, Manifest, ManifestError, read_manifest
from service.engine import load_engine
from training.export import ExportOptions, export_model

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def exported(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(source, tmp_path_factory.mktemp("export"))


def edited(exported: Path, edit: Callable[[dict[str, Any]], None]) -> str:
    raw = json.loads((exported / MANIFEST_FILE).read_text())
    edit(raw)
    return json.dumps(raw)


def set_input(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        raw["input"][field] = value

    return edit


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("layout", "NHWC", '"NCHW"'),
        ("dtype", "float16", '"float32"'),
        ("value_range", [0, 255], "[0.0, 1.0]"),
        ("channels", "BGR", '"RGB"'),
    ],
)
def test_an_input_field_the_graphs_and_runtimes_disagree_with_is_refused(exported, field, value, expected):
    with pytest.raises(ManifestError) as refused:
        Manifest.from_json(edited(exported, set_input(field, value)))
    message = str(refused.value)
    shown = json.dumps([float(v) for v in value] if isinstance(value, list) else value)
    assert message.startswith(f"input.{field} is {shown}, but the graphs' frames input is float32 ['batch', 3, ")
    assert f"input.{field} must be {expected}" in message
    assert "every runtime feeds the graphs float32 NCHW RGB frames in [0, 1]" in message


@pytest.mark.parametrize("value", ["none", "the caller subtracts the ImageNet mean", "x * 2 - 1, inside the graph"])
def test_an_inside_graph_that_does_not_describe_the_encoder_normalisation_is_refused(exported, value):
    """The tiny model's encoder is small_cnn: a text not naming it, or not saying ``inside the graph``, is refused."""
    with pytest.raises(ManifestError) as refused:
        Manifest.from_json(edited(exported, set_input("inside_graph", value)))
    message = str(refused.value)
    assert message.startswith(f"input.inside_graph is {json.dumps(value)}, but the graphs normalise the [0, 1] frames")
    assert "the source's small_cnn encoder's normalisation" in message and "names small_cnn" in message


def test_a_graph_entry_of_another_dtype_is_refused(exported):
    def edit(raw: dict[str, Any]) -> None:
        raw["graphs"]["step"]["inputs"][1]["dtype"] = "float16"

    with pytest.raises(
        ManifestError, match=r"graphs\.step\.inputs\[1\]\.dtype is 'float16', but the exported graphs "
    ):
        Manifest.from_json(edited(exported, edit))


def test_the_onnx_backend_refuses_an_edited_export_at_load(exported, tmp_path):
    copy = tmp_path / "nhwc"
    shutil.copytree(exported, copy)
    (copy / MANIFEST_FILE).write_text(edited(exported, set_input("layout", "NHWC")))
    with pytest.raises(ManifestError, match=r"input\.layout is \"NHWC\""):
        load_engine("onnx", copy, name="tiny", device="cpu", max_batch_size=2)


def test_the_wording_of_earlier_exporters_still_reads(exported):
    """dinov2's description before its constants were recorded, and the generic one of another encoder."""

    def dinov2(raw: dict[str, Any]) -> None:
        raw["source"]["config"]["encoder"]["name"] = "dinov2"
        raw["input"]["inside_graph"] = (
            "bicubic resize to the ViT input size when it differs, then (x - ImageNet mean) / ImageNet std "
            "(dinov2), inside the graph"
        )

    def other(raw: dict[str, Any]) -> None:
        raw["source"]["config"]["encoder"]["name"] = "my_encoder"
        raw["input"]["inside_graph"] = "the my_encoder encoder's own normalisation, inside the graph"

    for edit in (dinov2, other):
        assert Manifest.from_json(edited(exported, edit)).input.layout == "NCHW"
    assert read_manifest(exported, verify_graphs=True).input.value_range == (0.0, 1.0)


def test_an_export_refused_for_an_edited_input_is_exported_again_in_place(exported, source, tmp_path):
    """The refusal says to re-run the export: into that folder, which is still recognised as an export."""
    copy = tmp_path / "again"
    shutil.copytree(exported, copy)
    (copy / MANIFEST_FILE).write_text(edited(exported, set_input("layout", "NHWC")))
    with pytest.raises(ManifestError):
        read_manifest(copy)
    export_model(source, copy, ExportOptions(parity_frames=2, batch_sizes=(1,)))
    assert read_manifest(copy, verify_graphs=True).input.layout == "NCHW"
