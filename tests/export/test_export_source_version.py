"""Every backend serves an export folder as one model under one version: the ``onnx`` and ``tensorrt`` backends check
the folder's ``config.json`` and ``model.safetensors`` (what ``--backend torch`` serves) against the manifest's
``source.version`` and refuse a hand edit of either, naming both versions; a folder without the source files is
served under the manifest's version, and ``python -m service`` no longer asks an export for a ``config.json``."""

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

from service.backends.manifest import ManifestError, read_manifest
from service.config import ServiceConfig
from service.engine import load_engine, model_version

pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def edited(export_dir: Path, target: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the export whose JSON file ``name`` went through ``edit``."""
    shutil.copytree(export_dir, target)
    raw = json.loads((target / name).read_text())
    edit(raw)
    (target / name).write_text(json.dumps(raw, indent=2))
    return target


def more_iterations(config: dict[str, Any]) -> None:
    config["model"]["later_iters"] = 2


def a_frame_fit(config: dict[str, Any]) -> None:
    config["input"] = {"frame_fit": "crop"}


def another_version(manifest: dict[str, Any]) -> None:
    manifest["source"]["version"] = "deadbeef0000"


@pytest.mark.parametrize(
    ("name", "edit"),
    [("config.json", more_iterations), ("config.json", a_frame_fit), ("manifest.json", another_version)],
    ids=["later_iters", "frame_fit", "source.version"],
)
@pytest.mark.parametrize("backend", ["onnx", "tensorrt"])
def test_a_hand_edited_export_is_refused_naming_both_versions(export_dir, tmp_path, name, edit, backend):
    """Before the check, --backend onnx served these under the manifest's version while --backend torch served
    the edited config.json's model under another (or an edited source.version as is). The tensorrt backend refuses
    before it looks for TensorRT or a GPU, so this runs on any machine."""
    folder = edited(export_dir, tmp_path / "edited", name, edit)
    device = "cpu" if backend == "onnx" else "cuda:0"
    with pytest.raises(ManifestError) as refused:
        load_engine(backend, folder, name="tiny", device=device, max_batch_size=2)
    message = str(refused.value)
    recorded = read_manifest(folder).source.version
    assert model_version(folder) != recorded
    assert f"model version {model_version(folder)}" in message and f"as version {recorded}" in message, message
    assert "Re-export: python -m training.export" in message and "\n" not in message


def test_an_unedited_export_serves_one_version_on_both_backends(export_dir):
    versions = {
        backend: load_engine(backend, export_dir, name="tiny", device="cpu", max_batch_size=2).card.version
        for backend in ("torch", "onnx")
    }
    assert versions["torch"] == versions["onnx"] == read_manifest(export_dir).source.version


def test_an_export_without_the_source_files_serves_on_the_manifests_word(export_dir, tmp_path, caplog):
    graphs_only = tmp_path / "graphs-only"
    shutil.copytree(export_dir, graphs_only)
    (graphs_only / "config.json").unlink()
    (graphs_only / "model.safetensors").unlink()
    with caplog.at_level("WARNING", logger="service.backends.onnx_backend"):
        engine = load_engine("onnx", graphs_only, name="tiny", device="cpu", max_batch_size=2)
    assert engine.card.version == read_manifest(export_dir).source.version
    assert "cannot be checked" not in caplog.text
    # python -m service checks the folder for what the backend serves: an export's manifest, not a config.json.
    ServiceConfig(model_dir=graphs_only, backend="onnx").check_files()


def test_an_export_with_one_of_the_source_files_serves_with_a_warning(export_dir, tmp_path, caplog):
    half = tmp_path / "half"
    shutil.copytree(export_dir, half)
    (half / "config.json").unlink()
    with caplog.at_level("WARNING", logger="service.backends.onnx_backend"):
        engine = load_engine("onnx", half, name="tiny", device="cpu", max_batch_size=2)
    assert engine.card.version == read_manifest(export_dir).source.version
    assert "holds model.safetensors without config.json" in caplog.text and "cannot be checked" in caplog.text


def test_weights_replaced_in_an_export_are_refused(export_dir, tmp_path):
    """The weights' digest (source.weights_sha256) is checked as well: other weights under the same config."""
    other = tmp_path / "other-weights"
    shutil.copytree(export_dir, other)
    import torch

    from plugins import VideoSlotModel

    model = VideoSlotModel.from_pretrained(export_dir)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(tmp_path / "changed")
    shutil.copyfile(tmp_path / "changed" / "model.safetensors", other / "model.safetensors")
    with pytest.raises(ManifestError, match="holds other weights than the graphs were exported from"):
        load_engine("onnx", other, name="tiny", device="cpu", max_batch_size=2)
