"""A model file this process may not read (a volume mounted with the wrong mode for the container's user) is named
as unreadable, by the loader and by the server's start-up check, not called missing (safetensors' word) nor
reported as a traceback. Unreadability is simulated by ``os.access``: the tests may run as root, whom no mode
stops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugins import VideoSlotModel
from plugins.testing import tiny_model_config
from service.config import ConfigError, ServiceConfig


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    VideoSlotModel(**tiny_model_config()).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _unreadable(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    real = os.access
    monkeypatch.setattr(os, "access", lambda target, mode: False if Path(target) == path else real(target, mode))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_the_loader_names_a_file_it_may_not_read(saved: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _unreadable(monkeypatch, saved / name)
    with pytest.raises(PermissionError) as refused:
        VideoSlotModel.from_pretrained(saved)
    assert str(refused.value) == f"{saved / name}: cannot read it (user {os.getuid()} may not: check its mode)"


def test_the_server_names_it_before_the_model_loads(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unreadable(monkeypatch, saved / "model.safetensors")
    with pytest.raises(ConfigError) as refused:
        ServiceConfig(model_dir=saved).check_files()
    assert f"--model-dir {saved}: cannot read {saved / 'model.safetensors'}: permission denied" in str(refused.value)
