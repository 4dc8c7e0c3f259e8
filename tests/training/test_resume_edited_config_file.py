"""``--resume`` continues a run as it was started (its ``train_config.json``), so edits to the ``--config`` file it
was started from are not used: the command says so, where a flag changing the same field would have been refused."""

from __future__ import annotations

import os
from pathlib import Path

from training.run import main


def test_a_resume_notes_a_config_file_changed_since_the_run_started(tmp_path: Path, capsys) -> None:
    config = tmp_path / "mine.py"
    config.write_text(
        "import dataclasses\n"
        "from training.configs import get_config as shipped\n\n\n"
        "def get_config():\n"
        "    return dataclasses.replace(shipped('tiny'), steps=1)\n"
    )
    run_dir = tmp_path / "run"
    command = ["--config", str(config), "--out", str(run_dir), "--no-progress", "--val-videos", "0"]
    assert main(command) == 0
    capsys.readouterr()
    assert main([*command, "--resume"]) == 0
    assert "was changed after" not in capsys.readouterr().err  # unchanged: nothing to say
    saved_ns = (run_dir / "train_config.json").stat().st_mtime_ns
    os.utime(config, ns=(saved_ns + 10**9, saved_ns + 10**9))  # edited a second after the run started
    assert main([*command, "--resume"]) == 0
    error = capsys.readouterr().err
    assert f"note: {config} was changed after {run_dir} was started; --resume continues the run as it was" in error
