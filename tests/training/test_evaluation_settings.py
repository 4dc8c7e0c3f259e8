"""The settings that change scores are stated with them: ``training.evaluate``'s frame fit (and where it came
from), ``--videos`` and ``--frames`` in its summary and ``--json``, and the evaluation lines of ``metrics.jsonl``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from plugins import VideoSlotModel
from training.configs import get_config
from training.datasets.export import write_labelled_mp4
from training.datasets.synthetic import generate_video
from training.evaluate import main as evaluate_main
from training.loop import fit


def labelled(tmp_path: Path) -> Path:
    folder = tmp_path / "labelled"
    video = generate_video("easy", 4, 4, (32, 48))
    write_labelled_mp4(folder, "clip", video.frames, video.masks)
    return folder


@pytest.mark.parametrize(
    ("recorded", "flag", "fit", "source"),
    [
        (None, [], "crop", "default"),
        ("stretch", [], "stretch", "model"),
        ("stretch", ["--frame-fit", "crop"], "crop", "flag"),
    ],
)
def test_evaluate_states_the_frame_fit_and_limits_it_used(tmp_path: Path, capsys, recorded, flag, fit, source) -> None:
    model = VideoSlotModel(**get_config("tiny").model)
    model.frame_fit = recorded
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "scores.json"
    args = ["--model", str(tmp_path / "model"), "--data", f"videos:{labelled(tmp_path)}", "--json", str(out), *flag]
    assert evaluate_main([*args, "--frames", "3", "--videos", "1"]) == 0
    scores = json.loads(out.read_text())
    assert (scores["frame_fit"], scores["frame_fit_source"], scores["videos"], scores["frames"]) == (fit, source, 1, 3)
    printed = capsys.readouterr().out
    assert f"frame fit: {fit} (" in printed and "videos: at most 1" in printed and "at most the first 3" in printed

    assert evaluate_main(args) == 0
    scores = json.loads(out.read_text())
    assert scores["videos"] is None and scores["frames"] is None
    assert "videos: all  frames: whole videos" in capsys.readouterr().out


def test_evaluate_states_that_synthetic_videos_need_no_fit(tmp_path: Path, capsys) -> None:
    VideoSlotModel(**get_config("tiny").model).save_pretrained(tmp_path / "model")
    out = tmp_path / "scores.json"
    args = ["--model", str(tmp_path / "model"), "--data", "synthetic:easy", "--json", str(out)]
    assert evaluate_main([*args, "--videos", "1", "--frames", "2", "--frame-fit", "stretch"]) == 0
    scores = json.loads(out.read_text())
    assert (scores["frame_fit"], scores["frame_fit_source"]) == (None, "none")
    printed = capsys.readouterr()
    assert "frame fit: none (synthetic videos are made at the model's input size)" in printed.out
    assert "--frame-fit stretch does nothing here" in printed.out + printed.err


def test_evaluation_lines_during_training_say_their_frames_and_fit(tmp_path: Path) -> None:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, spec=f"videos:{labelled(tmp_path)}", val_frames=2, frame_fit="stretch")
    fit(dataclasses.replace(config, steps=1, data=data), tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = (line for line in lines if line["kind"] == "eval")
    assert evaluation["val_frames"] == 2 and evaluation["frame_fit"] == "stretch"

    synthetic = dataclasses.replace(config.data, val_videos=1, val_frames=None)  # generated at the input size
    fit(dataclasses.replace(config, steps=1, data=synthetic), tmp_path / "synthetic", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "synthetic" / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = (line for line in lines if line["kind"] == "eval")
    assert evaluation["val_frames"] is None and evaluation["frame_fit"] is None
