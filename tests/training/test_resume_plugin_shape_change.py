"""``--resume`` after a plugin changed its parameters' shapes: a new version is refused as a plugin change (both
versions and the command to go back), and a change under the same version keeps PyTorch's list of tensors and
shapes; neither calls the intact checkpoints damaged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from installed_plugins import installed_transition

from plugins import Transition
from plugins.types import Features, Slots
from training.checkpoint import list_checkpoints
from training.config import TrainConfig
from training.configs import get_config
from training.loop import fit


class Gained(Transition):
    """Version 1.0 of a plugin's transition: the projected previous slots times one learnt gain."""

    name = "gained_example"

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(slot_dim, slot_dim)
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Scale the projected previous slots."""
        del past_features  # Unused.
        return self.gain * self.projection(past_slots[-1])


class GainedPerChannel(Gained):
    """A later version: one gain per channel, a tensor of another shape under the same name."""

    def __init__(self, slot_dim: int) -> None:
        super().__init__(slot_dim)
        self.gain = torch.nn.Parameter(torch.ones(slot_dim))


def _config() -> TrainConfig:
    config = get_config("tiny")
    model = {**config.model, "transition": "gained_example"}
    data = dataclasses.replace(config.data, val_videos=0)
    return dataclasses.replace(config, model=model, data=data, steps=4, checkpoint_every=2, eval_every=100)


def _stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run_dir = tmp_path / "run"
    registry = installed_transition(tmp_path, monkeypatch, "gained", "1.0", Gained)
    fit(_config(), run_dir, progress=False, stop_after=2, registry=registry)
    return run_dir


def test_resume_under_a_new_plugin_version_with_other_shapes_is_refused_as_a_plugin_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    (checkpoint,) = list_checkpoints(run_dir)
    registry = installed_transition(tmp_path, monkeypatch, "gained", "2.0", GainedPerChannel)
    with pytest.raises(ValueError) as raised:
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    assert str(raised.value).startswith(
        f"{checkpoint} was written under other plugin code: the transition 'gained_example' came from plugin "
        "'gained' version 1.0, but version 2.0 is installed (to go back: pip install 'gained-dist==1.0')"
    )
    said = capsys.readouterr()
    assert "cannot be read" not in said.out + said.err + str(raised.value)
    assert not (run_dir / "model").exists()


def test_resume_with_other_shapes_under_the_same_version_keeps_pytorchs_list_of_tensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plugin's code changed in place (no new version): the checkpoint is intact and says which tensors
    differ, and how."""
    run_dir = _stopped_run(tmp_path, monkeypatch)
    (checkpoint,) = list_checkpoints(run_dir)
    registry = installed_transition(tmp_path, monkeypatch, "gained", "1.0", GainedPerChannel)
    slot_dim = _config().model["slot_dim"]
    with pytest.raises(ValueError) as raised:
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    message = str(raised.value)
    assert message.startswith(f"{checkpoint / 'model.safetensors'} holds tensors of other shapes than the model")
    assert (
        "size mismatch for transition.gain: copying a param with shape torch.Size([1]) from checkpoint, the shape "
        f"in current model is torch.Size([{slot_dim}])"
    ) in message
    said = capsys.readouterr()
    assert "cannot be read" not in said.out + said.err + message
