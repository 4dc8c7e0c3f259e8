"""``--backend torch`` serves a model that is random at inference (``eval_noise: "sample"``), but warns at load,
naming the cause and the fix (``torch_backend.determinism_warning``); a deterministic model loads silently."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from service_helpers import SERVICE_TINY_MODEL, save_tiny_model

from plugins.random_settings import random_settings
from service.engine import load_engine

LOGGER = "service.backends.torch_backend"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage() for record in caplog.records if record.name == LOGGER and record.levelname == "WARNING"
    ]


@pytest.mark.parametrize("initializer", ["gaussian_shared", "smoothsa_preheat"])
def test_a_model_random_at_inference_loads_with_a_warning_naming_the_fix(tmp_path, caplog, initializer):
    model = {**SERVICE_TINY_MODEL, "initializer": {"name": initializer, "kwargs": {"eval_noise": "sample"}}}
    directory = save_tiny_model(tmp_path / "sampling", model)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        engine = load_engine("torch", directory, name="sampling", device="cpu", max_batch_size=2)
    (warning,) = warnings_of(caplog)
    assert warning.startswith(f"{directory} is not deterministic: two first_step runs on the same frame gave slots")
    assert (
        f"the initializer '{initializer}' has eval_noise \"sample\", which draws fresh noise at inference" in warning
    )
    assert "two identical streams get different slots" in warning
    assert 'set model.initializer.kwargs.eval_noise to "fixed" in config.json' in warning
    frames = np.full((1, 3, *SERVICE_TINY_MODEL["image_size"]), 0.5, dtype=np.float32)  # served, and indeed random
    assert not np.allclose(engine.first_step(frames).slots, engine.first_step(frames).slots)


def test_a_deterministic_model_loads_without_a_warning(tmp_path, caplog):
    directory = save_tiny_model(tmp_path / "fixed")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_engine("torch", directory, name="fixed", device="cpu", max_batch_size=2)
    assert warnings_of(caplog) == []


def test_random_settings_finds_the_noise_setting_of_any_component():
    config = {
        "initializer": {"name": "gaussian_shared", "kwargs": {"eval_noise": "sample"}},
        "transition": {"name": "my_transition", "kwargs": {"eval_noise": "sample"}},
        "decoder": {"name": "broadcast", "kwargs": {"eval_noise": "fixed"}},
        "num_slots": 4,
    }
    found = random_settings(config)
    assert [(setting.role, setting.component, setting.key) for setting in found] == [
        ("initializer", "gaussian_shared", "model.initializer.kwargs.eval_noise"),
        ("transition", "my_transition", "model.transition.kwargs.eval_noise"),
    ]
    assert random_settings({"initializer": "gaussian_shared"}) == []
