"""``--resume`` refuses a checkpoint whose model was built with other settings than the run now builds, built-in
components included (a default that changed between versions, a plugin edited in place): the run would otherwise
continue under other settings and its final model record only the new ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from training.checkpoint import list_checkpoints
from training.configs import get_config
from training.loop import fit


def _tiny(steps: int) -> object:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    return dataclasses.replace(config, steps=steps, data=data, eval_every=100, checkpoint_every=2, log_every=1)


def test_a_default_that_changed_since_the_checkpoint_is_named(tmp_path: Path) -> None:
    config = _tiny(steps=4)
    fit(config, tmp_path, progress=False, stop_after=2)
    (checkpoint,) = list_checkpoints(tmp_path)
    recorded = json.loads((checkpoint / "config.json").read_text())
    dropout = recorded["model"]["transition"]["kwargs"]["dropout"]
    recorded["model"]["transition"]["kwargs"]["dropout"] = dropout / 5  # as an earlier default would have it
    (checkpoint / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(ValueError) as refused:
        fit(config, tmp_path, progress=False, resume=True)
    message = str(refused.value)
    assert f"model.transition.kwargs.dropout {dropout / 5} -> {dropout}" in message
    assert "its model was built with other settings than this run now builds" in message
    assert list_checkpoints(tmp_path) == [checkpoint]  # nothing trained


def test_an_unchanged_run_resumes(tmp_path: Path) -> None:
    config = _tiny(steps=4)
    fit(config, tmp_path, progress=False, stop_after=2)
    resumed = fit(config, tmp_path, progress=False, resume=True)
    assert (resumed.started_step, resumed.step) == (2, 4)
