"""``--config`` names a shipped experiment or a configuration file kept outside the repository (.py or .json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from training.config_files import load_config
from training.configs import get_config
from training.run import main

EXPERIMENT = """
import dataclasses

from training.configs import tiny


def get_config():
    return dataclasses.replace(tiny.get_config(), name="my_tiny", steps=3, eval_every=3, checkpoint_every=3)
"""


def test_a_python_file_config_trains_and_resumes(tmp_path: Path, capsys) -> None:
    source = tmp_path / "my_tiny.py"
    source.write_text(EXPERIMENT)
    run = tmp_path / "run"
    assert main(["--config", str(source), "--out", str(run), "--no-progress"]) == 0
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["name"] == "my_tiny" and saved["steps"] == 3
    assert (run / "model" / "model.safetensors").is_file()
    assert main(["--config", str(source), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "has finished all 3 steps" in capsys.readouterr().out
    assert main(["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 2  # another experiment
    assert "was started with the experiment 'my_tiny', not 'tiny'" in capsys.readouterr().err


def test_a_json_config_is_read_as_a_runs_train_config(tmp_path: Path) -> None:
    """A run's saved configuration, edited or copied, starts a new run."""
    source = tmp_path / "edited.json"
    source.write_text(json.dumps({**get_config("tiny").to_json(), "name": "edited", "steps": 2}))
    config = load_config(str(source))
    assert (config.name, config.steps) == ("edited", 2)
    assert config.model == get_config("tiny").model


def test_the_default_run_folder_is_named_after_the_file(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "configs" / "my_tiny.py"
    source.parent.mkdir()
    source.write_text(EXPERIMENT)
    monkeypatch.chdir(tmp_path)
    assert main(["--config", os.path.relpath(source), "--no-progress"]) == 0
    assert (tmp_path / "runs" / "my_tiny" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "no such file"),
        ("import nowhere_to_be_found\n", "running it raised ModuleNotFoundError: No module named"),
        ("def get_config(:\n", "running it raised SyntaxError"),
        ("CONFIG = 1\n", "defines no get_config() -> TrainConfig"),
        ("def get_config():\n    return {'name': 'x'}\n", "get_config() returned dict, not a TrainConfig"),
        ("def get_config():\n    raise ValueError('bad steps')\n", "get_config() raised ValueError: bad steps"),
    ],
    ids=["missing", "import error", "syntax error", "no factory", "not a TrainConfig", "factory raises"],
)
def test_a_bad_config_file_is_named_with_what_is_wrong(tmp_path: Path, capsys, text: str | None, says: str) -> None:
    source = tmp_path / "broken.py"
    if text is not None:
        source.write_text(text)
    assert main(["--config", str(source), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert f"--config {source}" in error and says in error, error
    assert not (tmp_path / "run").exists()


def test_a_json_file_that_is_no_configuration_is_named(tmp_path: Path, capsys) -> None:
    source = tmp_path / "other.json"
    source.write_text('{"name": "x", "optim": {"old_field": 1}}')
    assert main(["--config", str(source), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"{source} cannot be read as a training configuration" in capsys.readouterr().err


def test_a_model_card_names_the_config_file_a_run_came_from() -> None:
    from training.card_text import _experiment_source

    config = get_config("tiny")
    command = "python -m training.run --config 'my configs/my_tiny.py' --steps 3"
    assert _experiment_source(config, command).startswith("`my configs/my_tiny.py` (a config file;")
    assert _experiment_source(config, "python -m training.run --config tiny") == "`training/configs/tiny.py`"
    assert _experiment_source(config, "an 'unparsable command") == "`training/configs/tiny.py`"


def test_a_file_of_another_kind_is_named_as_such_not_as_an_unknown_experiment(tmp_path: Path, capsys) -> None:
    source = tmp_path / "experiment.txt"
    source.write_text("steps = 10\n")
    assert main(["--config", str(source), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"--config {source}: a config file must end in .py or .json" in capsys.readouterr().err
