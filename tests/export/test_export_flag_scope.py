"""The export's flags say what they do and where: ``--help`` shows the defaults, ``--max-batch-size`` (which only
sizes the engines ``--tensorrt`` builds) is refused without ``--tensorrt`` instead of being ignored, ``--fp16``
says in the summary that it records the serving precision of TensorRT engines over fp32 graphs, and
``--onnxruntime-only`` says the tensorrt backend refuses only an export with TensorRT problems recorded."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import quick_export, save_tiny_model

from service.backends.manifest import read_manifest
from training.export.__main__ import main as export_main
from training.export.__main__ import summary

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        export_main(["--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_defaults_and_the_scope_of_each_flag(capsys):
    text = help_text(capsys)
    assert "ONNX opset of the graphs (default: 17)" in text
    assert "with --tensorrt: largest batch of the engines it builds and checks" in text and "(default: 16)" in text
    assert "--backend onnx --device tensorrt" in text and "The ONNX graphs stay fp32" in text
    assert "only then does the tensorrt backend refuse the export" in text


def test_max_batch_size_without_tensorrt_is_a_usage_error(tmp_path, capsys):
    """It was silently ignored: nothing uses it without --tensorrt (the server's own flag sizes its engines)."""
    with pytest.raises(SystemExit) as exited:
        export_main(["--model", str(tmp_path), "--out", str(tmp_path / "out"), "--max-batch-size", "4"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--max-batch-size sizes the TensorRT engines --tensorrt builds and checks" in error
    assert "add --tensorrt or leave it out" in error and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def test_the_summary_says_what_the_precision_is_for_and_that_no_engine_was_checked(export_dir):
    """--fp16 without --tensorrt wrote "fp16" next to byte-identical fp32 graphs, as if the graphs were fp16."""
    manifest = dataclasses.replace(read_manifest(export_dir), precision="fp16")
    lines = summary(manifest, str(export_dir)).splitlines()
    assert lines[0].endswith("opset 17, fp32 graphs")
    assert lines[1] == (
        "  TensorRT engines: fp16: the precision --backend tensorrt and --backend onnx --device tensorrt build them "
        "at (the server's --tensorrt-fp16 overrides it); none was built or checked here (--tensorrt on the serving "
        "GPU checks them)"
    )
    checked = dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": manifest.parity["onnxruntime"]})
    assert "these engines were built and checked against PyTorch here" in summary(checked, "out").splitlines()[1]


def test_an_out_folder_that_cannot_be_written_is_named_by_its_flag(tmp_path, capsys):
    """The error named the hidden staging folder inside ``--out`` (``[Errno 13] ... /.staging-s7ew8oy2``), a path
    the user never gave; /proc takes no new folders, also from root."""
    out = Path("/proc/slotstream-export/graphs")
    assert export_main(["--model", str(save_tiny_model(tmp_path / "source")), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"export: --out {out} cannot be written to: "), error
    assert "staging" not in error and "Errno" not in error
