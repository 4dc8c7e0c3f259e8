"""``--backend onnx`` takes torch's ``cpu:0`` for the CPU, and says when TensorRT settings (``--tensorrt-fp16``,
``--tensorrt-cache-dir``) are given to a provider that builds no TensorRT engines, instead of starting without a
word."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import quick_export, save_tiny_model

from service.backends import onnx_providers
from service.backends.onnx_backend import OnnxOptions, tensorrt_options_ignored
from service.backends.onnx_providers import ProviderChoice
from service.config import ServiceConfig
from service.engine import load_engine

pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")

LOGGER = "service.backends.onnx_backend"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def test_cpu_0_is_the_cpu(export_dir):
    engine = load_engine("onnx", export_dir, name="tiny", device="cpu:0", max_batch_size=2)
    assert engine.card.device == "cpu" and engine.providers == ["CPUExecutionProvider"]


def test_cpu_1_is_refused_with_the_spelling_to_use():
    with pytest.raises(ValueError, match=r"use cpu \(or cpu:0\)"):
        onnx_providers.parse_device("cpu:1")


def test_tensorrt_fp16_on_the_cpu_provider_is_reported_as_ignored(export_dir, caplog):
    config = ServiceConfig(model_dir=export_dir, backend="onnx", tensorrt_fp16=True)  # --tensorrt-fp16
    with caplog.at_level("WARNING", logger=LOGGER):
        load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=2, options=config.backend_options())
    assert "--tensorrt-fp16 (or SLOTSTREAM_TENSORRT_FP16) ignored: it applies only to TensorRT engines" in caplog.text
    assert "--device cpu runs the fp32 graphs as exported" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger=LOGGER):  # nothing set, nothing said
        load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=2, options=OnnxOptions())
    assert "ignored" not in caplog.text


def test_only_the_tensorrt_provider_takes_the_tensorrt_settings(tmp_path):
    both = OnnxOptions(tensorrt_fp16=False, tensorrt_cache_dir=tmp_path)
    assert tensorrt_options_ignored(ProviderChoice("tensorrt"), both) is None
    warning = tensorrt_options_ignored(ProviderChoice("cuda", 1), both)
    assert warning is not None and warning.startswith("--tensorrt-fp16 and --tensorrt-cache-dir (or ")
    assert "they apply only to TensorRT engines" in warning and "--device cuda:1" in warning
