"""``training.run --val-frames``: how many frames each evaluation during training scores, and the error of a
validation video shorter than that, which suggests the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.configs import get_config
from training.datasets.export import write_labelled_mp4
from training.datasets.synthetic import generate_video
from training.run import apply_overrides, main, parse_args


def short_videos(tmp_path: Path, frames: int = 2) -> Path:
    """Two labelled videos of ``frames`` frames."""
    folder = tmp_path / "short"
    for seed in (1, 2):
        video = generate_video("easy", seed, frames, (32, 32))
        write_labelled_mp4(folder, f"v{seed}", video.frames, video.masks)
    return folder


@pytest.mark.parametrize(("given", "expected"), [(["--val-frames", "2"], 2), (["--val-frames", "all"], None)])
def test_val_frames_overrides_the_config(given: list[str], expected: int | None) -> None:
    config = apply_overrides(get_config("tiny"), parse_args(["--config", "tiny", *given]))
    assert config.data.val_frames == expected


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_val_frames_that_cannot_be_used_is_a_usage_error(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--config", "tiny", "--val-frames", value])
    assert exited.value.code == 2 and "argument --val-frames" in capsys.readouterr().err


def test_videos_shorter_than_val_frames_suggest_the_flag_and_it_trains(tmp_path: Path, capsys) -> None:
    folder = short_videos(tmp_path)
    args = ["--config", "tiny", "--data", f"videos:{folder}", "--clip-length", "2", "--steps", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert (
        "v1.mp4: video has 2 frames, fewer than val_frames=4; evaluate on fewer frames (--val-frames 2 or less" in err
    )
    assert "--val-videos 0" in err
    assert main([*args, "--out", str(tmp_path / "run"), "--val-frames", "2"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["num_frames"] for line in lines if line["kind"] == "eval"] == [4]  # 2 videos x 2 frames


def test_videos_shorter_than_a_clip_suggest_a_clip_length_that_fits(tmp_path: Path, capsys) -> None:
    folder = short_videos(tmp_path)
    args = ["--config", "tiny", "--data", f"videos:{folder}", "--steps", "1", "--out", str(tmp_path / "run")]
    assert main(args) == 2  # tiny's clips have 3 frames
    err = capsys.readouterr().err
    assert f"remove them from {folder}" in err and "train on shorter clips (--clip-length 2: " in err
