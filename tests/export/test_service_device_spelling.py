"""``--device`` is one spelling for every backend: the configuration strips and lower-cases it once, so ``CPU``
counts as the CPU for the automatic instance count and the inline path (which test ``startswith("cpu")``), and
the torch backend, whose ``torch.device`` refuses ``CPU``, loads on it like the onnx backend does."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import save_tiny_model

from service.config import ServiceConfig
from service.server import default_engine_factory


@pytest.mark.parametrize("spelling", ["CPU", " cpu ", "Cpu:0"])
def test_a_cpu_device_in_any_case_is_the_cpu_everywhere(spelling):
    lower = ServiceConfig(backend="onnx", onnx_intra_op_threads=1)
    config = replace(lower, device=spelling)
    assert config.device == spelling.strip().lower()
    assert config.resolved_model_instances(cores=8) == lower.resolved_model_instances(cores=8) == 4
    assert config.inline_below_s() == lower.inline_below_s() > 0


def test_the_flag_and_the_variable_are_normalised_alike():
    assert ServiceConfig.from_sources(["--device", "CUDA:1"], environ={}).device == "cuda:1"
    assert ServiceConfig.from_sources([], environ={"SLOTSTREAM_DEVICE": " CPU"}).device == "cpu"


def test_the_torch_backend_serves_an_upper_case_cpu_device(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model")
    engine = default_engine_factory(ServiceConfig(model_dir=model_dir, backend="torch", device="CPU"))
    try:
        assert engine.card.device == "cpu"
        assert engine.max_concurrency > 1  # the CPU's concurrency, not a GPU's one call at a time
    finally:
        engine.close()
