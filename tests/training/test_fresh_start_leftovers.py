"""What a new start and a resume report and keep: the sample pictures of an attempt killed before its first
checkpoint go with it, and the closing line of a resumed run counts the steps it trained itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.configs import get_config
from training.loop import fit
from training.run import main as run_main
from training.run_folder import TRAIN_CONFIG_FILE, write_train_config

_KILLED_ATTEMPTS_SAMPLE = "step-00000040.png"


def _tiny(steps: int) -> TrainConfig:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2, num_workers=0)
    return dataclasses.replace(config, steps=steps, data=data, eval_every=2, checkpoint_every=2, log_every=1)


def _killed_attempt(run: Path, config: TrainConfig) -> None:
    """What an attempt of ``config`` killed after its evaluation of step 40 but before any checkpoint leaves: its
    configuration and its samples."""
    (run / "samples").mkdir(parents=True)
    write_train_config(run / TRAIN_CONFIG_FILE, config)
    (run / "samples" / _KILLED_ATTEMPTS_SAMPLE).write_bytes(b"\x89PNG of step 40")


@pytest.mark.parametrize("resume", [False, True])
def test_a_new_start_drops_the_samples_of_an_attempt_without_checkpoints(tmp_path: Path, resume: bool) -> None:
    _killed_attempt(tmp_path / "run", _tiny(steps=2))
    fit(_tiny(steps=2), tmp_path / "run", progress=False, resume=resume)
    assert sorted(path.name for path in (tmp_path / "run" / "samples").iterdir()) == ["step-00000002.png"]


def test_a_resume_from_a_checkpoint_keeps_the_samples_of_the_steps_before_it(tmp_path: Path) -> None:
    fit(_tiny(steps=4), tmp_path / "run", progress=False, stop_after=2)
    fit(_tiny(steps=4), tmp_path / "run", progress=False, resume=True)
    samples = sorted(path.name for path in (tmp_path / "run" / "samples").iterdir())
    assert samples == ["step-00000002.png", "step-00000004.png"]


def _closing_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("tiny: "))


def test_the_closing_line_of_a_resumed_run_counts_the_steps_it_trained(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["--config", "tiny", "--steps", "4", "--out", str(run), "--no-progress"]
    fit(dataclasses.replace(get_config("tiny"), steps=4), run, progress=False, stop_after=3)
    capsys.readouterr()
    assert run_main([*args, "--resume"]) == 0
    closing = _closing_line(capsys.readouterr().out)
    assert closing.startswith("tiny: 1 step in ") and "(resumed at step 3, now at step 4)" in closing, closing

    assert run_main(["--config", "tiny", "--steps", "2", "--out", str(tmp_path / "fresh"), "--no-progress"]) == 0
    closing = _closing_line(capsys.readouterr().out)
    assert closing.startswith("tiny: 2 steps in ") and "resumed" not in closing, closing
