"""A saved model pins its components' arguments, defaults included, and the versions of their plugins."""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path

import pytest
import torch
from installed_plugins import installed_transition
from tiny_configs import model_config

from plugins import Transition, VideoSlotModel, build_plugin_manager
from plugins.pretrained import PluginSourceWarning, PluginVersionWarning
from plugins.registry import ComponentRegistry, RegistryError
from plugins.types import Features, Slots

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "service" / "models" / "default"


class DampedBefore(Transition):
    """Version 1.0 of a plugin's transition: ``factor`` defaults to 0.9."""

    name = "damped_example"

    def __init__(
        self, slot_dim: int, factor: float = 0.9, sizes: tuple[int, int] = (1, 2), dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.factor = factor
        self.sizes = sizes
        self.projection = torch.nn.Linear(slot_dim, slot_dim)

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Damp the projected previous slots."""
        del past_features  # Unused.
        return self.factor * self.projection(past_slots[-1])


class DampedAfter(DampedBefore):
    """Version 2.0 of the same plugin: the default changed to 0.1, and a non-JSON default is gone."""

    def __init__(self, slot_dim: int, factor: float = 0.1, sizes: tuple[int, int] = (1, 2)) -> None:
        super().__init__(slot_dim, factor, sizes)


def test_a_reloaded_model_keeps_the_defaults_it_was_saved_with_and_warns_of_another_plugin_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = installed_transition(tmp_path, monkeypatch, "damped", "1.0", DampedBefore)
    model = VideoSlotModel(**model_config(transition="damped_example"), registry=before).eval()
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    # every default is pinned, as JSON (the tuple a list); the wiring the model supplies and a default that is
    # no JSON value (``dtype``) are left out
    assert saved["model"]["transition"] == {"name": "damped_example", "kwargs": {"factor": 0.9, "sizes": [1, 2]}}
    assert saved["plugins"]["transition"] == "damped"
    assert saved["plugin_versions"]["damped"] == "1.0"
    assert saved["plugin_distributions"]["damped"] == "damped-dist"  # what to install, not the entry-point name
    project = importlib.metadata.version("slotstream")
    assert {saved["plugin_versions"][saved["plugins"][role]] for role in ("encoder", "decoder")} == {project}
    assert model.config == VideoSlotModel(**model.config, registry=before).config  # the full config rebuilds

    after = installed_transition(tmp_path, monkeypatch, "damped", "2.0", DampedAfter)
    config_path = tmp_path / "model" / "config.json"
    with pytest.warns(PluginVersionWarning) as warned:
        loaded = VideoSlotModel.from_pretrained(tmp_path / "model", registry=after)
    assert [str(warning.message) for warning in warned] == [
        f"{config_path}: the transition 'damped_example' of this model came from plugin 'damped' version 1.0, but "
        "version 2.0 is installed; the model is built with the arguments the file records, but the plugin's code "
        "may now compute differently: check its results, or install version 1.0 (pip install 'damped-dist==1.0')"
    ]
    assert warned[0].filename == __file__  # the caller's line, not one inside the model code
    assert loaded.transition.factor == 0.9  # not the new default, 0.1
    video = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(video).slots, model(video).slots)


def test_a_config_without_versions_loads_as_before_and_the_default_model_is_unchanged(
    tmp_path: Path, registry: ComponentRegistry, tiny_model: VideoSlotModel
) -> None:
    files = {name: (DEFAULT_MODEL / name).read_bytes() for name in ("config.json", "model.safetensors")}
    assert "plugins" not in json.loads(files["config.json"])  # saved before plugin names and versions were kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = VideoSlotModel.from_pretrained(DEFAULT_MODEL, registry=registry)
        tiny_model.save_pretrained(tmp_path)
        payload = json.loads((tmp_path / "config.json").read_text())
        del payload["plugin_versions"]
        (tmp_path / "config.json").write_text(json.dumps(payload))
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)
    assert {name: (DEFAULT_MODEL / name).read_bytes() for name in files} == files
    assert default.config["transition"]["kwargs"]["window"] == 6  # the given arguments, defaults added beside them
    assert set(default.config["transition"]["kwargs"]) > {"window"}


def test_a_saved_component_whose_name_another_plugin_registers_here_loads_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved from plugin ``damped``; here only plugin ``lookalike`` registers the name. Loading used to take
    ``lookalike``'s class without a word."""
    saved_with = installed_transition(tmp_path, monkeypatch, "damped", "1.0", DampedBefore)
    VideoSlotModel(**model_config(transition="damped_example"), registry=saved_with).save_pretrained(tmp_path / "m")
    here = installed_transition(tmp_path, monkeypatch, "lookalike", "3.0", DampedAfter)
    with pytest.warns(PluginSourceWarning) as warned:
        loaded = VideoSlotModel.from_pretrained(tmp_path / "m", registry=here)
    assert [str(warning.message) for warning in warned] == [
        f"{tmp_path / 'm' / 'config.json'}: the transition 'damped_example' of this model came from plugin "
        "'damped', but here plugin 'lookalike' registers that name, so its class is used: install 'damped' (pip "
        "install 'damped-dist==1.0') and block 'lookalike' with SLOTSTREAM_DISABLE_PLUGINS to load the model as "
        "saved, or check its results"
    ]
    assert warned[0].filename == __file__
    assert type(loaded.transition) is DampedAfter


def test_a_model_whose_plugin_is_gone_says_which_distribution_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry-point name (``damped``) is not what ``pip install`` takes; the distribution (``damped-dist``) is."""
    saved_with = installed_transition(tmp_path, monkeypatch, "damped", "1.0", DampedBefore)
    VideoSlotModel(**model_config(transition="damped_example"), registry=saved_with).save_pretrained(tmp_path / "m")
    monkeypatch.setattr("plugins.manager._entry_points", lambda: [])
    with pytest.raises(RegistryError, match=r"plugin\(s\) 'damped' \(pip install 'damped-dist==1\.0'\)"):
        VideoSlotModel.from_pretrained(tmp_path / "m", registry=build_plugin_manager().registry)
