"""A loss from a plugin is recorded with each checkpoint (its plugin, version, distribution and its arguments,
defaults filled in), and ``--resume`` refuses another version of its plugin, or a default changed in place, and
names the plugin to install when it is missing; checkpoints written before the record resume as before."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from installed_plugins import installed_loss

from plugins import Loss, VideoSlotModel, build_plugin_manager
from plugins.registry import RegistryError
from plugins.types import VideoOutput
from training.card_text import plugin_rows
from training.checkpoint import LOSSES_FILE, list_checkpoints, read_losses_record
from training.config import LossTerm, TrainConfig
from training.configs import get_config
from training.loop import fit


class SlotSpread(Loss):
    """A plugin's loss: the mean absolute cosine similarity between slots, raised to ``power``."""

    name = "slot_spread_example"

    def __init__(self, power: float = 2.0) -> None:
        super().__init__()
        self.power = power

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """The slots' mean pairwise similarity."""
        del progress  # Unused.
        slots = torch.nn.functional.normalize(output.slots, dim=-1)
        similarity = slots @ slots.transpose(-1, -2)
        return (similarity - torch.eye(similarity.shape[-1])).abs().pow(self.power).mean()


class SlotSpreadCubed(SlotSpread):
    """The same loss after its plugin changed the default of ``power`` without a new version."""

    def __init__(self, power: float = 3.0) -> None:
        super().__init__(power)


def _config() -> TrainConfig:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)
    losses = [*config.losses, LossTerm("slot_spread_example", 0.5)]
    return dataclasses.replace(config, data=data, losses=losses, steps=4, checkpoint_every=2, eval_every=100)


def _stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run_dir = tmp_path / "run"
    registry = installed_loss(tmp_path, monkeypatch, "spread", "1.0", SlotSpread)
    fit(_config(), run_dir, progress=False, stop_after=2, registry=registry)
    return run_dir


def test_a_checkpoint_records_its_losses_plugins_and_arguments(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    record = json.loads((list_checkpoints(run_dir)[-1] / LOSSES_FILE).read_text())
    assert record["losses"][-1] == {"name": "slot_spread_example", "weight": 0.5, "kwargs": {"power": 2.0}}
    assert record["plugins"]["slot_spread_example"] == "spread"
    assert record["plugin_versions"]["spread"] == "1.0"
    assert record["plugin_distributions"]["spread"] == "spread-dist"
    assert [term["name"] for term in record["losses"]] == [term.name for term in _config().losses]


def test_resume_under_the_same_loss_plugin_finishes(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    registry = installed_loss(tmp_path / "again", monkeypatch, "spread", "1.0", SlotSpread)
    result = fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    assert result.step == 4 and result.model_dir is not None


def test_resume_refuses_another_version_of_a_losses_plugin(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    registry = installed_loss(tmp_path / "upgraded", monkeypatch, "spread", "2.0", SlotSpread)
    says = (
        r"the loss 'slot_spread_example' came from plugin 'spread' version 1\.0, but version 2\.0 is installed "
        r"\(to go back: pip install 'spread-dist==1\.0'\)"
    )
    with pytest.raises(ValueError, match=says) as raised:
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    assert "--init-from" in str(raised.value) and "step-00000002" in str(raised.value)
    assert not (run_dir / "model").exists()


def test_resume_refuses_a_loss_default_changed_under_the_same_version(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    registry = installed_loss(tmp_path / "edited", monkeypatch, "spread", "1.0", SlotSpreadCubed)
    with pytest.raises(
        ValueError, match=r"the loss 'slot_spread_example' was built with other arguments .*power 2\.0 -> 3\.0"
    ):
        fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    assert not (run_dir / "model").exists()


def test_resume_without_the_losses_plugin_names_it_and_its_pip_command(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    monkeypatch.setattr("plugins.manager._entry_points", lambda: [])
    says = r"unknown loss name 'slot_spread_example'.*plugin\(s\) 'spread' \(pip install 'spread-dist==1\.0'\)"
    with pytest.raises(RegistryError, match=says):
        fit(_config(), run_dir, progress=False, resume=True, registry=build_plugin_manager().registry)


def test_a_checkpoint_written_before_the_record_resumes_as_before(tmp_path, monkeypatch) -> None:
    run_dir = _stopped_run(tmp_path, monkeypatch)
    for checkpoint in list_checkpoints(run_dir):
        (checkpoint / LOSSES_FILE).unlink()
    registry = installed_loss(tmp_path / "upgraded", monkeypatch, "spread", "2.0", SlotSpread)
    result = fit(_config(), run_dir, progress=False, resume=True, registry=registry)
    assert result.step == 4
    record = json.loads((list_checkpoints(run_dir)[-1] / LOSSES_FILE).read_text())
    assert record["plugin_versions"]["spread"] == "2.0"


def test_a_model_card_names_the_plugin_only_its_losses_come_from(tmp_path, monkeypatch) -> None:
    """The card quotes the training command, which needs the loss's plugin; loading and serving do not."""
    run_dir = _stopped_run(tmp_path, monkeypatch)
    record = read_losses_record(list_checkpoints(run_dir)[-1])
    model = VideoSlotModel(**_config().model)  # built-in components only
    assert plugin_rows(model, record) == [
        "| loss plugins | `spread` (`pip install 'spread-dist==1.0'`): the losses `slot_spread_example`, needed to "
        "train it again with this command, not to load or serve it |"
    ]
    assert plugin_rows(model) == plugin_rows(model, None) == []
    damaged = {**record, "plugins": ["slot_spread_example"], "plugin_versions": "1.0"}  # not the maps they should be
    assert plugin_rows(model, damaged) == []
    unversioned = {**record, "plugin_versions": None}
    (row,) = plugin_rows(model, unversioned)  # no version: no pip command, the plugin still named
    assert row.startswith("| loss plugins | `spread`: the losses `slot_spread_example`, needed to train it again")
