"""An export directory may come from anyone: its ``manifest.json`` names each graph by a bare file name inside the
directory (``../x.onnx`` or an absolute path is refused, naming the field and the manifest), and a manifest
nested too deeply to read is refused naming the manifest, instead of a ``RecursionError``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_manifest_compatibility import manifest

from service.backends.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    read_manifest,
    write_manifest,
)


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """An export directory holding the manifest and (stand-in) graph files, beside a graph file outside it."""
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("first_step.onnx", "step.onnx"):
        (folder / name).write_bytes(b"graph")
    (tmp_path / "outside.onnx").write_bytes(b"a graph from elsewhere")
    write_manifest(folder, manifest())
    return folder


def test_bare_graph_file_names_read(export_dir: Path) -> None:
    assert read_manifest(export_dir).graphs["step"].file == "step.onnx"


@pytest.mark.parametrize("file", ["../outside.onnx", "OUTSIDE", "sub/step.onnx", "..\\outside.onnx", "..", ".", ""])
def test_a_graph_file_outside_the_directory_is_refused_naming_the_field_and_the_manifest(
    export_dir: Path, file: str
) -> None:
    file = str(export_dir.parent / "outside.onnx") if file == "OUTSIDE" else file  # an absolute path
    raw = json.loads((export_dir / MANIFEST_FILE).read_text())
    raw["graphs"]["step"]["file"] = file
    (export_dir / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError) as refused:
        read_manifest(export_dir)
    message = str(refused.value)
    assert message.startswith(f"{export_dir / MANIFEST_FILE}: graphs.step.file must be the name of a file in"), message
    assert repr(file) in message, message


def test_a_graph_file_that_is_no_string_is_refused() -> None:
    raw = json.loads(manifest().to_json())
    raw["graphs"]["first_step"]["file"] = ["first_step.onnx"]
    with pytest.raises(ManifestError, match=r"graphs\.first_step\.file must be the name of a file"):
        Manifest.from_json(json.dumps(raw))


@pytest.mark.parametrize("levels", [200_000, 500])
def test_a_manifest_nested_too_deeply_is_refused_naming_it(export_dir: Path, levels: int) -> None:
    """200,000 levels exhaust the parser's recursion; 500 parse, and would reach the code that reads ``usage``."""
    raw = json.loads((export_dir / MANIFEST_FILE).read_text())
    raw["usage"] = {"calls": "NESTED"}
    text = json.dumps(raw).replace('"NESTED"', "[" * levels + "]" * levels)
    (export_dir / MANIFEST_FILE).write_text(text)
    with pytest.raises(ManifestError) as refused:
        read_manifest(export_dir)
    message = str(refused.value)
    assert message.startswith(f"{export_dir / MANIFEST_FILE}: its arrays and objects nest more than"), message


def test_a_manifest_within_the_nesting_limit_reads(export_dir: Path) -> None:
    deep: object = []
    for _ in range(20):
        deep = [deep]
    write_manifest(export_dir, replace(manifest(), usage={"calls": deep}))
    assert read_manifest(export_dir).usage == {"calls": deep}
