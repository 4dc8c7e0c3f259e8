"""A manifest without a field it must have names the field (dotted inside objects) and the fix, instead of
``malformed manifest: KeyError: 'num_slots'``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import quick_export, save_tiny_model

from service.backends.manifest import MANIFEST_FILE, ManifestError, read_manifest

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def without(raw: dict[str, Any], path: str) -> None:
    """Delete the field at the dotted ``path`` (``graphs.step.inputs.0.shape``)."""
    *parents, last = path.split(".")
    for key in parents:
        raw = raw[int(key)] if key.isdigit() else raw[key]  # type: ignore[index]
    del raw[last]


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        ("num_slots", "'num_slots'"),
        ("source", "'source'"),
        ("input.height", "'input.height'"),
        ("source.version", "'source.version'"),
        ("graphs.step.sha256", "'graphs.step.sha256'"),
        ("graphs.step.inputs.0.shape", "'graphs.step.inputs[0].shape'"),
    ],
)
def test_a_missing_field_is_named(export_dir, tmp_path, removed, named):
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    raw = json.loads((copy / MANIFEST_FILE).read_text())
    without(raw, removed)
    (copy / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError) as refused:
        read_manifest(copy)
    message = str(refused.value)
    assert f"missing field {named}" in message and "re-run python -m training.export" in message, message
    assert "KeyError" not in message and "TypeError" not in message and str(copy / MANIFEST_FILE) in message


def test_several_missing_fields_are_named_together(export_dir, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    raw = json.loads((copy / MANIFEST_FILE).read_text())
    del raw["slot_dim"], raw["opset"]
    (copy / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="missing fields 'slot_dim', 'opset'"):
        read_manifest(copy)


@pytest.mark.parametrize("mask_size", [[0, 2], [1.5, 2], [True, 2], [4], "4x4"])
def test_a_mask_size_that_is_no_pair_of_positive_whole_numbers_is_named(export_dir, tmp_path, mask_size):
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    raw = json.loads((copy / MANIFEST_FILE).read_text())
    raw["mask_size"] = mask_size
    (copy / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="mask_size must be"):
        read_manifest(copy)
