"""Data without a held-out split (a ``videos:`` folder, a ``davis:`` one without ``ImageSets`` lists) evaluates a
run on videos it trains on: the run says so, and its model card calls them training videos, not validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.card_text import evaluated_on_held_out
from training.configs import get_config
from training.datasets.export import write_sequence
from training.datasets.specs import held_out_split
from training.datasets.synthetic import generate_video
from training.run import main


def _davis_folder(tmp_path: Path, lists: bool) -> Path:
    out = tmp_path / "davis"
    for index in range(2):
        write_sequence(out, f"seq{index}", generate_video("medium", 100 + index, 6, (32, 32)))
    if lists:
        (out / "ImageSets").mkdir()
        (out / "ImageSets" / "val.txt").write_text("seq1\n")
    return out


def test_which_specs_hold_videos_out(tmp_path: Path) -> None:
    assert held_out_split("synthetic:medium") is True
    assert held_out_split(f"videos:{tmp_path}") is False
    assert held_out_split(f"davis:{_davis_folder(tmp_path / 'a', lists=False)}") is False
    assert held_out_split(f"davis:{_davis_folder(tmp_path / 'b', lists=True)}") is True


def test_a_run_evaluated_on_its_training_videos_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"davis:{_davis_folder(tmp_path, lists=False)}"
    flags = ["--config", "tiny", "--data", spec, "--steps", "1", "--val-videos", "1", "--val-frames", "3"]
    assert main([*flags, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    said = capsys.readouterr()
    assert f"note: {spec} has no held-out split" in said.out + said.err


def test_the_card_calls_them_training_videos_unless_val_data_is_other_data(tmp_path: Path) -> None:
    config = get_config("tiny")
    spec = f"davis:{_davis_folder(tmp_path, lists=False)}"
    on_training = dataclasses.replace(config, data=dataclasses.replace(config.data, spec=spec))
    assert evaluated_on_held_out(on_training) is False
    held_out = dataclasses.replace(config, data=dataclasses.replace(config.data, spec=spec, val_spec="synthetic:easy"))
    assert evaluated_on_held_out(held_out) is True
    assert evaluated_on_held_out(config) is True  # synthetic data
    gone = dataclasses.replace(config, data=dataclasses.replace(config.data, spec=f"davis:{tmp_path / 'gone'}"))
    assert evaluated_on_held_out(gone) is True  # data that can no longer be read: the card keeps its wording


def test_a_loss_selected_card_on_training_videos_does_not_call_the_loss_held_out(tmp_path: Path) -> None:
    from training.best import Selection
    from training.card_text import _loss_selection, _steps

    config = get_config("tiny")
    spec = f"videos:{tmp_path}"
    on_training = dataclasses.replace(config, data=dataclasses.replace(config.data, spec=spec, val_spec=spec))
    selection = Selection(step=5, score=0.5, metrics=("val_loss",), scores={"num_videos": 4}, lower_is_better=True)
    steps = _steps(on_training, selection, on_training.steps, held_out=evaluated_on_held_out(on_training))
    assert "the lowest evaluation loss (val_loss 0.5)" in steps and "on 4 training videos (not held out)" in steps
    paragraph = " ".join(_loss_selection(on_training, selection, evaluated_on_held_out(on_training)))
    assert "held-out" not in paragraph and "which it also trains on" in paragraph
    elsewhere = dataclasses.replace(config, data=dataclasses.replace(config.data, spec=spec, val_spec="videos:/x"))
    assert "the lowest held-out loss" in _steps(
        elsewhere, selection, elsewhere.steps, held_out=evaluated_on_held_out(elsewhere)
    )
