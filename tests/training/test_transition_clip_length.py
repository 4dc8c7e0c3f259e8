"""A model's transition learns only from clips of two frames or more: one-frame training clips are refused when the
transition would train (it would keep its random weights, and serving uses it for every frame but the first), and
videos shorter than a clip are answered with a remedy that still trains it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from plugins import VideoSlotModel
from training.config import TrainConfig
from training.configs import get_config
from training.datasets import DatasetError, build_dataset
from training.datasets.export import write_labelled_mp4, write_mp4
from training.datasets.synthetic import generate_video
from training.datasets.transforms import shorter_clips_hint
from training.run import main
from training.run_state import check_transition_trains
from training.warm_start import freeze_all_but


def one_frame_clips(model: dict[str, object] | None = None) -> TrainConfig:
    tiny = get_config("tiny")
    return dataclasses.replace(
        tiny, model=model or tiny.model, data=dataclasses.replace(tiny.data, clip_length=1), steps=1
    )


def test_one_frame_clips_are_refused_before_the_run_folder_is_made(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["--config", "tiny", "--clip-length", "1", "--steps", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "clip_length=1: the 'randsfq' transition makes the queries of every frame after the first" in err
    assert "--clip-length 2 or more" in err and "remove the videos shorter than that" in err
    assert not out.exists()


def test_one_frame_clips_are_refused_before_the_data_is_read(tmp_path: Path, capsys) -> None:
    """A refusal of the flags comes first: no note about the data (here, that unlabelled videos leave the run
    unevaluated) precedes it, and a folder that could not be read at all is not what the user is told about."""
    folder = tmp_path / "rec"
    folder.mkdir()
    write_mp4(folder / "walk.mp4", generate_video("easy", 0, 4, (32, 32)).frames)
    args = ["--config", "tiny", "--data", f"videos:{folder}", "--clip-length", "1", "--steps", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    printed = capsys.readouterr()
    assert "clip_length=1: the 'randsfq' transition" in printed.err
    assert "note:" not in printed.out + printed.err
    missing = ["--config", "tiny", "--data", f"videos:{tmp_path / 'nowhere'}", "--clip-length", "1", "--steps", "1"]
    assert main([*missing, "--no-progress", "--out", str(tmp_path / "run2")]) == 2
    assert "clip_length=1" in capsys.readouterr().err


def test_a_transition_with_nothing_to_train_takes_one_frame_clips() -> None:
    config = one_frame_clips()
    frozen = VideoSlotModel(**config.model)
    freeze_all_but(frozen, ["encoder", "initializer", "aggregator", "decoder"])
    check_transition_trains(config, frozen)  # frozen: fitting the other components of a trained model
    identity = one_frame_clips({**config.model, "transition": "identity"})
    check_transition_trains(identity, VideoSlotModel(**identity.model))  # no parameters
    trained = VideoSlotModel(**config.model)
    with pytest.raises(ValueError, match="learns only from clips of 2 frames or more"):
        check_transition_trains(config, trained)
    check_transition_trains(dataclasses.replace(config, data=dataclasses.replace(config.data, clip_length=2)), trained)


def _videos(folder: Path, lengths: dict[str, int]) -> Path:
    for seed, (name, frames) in enumerate(lengths.items()):
        video = generate_video("easy", seed, frames, (32, 32))
        write_labelled_mp4(folder, name, video.frames, video.masks)
    return folder


def test_a_one_frame_video_is_to_be_removed_not_met_with_one_frame_clips(tmp_path: Path) -> None:
    folder = _videos(tmp_path / "rec", {"still": 1, "walk": 4})
    with pytest.raises(DatasetError) as refused:
        build_dataset(f"videos:{folder}", "train", 3, (32, 32))
    message = str(refused.value)
    assert "still.mp4 (1)" in message and f"remove them from {folder}" in message
    assert "--clip-length" not in message and "learns only from clips of 2 frames or more" in message


def test_videos_long_enough_for_two_frame_clips_suggest_no_clip_below_two(tmp_path: Path) -> None:
    folder = _videos(tmp_path / "rec", {"short": 3, "walk": 6})
    with pytest.raises(DatasetError, match=r"--clip-length 3 or less, down to 2: the model's transition learns"):
        build_dataset(f"videos:{folder}", "train", 5, (32, 32))


def test_a_video_found_short_while_training_is_met_with_clips_of_two_frames_at_least() -> None:
    """The hint for a video found shorter than a clip once training runs (a DAVIS sequence, a video whose decoded
    frames are fewer than its header said) never suggests clips of one frame."""
    assert "--clip-length" not in shorter_clips_hint("train", 1)
    assert "remove the video" in shorter_clips_hint("train", 1)
    assert "--clip-length 2:" in shorter_clips_hint("train", 2)
    assert "--clip-length 5 or less, down to 2:" in shorter_clips_hint("train", 5)
