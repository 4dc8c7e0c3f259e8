"""A run given its data as a relative folder (``--data videos:rec``) records it as an absolute path, so it resumes
from any working directory, with ``--data`` typed again as it was or given as the absolute path; a run whose
``train_config.json`` keeps the folder as typed resumes from the directory it was started in, and elsewhere says
where the folder was looked for."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from training.config import DataConfig
from training.config_files import load_config
from training.configs import get_config
from training.datasets.export import write_labelled_mp4
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.run import apply_overrides, main, parse_args
from training.run_folder import TRAIN_CONFIG_FILE

FLAGS = ["--config", "tiny", "--steps", "2", "--val-videos", "1", "--no-progress"]


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run started in ``tmp_path / "a"`` on ``--data videos:rec`` (a folder there), stopped after its first
    step; the working directory is then ``tmp_path / "b"``, which holds no ``rec``."""
    first, elsewhere = tmp_path / "a", tmp_path / "b"
    elsewhere.mkdir()
    for seed in (1, 2):
        video = generate_video("easy", seed, 4, (32, 32))
        write_labelled_mp4(first / "rec", f"v{seed}", video.frames, video.masks)
    monkeypatch.chdir(first)
    config = apply_overrides(get_config("tiny"), parse_args([*FLAGS, "--data", "videos:rec"]))
    fit(config, first / "run", stop_after=1, progress=False)
    monkeypatch.chdir(elsewhere)
    return first / "run"


def test_the_run_records_its_data_folder_as_an_absolute_path(started: Path) -> None:
    data = json.loads((started / TRAIN_CONFIG_FILE).read_text())["data"]
    assert data["spec"] == f"videos:{started.parent / 'rec'}"
    assert data["workdir"] == str(started.parent)


@pytest.mark.parametrize("given", [[], ["--data", "videos:rec"], ["--data", "videos:{a}/rec"]])
def test_a_run_resumes_from_another_directory(started: Path, given: list[str], capsys) -> None:
    """The flags as typed in the first directory, or the folder's absolute path, name the data the run started
    with (they were refused as a change of configuration, or the folder was looked for in the new directory)."""
    flags = [flag.format(a=started.parent) for flag in given]
    assert main([*FLAGS, *flags, "--out", str(started), "--resume"]) == 0, capsys.readouterr().err
    assert (started / "model" / "model.safetensors").is_file()


def test_a_run_that_recorded_its_folder_as_typed_resumes_from_its_own_directory(
    started: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    recorded = json.loads((started / TRAIN_CONFIG_FILE).read_text())
    del recorded["data"]["workdir"]
    recorded["data"]["spec"] = "videos:rec"
    (started / TRAIN_CONFIG_FILE).write_text(json.dumps(recorded))
    assert main([*FLAGS, "--out", str(started), "--resume"]) == 2
    elsewhere = Path.cwd()
    assert f"the folder {elsewhere / 'rec'} does not exist (a relative data folder is resolved from {elsewhere}" in (
        capsys.readouterr().err
    )
    monkeypatch.chdir(started.parent)
    assert main([*FLAGS, "--data", "videos:rec", "--out", str(started), "--resume"]) == 0, capsys.readouterr().err


def test_a_configuration_file_from_another_run_resolves_new_folders_from_where_it_starts(
    started: Path, tmp_path: Path
) -> None:
    """``--config RUN/train_config.json`` starts a new run: its recorded folders stay, its working directory is
    not the one that relative ``--data`` flags are resolved from."""
    config = load_config(str(started / TRAIN_CONFIG_FILE))
    assert config.data.spec == f"videos:{started.parent / 'rec'}" and config.data.workdir is None
    moved = apply_overrides(config, parse_args([*FLAGS, "--data", "videos:other"]))
    assert moved.data.spec == f"videos:{tmp_path / 'b' / 'other'}"


def test_only_folders_of_local_data_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DataConfig(spec="synthetic:easy").spec == "synthetic:easy" and DataConfig().workdir is None
    absolute = DataConfig(spec="davis:/data/davis", val_spec="videos:~/rec")
    assert (absolute.spec, absolute.val_spec) == ("davis:/data/davis", f"videos:{Path.home() / 'rec'}")
    assert absolute.workdir is None  # nothing relative: nothing to record
    relative = DataConfig(spec="videos:rec", val_spec="davis:../davis")
    assert (relative.spec, relative.val_spec) == (f"videos:{tmp_path / 'rec'}", f"davis:{tmp_path.parent / 'davis'}")
    assert dataclasses.replace(relative, spec="videos:").spec == "videos:"  # names no folder: refused when read


def test_a_run_started_on_an_absolute_folder_resumes_on_it_typed_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Started with the folder's absolute path (no working directory recorded), resumed from its parent with
    ``--data videos:sub/../rec``: the same folder, so not a change of configuration."""
    for seed in (1, 2):
        video = generate_video("easy", seed, 4, (32, 32))
        write_labelled_mp4(tmp_path / "rec", f"v{seed}", video.frames, video.masks)
    (tmp_path / "sub").mkdir()
    config = apply_overrides(get_config("tiny"), parse_args([*FLAGS, "--data", f"videos:{tmp_path / 'rec'}"]))
    fit(config, tmp_path / "run", stop_after=1, progress=False)
    assert json.loads((tmp_path / "run" / TRAIN_CONFIG_FILE).read_text())["data"]["workdir"] is None
    monkeypatch.chdir(tmp_path)
    flags = [*FLAGS, "--data", "videos:sub/../rec", "--out", str(tmp_path / "run"), "--resume"]
    assert main(flags) == 0, capsys.readouterr().err
