"""A run stopped by Ctrl-C before its first checkpoint: the message says it has no checkpoint (running the command
again starts from step 0, replacing a best model its evaluations saved) rather than promising a ``--resume``, and a
``--resume`` of it says it starts from step 0."""

from __future__ import annotations

from pathlib import Path

import pytest

import training.loop
import training.run as run_cli
from training.best import read_selection
from training.checkpoint import list_checkpoints


def _ctrl_c_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make Ctrl-C come during training step ``step`` (1-based): its optimisation step raises KeyboardInterrupt."""
    real_step = training.loop.optimisation_step
    calls: list[int] = []

    def ctrl_c(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training.loop, "optimisation_step", ctrl_c)


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved_and_a_resume_says_it_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    argv = ["--config", "tiny", "--out", str(run), "--steps", "4", "--no-progress"]
    with monkeypatch.context() as patch:

        def ctrl_c(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt  # pressed during the first step

        patch.setattr(training.loop, "optimisation_step", ctrl_c)
        assert run_cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: no checkpoint yet: running the command again starts from step 0" in err
    assert "--resume" not in err
    assert (run / "train_config.json").is_file() and not list_checkpoints(run)
    assert run_cli.main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"note: {run} holds no checkpoint of its run yet: it starts again from step 0" in err
    assert (run / "model" / "model.safetensors").is_file()


def test_ctrl_c_after_a_checkpoint_names_it_for_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _ctrl_c_at_step(monkeypatch, 11)
    argv = ["--config", "tiny", "--out", str(run), "--steps", "12", "--no-progress"]
    assert run_cli.main(argv) == 130  # tiny checkpoints every 10 steps
    err = capsys.readouterr().err
    assert "interrupted: the last checkpoint is step 10; continue with the same command and --resume" in err


def test_ctrl_c_before_the_first_checkpoint_names_the_best_model_a_new_start_replaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluations come more often than checkpoints: "nothing saved" was wrong when best/ held a model, and running
    the command again deleted it."""
    run = tmp_path / "run"
    argv = ["--config", "tiny", "--out", str(run), "--steps", "10", "--eval-every", "1", "--no-progress"]
    _ctrl_c_at_step(monkeypatch, 3)
    assert run_cli.main(argv) == 130
    err = capsys.readouterr().err
    assert not list_checkpoints(run) and (run / "best" / "model.safetensors").is_file()
    step = read_selection(run).step
    assert f"its best model so far (step {step}) is in {run / 'best'}, which a new start replaces" in err, err
