"""A run folder whose checkpoints lost their ``train_config.json`` (only ``checkpoints/`` copied to another machine)
is not resumed: nothing would hold the command's flags to the run's, so other data, batch size or steps would
continue the run silently."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.configs import get_config
from training.loop import fit
from training.run import main
from training.run_folder import TRAIN_CONFIG_FILE


def test_a_resume_without_the_runs_configuration_is_refused_naming_it(tmp_path: Path, capsys) -> None:
    config = get_config("tiny")
    config = dataclasses.replace(
        config, steps=3, checkpoint_every=1, data=dataclasses.replace(config.data, val_videos=0)
    )
    run_dir = tmp_path / "run"
    fit(config, run_dir, stop_after=1, progress=False)
    (run_dir / TRAIN_CONFIG_FILE).unlink()
    checkpoints = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    code = main(["--config", "tiny", "--out", str(run_dir), "--resume", "--batch-size", "4", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert f"{run_dir} holds checkpoints but not {TRAIN_CONFIG_FILE}" in error and "Traceback" not in error, error
    assert "resuming" not in error, error  # the resume is refused, not announced first
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == checkpoints
    assert not (run_dir / TRAIN_CONFIG_FILE).exists()
