"""The backends' own reading of the ``SLOTSTREAM_*`` variables (``OnnxOptions.from_environ``,
``TensorRTOptions.from_environ``: ``service.bench --local``, ``service.extract``, library callers) is the server's:
``~`` expanded, ``SLOTSTREAM_NO_*`` understood, misspelt names warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backends.onnx_backend import OnnxOptions
from service.backends.tensorrt_backend import TensorRTOptions
from service.config import ServiceConfig

ENVIRON = {
    "SLOTSTREAM_TENSORRT_CACHE_DIR": "~/trt-cache",
    "SLOTSTREAM_NO_TENSORRT_CUDA_GRAPHS": "0",
    "SLOTSTREAM_NO_TENSORRT_FP16": "yes",
    "SLOTSTREAM_TENSORRT_WORKSPACE_MB": "256",
    "SLOTSTREAM_ONNX_INTRA_OP_THREADS": "2",
    "SLOTSTREAM_ONNX_GRAPH_OPTIMIZATION": "basic",
}


@pytest.fixture(autouse=True)
def home(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/robot")


@pytest.mark.parametrize(
    ("backend", "device", "options_class"), [("onnx", "cpu", OnnxOptions), ("tensorrt", "cuda", TensorRTOptions)]
)
def test_the_backends_read_the_environment_as_the_server_does(backend, device, options_class):
    served = ServiceConfig.from_sources(["--backend", backend, "--device", device], ENVIRON).backend_options()
    assert options_class.from_environ(ENVIRON) == options_class(**served)


def test_home_and_negated_switches():
    cache = Path("/home/robot/trt-cache")
    assert TensorRTOptions.from_environ(ENVIRON) == TensorRTOptions(False, cache, True, 256)
    assert OnnxOptions.from_environ(ENVIRON) == OnnxOptions(2, 1, "basic", False, cache)


def test_only_the_backends_variables_are_read_and_misspellings_are_warned_about(caplog):
    other_settings = {"SLOTSTREAM_PORT": "not a port", "SLOTSTREAM_TENSORRT_CACHEDIR": "/tmp/x"}
    with caplog.at_level("WARNING", logger="service.config"):
        assert TensorRTOptions.from_environ(other_settings) == TensorRTOptions()
    assert "did you mean SLOTSTREAM_TENSORRT_CACHE_DIR?" in caplog.text
    with pytest.raises(ValueError, match="SLOTSTREAM_TENSORRT_FP16='maybe'"):
        OnnxOptions.from_environ({"SLOTSTREAM_TENSORRT_FP16": "maybe"})
