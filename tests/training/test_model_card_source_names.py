"""``python -m training.model_card`` loads a copy of the run's model from a staging folder that is gone when it
ends; what it says about the model names the run's own files, which the user has."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from installed_plugins import ProjectedPrevious, installed_transition

from plugins import VideoSlotModel, build_plugin_manager
from plugins.pretrained import PluginVersionWarning
from plugins.registry import ComponentRegistry
from training.configs import get_config
from training.model_card import load_copy, main
from training.run_folder import FINAL_MODEL_DIR, TRAIN_CONFIG_FILE


class Carried(ProjectedPrevious):
    """A plugin's transition: the projected previous slots."""

    name = "carried_example"


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str | None) -> ComponentRegistry:
    """Make the default registry that of a plugin manager that found distribution ``carried-dist`` at ``version``
    (``None``: not installed) whose entry point ``carried`` registers :class:`Carried`; returns it."""
    if version is None:
        monkeypatch.setattr("plugins.manager._entry_points", lambda: [])
        registry = build_plugin_manager().registry
    else:
        registry = installed_transition(tmp_path, monkeypatch, "carried", version, Carried)
    monkeypatch.setattr("plugins.manager._default_registry", registry)
    return registry


def _finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder as a finished run leaves it (its configuration and final model), its transition from plugin
    ``carried`` 1.0."""
    config = get_config("tiny")
    config = dataclasses.replace(config, model={**config.model, "transition": "carried_example"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / TRAIN_CONFIG_FILE).write_text(json.dumps(config.to_json()))
    VideoSlotModel(**config.model, registry=_install(tmp_path, monkeypatch, "1.0")).save_pretrained(
        run_dir / FINAL_MODEL_DIR
    )
    return run_dir


def test_a_missing_plugin_is_reported_against_the_runs_config_not_the_staging_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _finished_run(tmp_path, monkeypatch)
    _install(tmp_path, monkeypatch, None)
    out = tmp_path / "card"
    assert main(["--run", str(run_dir), "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert said.startswith(f"error: {run_dir / FINAL_MODEL_DIR / 'config.json'}: unknown transition name ")
    assert "(pip install 'carried-dist==1.0')" in said
    assert f".{out.name}." not in said  # the staging folder, removed by now
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dists", "run"]


def test_a_version_warning_names_the_runs_config_not_the_staging_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _finished_run(tmp_path, monkeypatch)
    _install(tmp_path, monkeypatch, "2.0")
    source, staging = run_dir / FINAL_MODEL_DIR, tmp_path / ".card.staging"
    staging.mkdir()
    for file in source.iterdir():
        (staging / file.name).write_bytes(file.read_bytes())
    with pytest.warns(PluginVersionWarning) as warned:
        load_copy(staging, source)
    assert [str(warning.message).split(": ")[0] for warning in warned] == [str(source / "config.json")]
    assert str(staging) not in str(warned[0].message)
