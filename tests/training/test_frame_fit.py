"""``frame_fit``: real frames of another aspect ratio than the model's input are centre-cropped (the default) or
stretched whole in training, evaluation during training and the evaluation tools, and the trained model records
the fit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from plugins import VideoSlotModel
from plugins.model_files import CONFIG_FILE
from training.config import DataConfig
from training.configs import get_config
from training.datasets import build_dataset
from training.datasets.export import write_labelled_mp4
from training.datasets.selection import evaluation_videos
from training.datasets.synthetic import generate_video
from training.evaluate import main as evaluate_main
from training.loop import fit as fit_run
from training.run import apply_overrides, parse_args
from training.run_data import train_clips, val_dataset


def _wide_videos(tmp_path: Path) -> str:
    """One labelled 32x64 video: twice as wide as the tiny model's 32x32 input."""
    video = generate_video("easy", 3, 8, (32, 64))
    folder = tmp_path / "wide"
    write_labelled_mp4(folder, "clip", video.frames, video.masks)
    return f"videos:{folder}"


@pytest.mark.parametrize("fit", ["crop", "stretch"])
def test_training_and_its_evaluation_read_frames_as_frame_fit_says(tmp_path: Path, fit: str) -> None:
    spec = _wide_videos(tmp_path)
    tiny = get_config("tiny")
    config = dataclasses.replace(tiny, data=dataclasses.replace(tiny.data, spec=spec, val_videos=1, frame_fit=fit))
    crop = fit == "crop"
    torch.manual_seed(0)
    train = train_clips(config)[0]
    torch.manual_seed(0)
    expected = build_dataset(spec, "train", tiny.data.clip_length, (32, 32), center_crop=crop)[0]
    assert torch.equal(train.frames, expected.frames)
    validation, preview = val_dataset(config)
    assert validation is not None and preview is validation
    assert torch.equal(validation[0].frames, build_dataset(spec, "val", 4, (32, 32), center_crop=crop)[0].frames)
    evaluated = evaluation_videos(spec, (32, 32), None, center_crop=crop)[0]
    other = evaluation_videos(spec, (32, 32), None, center_crop=not crop)[0]
    assert evaluated.masks is not None and other.masks is not None
    assert not torch.equal(evaluated.masks, other.masks)  # the crop drops the sides the stretch keeps
    assert torch.equal(evaluated.frames, build_dataset(spec, "val", None, (32, 32), center_crop=crop)[0].frames)


def test_the_flags_set_frame_fit_and_clip_length() -> None:
    args = parse_args(["--config", "tiny", "--frame-fit", "stretch", "--clip-length", "2"])
    config = apply_overrides(get_config("tiny"), args)
    assert (config.data.frame_fit, config.data.clip_length) == ("stretch", 2)
    with pytest.raises(ValueError, match="clip_length must be >= 1, got 0"):
        apply_overrides(get_config("tiny"), parse_args(["--config", "tiny", "--clip-length", "0"]))


def test_an_unknown_frame_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="frame_fit must be one of crop, stretch, got 'squash'"):
        DataConfig(frame_fit="squash")


@pytest.mark.parametrize("fit", ["crop", "stretch"])
def test_a_model_trained_on_real_video_records_its_fit_and_evaluation_uses_it(
    tmp_path: Path, fit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every save of a run on real video (checkpoints, best, final) records the fit in ``config.json``; loading
    gives it back as ``VideoSlotModel.frame_fit``; ``training.evaluate`` fits frames that way unless told
    otherwise."""
    spec = _wide_videos(tmp_path)
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=spec, val_videos=1, val_frames=2, frame_fit=fit)
    result = fit_run(dataclasses.replace(tiny, steps=2, data=data), tmp_path / "run", progress=False)
    assert result.model_dir is not None
    saved = [result.model_dir, *sorted((tmp_path / "run" / "checkpoints").glob("step-*"))]
    for folder in saved:
        assert json.loads((folder / CONFIG_FILE).read_text())["input"] == {"frame_fit": fit}
    assert VideoSlotModel.from_pretrained(result.model_dir).frame_fit == fit

    def scores(*flags: str) -> dict[str, float]:
        out = tmp_path / f"scores{len(flags)}{'-'.join(flags)}.json"
        assert evaluate_main(["--model", str(result.model_dir), "--data", spec, "--json", str(out), *flags]) == 0
        return {k: v for k, v in json.loads(out.read_text()).items() if isinstance(v, float)}

    other = "stretch" if fit == "crop" else "crop"
    assert scores() == scores("--frame-fit", fit) != scores("--frame-fit", other)


def test_a_model_trained_on_synthetic_frames_records_no_fit(tmp_path: Path) -> None:
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, val_videos=1, val_frames=2)
    result = fit_run(dataclasses.replace(tiny, steps=1, data=data), tmp_path / "run", progress=False)
    assert result.model_dir is not None
    assert "input" not in json.loads((result.model_dir / CONFIG_FILE).read_text())
    assert VideoSlotModel.from_pretrained(result.model_dir).frame_fit is None
