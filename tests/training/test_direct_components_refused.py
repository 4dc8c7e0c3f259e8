"""A model component registered directly (outside a plugin's hook) in the default registry is refused when a
training run starts, since no other process could load the models it saves; a registry of the caller's own still
trains one; and a model saved with such a component says what to do when it cannot be loaded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from plugins import ComponentRegistry, VideoSlotModel, build_plugin_manager
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.registry import DIRECT_REGISTRATION, RegistryError
from training.configs import get_config
from training.loop import fit
from training.run import main

CONFIG_FILE = """
import dataclasses

from plugins import default_registry
from plugins.builtin.transitions.identity import IdentityTransition
from training.configs import tiny


class Held(IdentityTransition):
    name = "held_in_config"


default_registry().add_transition(Held)


def get_config():
    config = tiny.get_config()
    data = dataclasses.replace(config.data, val_videos=0)
    return dataclasses.replace(config, model={**config.model, "transition": "held_in_config"}, data=data, steps=2)
"""


class Held(IdentityTransition):
    """A transition a caller registers in a registry of its own."""

    name = "held_example"


@pytest.fixture
def fresh_default_registry(monkeypatch: pytest.MonkeyPatch) -> ComponentRegistry:
    """The default registry, new for the test (built-ins only), so what a config file adds to it stays here."""
    registry = build_plugin_manager(load_entry_points=False).registry
    monkeypatch.setattr("plugins.manager._default_registry", registry)
    return registry


def test_a_config_file_registering_a_component_directly_is_refused_before_the_run_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh_default_registry: ComponentRegistry
) -> None:
    config, run = tmp_path / "held.py", tmp_path / "run"
    config.write_text(CONFIG_FILE)
    assert main(["--config", str(config), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the transition 'held_in_config'" in err and "registered directly" in err, err
    assert "`slotstream` entry point" in err and "README, Plugins" in err, err
    assert fresh_default_registry.owner("transitions", "held_in_config") == DIRECT_REGISTRATION
    assert not run.exists()


def test_a_registry_of_the_callers_own_trains_a_directly_registered_component(tmp_path: Path) -> None:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_transition(Held)
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)
    config = dataclasses.replace(config, model={**config.model, "transition": "held_example"}, data=data, steps=2)
    result = fit(config, tmp_path / "run", progress=False, registry=registry)
    assert result.model_dir is not None
    assert (
        VideoSlotModel.from_pretrained(result.model_dir, registry=registry).specs["transition"].name == "held_example"
    )


def test_a_model_saved_with_a_direct_component_says_how_to_make_it_loadable(tmp_path: Path) -> None:
    own = build_plugin_manager(load_entry_points=False).registry
    own.add_transition(Held)
    config = get_config("tiny").model
    VideoSlotModel(**{**config, "transition": "held_example"}, registry=own).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["plugins"]["transition"] == DIRECT_REGISTRATION
    with pytest.raises(RegistryError, match="unknown transition name 'held_example'") as raised:
        VideoSlotModel.from_pretrained(tmp_path, registry=build_plugin_manager(load_entry_points=False).registry)
    says = str(raised.value)
    assert "registered directly" in says and "`slotstream` entry point" in says, says
    assert "plugin(s) '<direct>'" not in says, says
