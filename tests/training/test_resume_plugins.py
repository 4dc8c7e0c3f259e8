"""``--resume`` continues a run under the plugin code it was started with, or refuses and says what changed; a
model card names the plugins its model needs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from installed_plugins import ProjectedPrevious, installed_transition

import plugins.manager
from plugins import VideoSlotModel, build_plugin_manager
from plugins.registry import AmbiguousNameError, RegistryError
from training.card_text import plugin_rows
from training.configs import get_config
from training.loop import fit


class Carry(ProjectedPrevious):
    """A plugin's transition: the projected previous slots."""

    name = "carry_example"


def _config() -> object:
    config = get_config("tiny")
    model = {**config.model, "transition": "carry_example"}
    data = dataclasses.replace(config.data, val_videos=0)
    return dataclasses.replace(config, model=model, data=data, steps=4, checkpoint_every=2, eval_every=100)


def _stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run_dir = tmp_path / "run"
    fit(
        _config(),
        run_dir,
        progress=False,
        stop_after=2,
        registry=installed_transition(tmp_path, monkeypatch, "carry", "1.0", Carry),
    )
    return run_dir


def test_resume_under_the_same_plugin_version_finishes_and_records_it(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    registry = installed_transition(tmp_path / "again", monkeypatch, "carry", "1.0", Carry)
    result = fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["plugins"]["transition"] == "carry" and saved["plugin_versions"]["carry"] == "1.0"


def test_resume_refuses_another_version_of_a_components_plugin(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    registry = installed_transition(tmp_path / "upgraded", monkeypatch, "carry", "2.0", Carry)
    with pytest.raises(ValueError, match=r"plugin 'carry' version 1\.0, but version 2\.0 is installed") as raised:
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    assert "--init-from" in str(raised.value) and "step-00000002" in str(raised.value)
    assert not (run_dir / "model").exists()


def test_resume_refuses_another_plugin_registering_the_components_name(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    registry = installed_transition(tmp_path / "other", monkeypatch, "impostor", "1.0", Carry)
    with pytest.raises(ValueError, match=r"came from plugin 'carry', but here plugin 'impostor' registers that name"):
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)


def test_resume_without_the_plugin_names_it(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    monkeypatch.setattr("plugins.manager._entry_points", lambda: [])
    with pytest.raises(RegistryError, match=r"carry_example.*saved with components of the plugin\(s\) 'carry'") as err:
        fit(_config(), run_dir, progress=False, resume=True, registry=build_plugin_manager().registry)
    assert str(err.value).startswith(f"{run_dir / 'train_config.json'}: unknown ")  # the file that names it


class Lookalike(ProjectedPrevious):
    """Another distribution's transition under the same name."""

    name = "carry_example"


def test_resume_where_two_installed_plugins_claim_a_name_says_how_to_keep_one(tmp_path, monkeypatch) -> None:
    """Both plugins are installed: the error names the run's configuration and how to keep one, not a package to
    install."""
    run_dir = _stopped_run(tmp_path, monkeypatch)
    installed_transition(tmp_path / "ours", monkeypatch, "carry", "1.0", Carry)
    ours = plugins.manager._entry_points()
    installed_transition(tmp_path / "theirs", monkeypatch, "lookalike", "1.0", Lookalike)
    both = [*ours, *plugins.manager._entry_points()]
    monkeypatch.setattr("plugins.manager._entry_points", lambda: both)
    with pytest.warns(RuntimeWarning, match="all register"):
        registry = build_plugin_manager().registry
    with pytest.raises(AmbiguousNameError) as raised:
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    message = str(raised.value)
    assert message.startswith(f"{run_dir / 'train_config.json'}: ") and "'carry_example' is ambiguous" in message
    assert "needs that package installed" not in message


def test_a_model_card_names_the_plugins_its_model_needs(tmp_path, monkeypatch) -> None:
    registry = installed_transition(tmp_path, monkeypatch, "carry", "1.0", Carry)
    config = _config()
    model = VideoSlotModel(**config.model, registry=registry)
    row = (
        "| plugins | `carry` (`pip install 'carry-dist==1.0'`): needed to train, load or serve it with the torch "
        "backend (its ONNX export serves without it) |"
    )
    assert plugin_rows(model) == [row]
    assert plugin_rows(VideoSlotModel(**get_config("tiny").model, registry=registry)) == []
