"""A saved model that the installed version of its plugin cannot build or fill says so first: both versions and
the ``pip install`` command to go back, not an invitation to edit ``config.json`` or to put back another one."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from installed_plugins import installed_transition
from tiny_configs import model_config

from plugins import Transition, VideoSlotModel
from plugins.pretrained import PluginSourceWarning
from plugins.registry import ComponentBuildError, ComponentConfigError
from plugins.types import Features, Slots


class Scaled(Transition):
    """Version 1.0 of a plugin's transition: the projected previous slots times one learnt gain and ``factor``."""

    name = "scaled_example"

    def __init__(self, slot_dim: int, factor: float = 0.9) -> None:
        super().__init__()
        self.factor = factor
        self.projection = torch.nn.Linear(slot_dim, slot_dim)
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Scale the projected previous slots."""
        del past_features  # Unused.
        return self.factor * self.gain * self.projection(past_slots[-1])


class ScaledRenamed(Scaled):
    """Version 2.0: ``factor`` is now called ``decay``."""

    def __init__(self, slot_dim: int, decay: float = 0.9) -> None:
        super().__init__(slot_dim, decay)


class ScaledPerChannel(Scaled):
    """Version 2.0: one gain per channel, a tensor of another shape under the same name."""

    def __init__(self, slot_dim: int, factor: float = 0.9) -> None:
        super().__init__(slot_dim, factor)
        self.gain = torch.nn.Parameter(torch.ones(slot_dim))


class ScaledStricter(Scaled):
    """Version 2.0: refuses the factor version 1.0 saved."""

    def __init__(self, slot_dim: int, factor: float = 0.5) -> None:
        if factor > 0.5:
            raise ValueError(f"factor must be at most 0.5, got {factor}")
        super().__init__(slot_dim, factor)


def _saved_with_version_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    registry = installed_transition(tmp_path, monkeypatch, "scaled", "1.0", Scaled)
    VideoSlotModel(**model_config(transition="scaled_example"), registry=registry).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


GO_BACK = (
    "the transition 'scaled_example' came from plugin 'scaled' version 1.0, but version 2.0 is installed (to go "
    "back: pip install 'scaled-dist==1.0')"
)


def test_a_renamed_constructor_argument_names_both_versions_and_the_command_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = _saved_with_version_1(tmp_path, monkeypatch)
    upgraded = installed_transition(tmp_path, monkeypatch, "scaled", "2.0", ScaledRenamed)
    with pytest.raises(ComponentConfigError) as raised:
        VideoSlotModel.from_pretrained(saved, registry=upgraded)
    message = str(raised.value)
    assert message.startswith(f"{saved / 'config.json'} was saved under other plugin code than is installed here: ")
    assert GO_BACK in message
    assert message.index(GO_BACK) < message.index("got unknown config keys ['factor']; it accepts ['decay']")


def test_a_constructor_that_now_refuses_the_saved_arguments_names_both_versions_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = _saved_with_version_1(tmp_path, monkeypatch)
    upgraded = installed_transition(tmp_path, monkeypatch, "scaled", "2.0", ScaledStricter)
    with pytest.raises(ComponentBuildError) as raised:
        VideoSlotModel.from_pretrained(saved, registry=upgraded)
    message = str(raised.value)
    assert GO_BACK in message
    assert message.index(GO_BACK) < message.index("factor must be at most 0.5, got 0.9")


def test_weights_that_no_longer_fit_the_updated_plugin_are_not_called_another_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights are the ones saved with the config; the plugin's code changed their shape."""
    saved = _saved_with_version_1(tmp_path, monkeypatch)
    upgraded = installed_transition(tmp_path, monkeypatch, "scaled", "2.0", ScaledPerChannel)
    slot_dim = model_config()["slot_dim"]
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError) as raised:
        warnings.simplefilter("always")
        VideoSlotModel.from_pretrained(saved, registry=upgraded)
    message = str(raised.value)
    assert message.startswith(f"{saved / 'config.json'} was saved under other plugin code than is installed here: ")
    assert GO_BACK in message
    assert f"transition.gain (weights [1], now [{slot_dim}])" in message
    assert "put back" not in message and "different models" not in message
    assert not caught  # the error says it all: no version warning before it


def test_a_component_another_plugin_registers_says_which_distribution_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry-point name (``scaled``) is not what ``pip install`` takes; the distribution (``scaled-dist``) is,
    as the version warning and the missing-plugin error say."""
    saved = _saved_with_version_1(tmp_path, monkeypatch)
    here = installed_transition(tmp_path, monkeypatch, "lookalike", "3.0", Scaled)
    with pytest.warns(PluginSourceWarning) as warned:
        VideoSlotModel.from_pretrained(saved, registry=here)
    assert [str(warning.message) for warning in warned] == [
        f"{saved / 'config.json'}: the transition 'scaled_example' of this model came from plugin 'scaled', but "
        "here plugin 'lookalike' registers that name, so its class is used: install 'scaled' (pip install "
        "'scaled-dist==1.0') and block 'lookalike' with SLOTSTREAM_DISABLE_PLUGINS to load the model as saved, or "
        "check its results"
    ]
