"""The sample pictures of a run: the video they show is read when the run starts (a run without evaluation shows
its first video, which may be shorter than ``val_frames`` or than a sample), and a sample that cannot be drawn
does not cost the step its checkpoint or its evaluation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.checkpoint import checkpoint_step, list_checkpoints
from training.configs import get_config
from training.datasets.export import write_mp4
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.run_data import SAMPLE_FRAMES, validation_data
from training.run_folder import TRAIN_CONFIG_FILE, write_train_config


def _recordings(tmp_path: Path, lengths: tuple[int, ...]) -> Path:
    """Unlabelled videos of the given lengths, named so that they sort in that order."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    for order, length in enumerate(lengths):
        write_mp4(folder / f"{order}_cam.mp4", generate_video("easy", order + 1, length, (32, 32)).frames)
    return folder


def _config(spec: str, **changes):  # type: ignore[no-untyped-def]
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=spec, num_workers=0, val_frames=24)
    return dataclasses.replace(tiny, data=data, **{"steps": 2, "eval_every": 1, "checkpoint_every": 2, **changes})


def test_an_unlabelled_run_whose_first_video_is_shorter_than_val_frames_trains_and_draws_samples(
    tmp_path: Path,
) -> None:
    folder = _recordings(tmp_path, (5, 12))  # the first: shorter than val_frames (24) and than a sample (8)
    result = fit(_config(f"videos:{folder}"), tmp_path / "run", progress=False)
    assert result.step == 2
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "step-00000001.png",
        "step-00000002.png",
    ]


def test_the_preview_of_an_unlabelled_run_is_read_at_the_start(tmp_path: Path) -> None:
    folder = _recordings(tmp_path, (5, 12))
    short = validation_data(_config(f"videos:{folder}"))
    assert short.videos is None and short.preview is not None
    (folder / "0_cam.mp4").unlink()  # read already: the samples need the file no more
    assert short.preview[0].frames.shape[0] == 5  # shorter than a sample: shown whole
    (folder / "1_cam.mp4").rename(folder / "0_cam.mp4")
    long = validation_data(_config(f"videos:{folder}"))
    assert long.preview is not None and long.preview[0].frames.shape[0] == SAMPLE_FRAMES


def test_a_sample_that_cannot_be_drawn_keeps_the_checkpoint_and_evaluation_of_its_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "samples").write_text("not a folder\n")  # the picture cannot be saved
    config = _config("synthetic:easy", steps=4, eval_every=2, checkpoint_every=2)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, val_frames=4))
    write_train_config(run_dir / TRAIN_CONFIG_FILE, config)  # a run's folder (one of other files is refused)
    with pytest.raises(OSError):
        fit(config, run_dir, progress=False)
    assert [checkpoint_step(path) for path in list_checkpoints(run_dir)] == [2]
    assert (run_dir / "best" / "selection.json").is_file()
