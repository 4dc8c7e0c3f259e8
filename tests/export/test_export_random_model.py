"""A model that draws query noise at inference (``eval_noise: "sample"``) is refused by the export for every
runtime, not put down to TensorRT, and the refusal names the setting that fixes it; that fix exports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL, save_tiny_model

from plugins.model_files import CONFIG_FILE
from training.export import ExportError, ExportOptions, export_model

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

QUICK = {"parity_frames": 2, "batch_sizes": (1,)}


def sampling_model(directory: Path, initializer: str) -> Path:
    model = {**SERVICE_TINY_MODEL, "initializer": {"name": initializer, "kwargs": {"eval_noise": "sample"}}}
    return save_tiny_model(directory, model)


@pytest.mark.parametrize("initializer", ["gaussian_shared", "smoothsa_preheat"])
@pytest.mark.parametrize("onnxruntime_only", [False, True])
def test_the_refusal_names_the_setting_and_not_tensorrt(tmp_path, initializer, onnxruntime_only):
    source = sampling_model(tmp_path / "model", initializer)
    with pytest.raises(ExportError) as refused:
        export_model(source, tmp_path / "out", ExportOptions(onnxruntime_only=onnxruntime_only, **QUICK))
    message = str(refused.value)
    assert message.startswith("the first_step graph cannot be served:\n  node '/initializer/RandomNormalLike'")
    assert "TensorRT" not in message and "--onnxruntime-only" not in message
    assert (
        f"The initializer '{initializer}' has eval_noise \"sample\", which draws fresh noise at inference" in message
    )
    assert 'set model.initializer.kwargs.eval_noise to "fixed" in config.json' in message


def test_the_named_fix_exports(tmp_path):
    source = sampling_model(tmp_path / "model", "gaussian_shared")
    config = json.loads((source / CONFIG_FILE).read_text())
    assert config["model"]["initializer"]["kwargs"]["eval_noise"] == "sample"
    config["model"]["initializer"]["kwargs"]["eval_noise"] = "fixed"
    (source / CONFIG_FILE).write_text(json.dumps(config))
    manifest = export_model(source, tmp_path / "out", ExportOptions(**QUICK))
    assert manifest.parity["onnxruntime"].passed
