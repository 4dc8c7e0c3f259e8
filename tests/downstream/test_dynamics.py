"""Training and scoring a dynamics head on trajectory files (``python -m downstream.dynamics``): windows cut from
runs of consecutive frames only, files split by file, a head that learns dynamics the last frame alone does not
give, saved and read back, and files it cannot use named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from downstream.dynamics import (
    DynamicsConfig,
    TrajectoryError,
    fit_dynamics,
    load_dynamics,
    rollout_scores,
    trajectory_files,
    trajectory_windows,
)
from downstream.dynamics.__main__ import main
from downstream.dynamics.windows import consecutive_runs, split_files

SMALL = ["--model-dim", "32", "--layers", "1", "--heads", "2", "--ffn-dim", "64", "--history", "3", "--rollout", "3"]


def _rotating(folder: Path, videos: int = 10, frames: int = 30, seed: int = 0) -> Path:
    """Trajectories whose slots turn by 0.4 rad a frame in each pair of dimensions, from random phases: repeating
    the last frame is far off, and the next frame is a fixed linear map of the last."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    steps = np.arange(frames)[:, None, None]  # [T, 1, 1]
    for video in range(videos):
        phase = rng.uniform(0, 2 * np.pi, size=(4, 4))  # [K, D/2]
        turned = phase + 0.4 * steps  # [T, K, D/2]
        slots = np.concatenate([np.cos(turned), np.sin(turned)], axis=-1).astype(np.float32)  # [T, K, D]
        np.savez(folder / f"video{video}.npz", slots=slots, frame_index=np.arange(frames))
    return folder


def test_windows_come_from_runs_of_consecutive_frames_only(tmp_path):
    slots = np.arange(8 * 2 * 3, dtype=np.float32).reshape(8, 2, 3)  # [T, K, D]
    frame_index = np.array([0, 1, 2, 3, 5, 6, 7, 8])  # frame 4 missing
    np.savez(tmp_path / "gap.npz", slots=slots, frame_index=frame_index)
    assert consecutive_runs(frame_index) == [slice(0, 4), slice(4, 8)]
    windows = trajectory_windows([tmp_path / "gap.npz"], frames=3)
    assert windows.slots.shape == (4, 3, 2, 3) and windows.files == 1
    assert [window[0, 0, 0] for window in windows.slots] == [slots[i, 0, 0] for i in (0, 1, 4, 5)]
    assert trajectory_windows([tmp_path / "gap.npz"], frames=5).skipped == [tmp_path / "gap.npz"]


def test_files_are_split_by_file_the_same_way_for_a_seed(tmp_path):
    files = [tmp_path / f"{i}.npz" for i in range(10)]
    train, held_out = split_files(files, 0.2, seed=3)
    assert len(held_out) == 2 and not set(train) & set(held_out) and sorted(train + held_out) == files
    assert split_files(files, 0.2, seed=3) == (train, held_out)
    assert split_files(files[:1], 0.5, seed=3) == (files[:1], [])


def test_files_it_cannot_use_are_named(tmp_path):
    np.savez(tmp_path / "a.npz", slots=np.zeros((5, 4, 8), np.float32), frame_index=np.arange(5))
    np.savez(tmp_path / "b.npz", slots=np.zeros((5, 6, 8), np.float32), frame_index=np.arange(5))
    with pytest.raises(TrajectoryError, match=r"b\.npz: slots of 6 x 8, but .*a\.npz has 4 x 8"):
        trajectory_windows([tmp_path / "a.npz", tmp_path / "b.npz"], frames=2)
    np.savez(tmp_path / "other.npz", images=np.zeros(3))
    with pytest.raises(TrajectoryError, match=r"other\.npz: not a trajectory file"):
        trajectory_windows([tmp_path / "other.npz"], frames=2)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(TrajectoryError, match=r"broken\.npz: cannot be read as a trajectory file"):
        trajectory_windows([tmp_path / "broken.npz"], frames=2)
    with pytest.raises(TrajectoryError, match=r"a\.npz: not a folder of trajectory files"):
        trajectory_files(tmp_path / "a.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryError, match=r"holds no \.npz trajectory file: write some with python -m service"):
        trajectory_files(tmp_path / "empty")


def test_a_trained_head_predicts_the_held_out_videos_better_than_their_last_frame(tmp_path, capsys):
    trajectories = _rotating(tmp_path / "trajectories")
    args = ["train", str(trajectories), "--out", str(tmp_path / "head"), "--steps", "200", "--lr", "3e-3", *SMALL]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained on 200 windows of 8 files" in printed and "held-out files (2):" in printed
    saved = json.loads((tmp_path / "head" / "config.json").read_text())
    scores = saved["held_out_scores"]
    assert scores["windows"] == 10 and scores["mean_mse"] < 0.1 * scores["mean_copy_last_mse"], scores
    evaluate = ["evaluate", str(trajectories), "--model", str(tmp_path / "head"), "--json", str(tmp_path / "s.json")]
    assert main([*evaluate, "--plot", str(tmp_path / "chart.png")]) == 0
    for chart in (tmp_path / "head" / "rollout.png", tmp_path / "chart.png"):
        with Image.open(chart) as image:
            assert image.size == (480, 300) and len(set(image.getdata())) > 10, "lines and text drawn"
    evaluated = json.loads((tmp_path / "s.json").read_text())
    assert evaluated["windows"] == 50 and evaluated["mean_mse"] < 0.1 * evaluated["mean_copy_last_mse"]


def test_a_saved_head_predicts_as_the_trained_one(tmp_path):
    trajectories = trajectory_files(_rotating(tmp_path / "trajectories", videos=3))
    config = DynamicsConfig(history=3, rollout=2, model_dim=16, layers=1, heads=2, ffn_dim=32, steps=5, held_out=0.4)
    result = fit_dynamics(trajectories, tmp_path / "head", config, progress=False)
    loaded, record = load_dynamics(tmp_path / "head")
    windows = trajectory_windows(result.held_out_files, 5, 5).slots
    assert result.scores is not None and rollout_scores(loaded, windows) == result.scores
    assert record["training"]["steps"] == 5 and record["train_files"] == [path.name for path in result.train_files]
    with torch.no_grad():
        assert torch.equal(loaded(torch.from_numpy(windows[:, :3])), loaded(torch.from_numpy(windows[:, :3])))


def test_the_command_says_what_is_wrong_and_exits_2(tmp_path, capsys):
    short = tmp_path / "short"
    short.mkdir()
    np.savez(short / "a.npz", slots=np.zeros((4, 2, 8), np.float32), frame_index=np.arange(4))
    np.savez(short / "b.npz", slots=np.zeros((4, 2, 8), np.float32), frame_index=np.arange(4))
    assert main(["train", str(short), "--out", str(tmp_path / "head"), *SMALL]) == 2
    assert "no training file has 6 consecutive frames (history 3 + rollout 3)" in capsys.readouterr().err
    model_folder = tmp_path / "model"
    model_folder.mkdir()
    (model_folder / "config.json").write_text('{"encoder": "small_cnn"}')
    (model_folder / "model.safetensors").write_bytes(b"")
    assert main(["evaluate", str(short), "--model", str(model_folder)]) == 2
    assert "not the config of a slotformer head" in capsys.readouterr().err
    assert main(["train", str(short), "--out", str(tmp_path / "head"), "--heads", "3"]) == 2
    assert "model_dim 64 must be a multiple of heads 3" in capsys.readouterr().err


def test_another_models_file_among_the_held_out_ones_is_refused_before_training(tmp_path, capsys):
    """The held-out files are read before the first step: a file of another model there used to end the run after
    its last step, with a message about tensor shapes and no head saved."""
    trajectories = _rotating(tmp_path / "trajectories", videos=5)
    files = trajectory_files(trajectories)
    _, (held_out,) = split_files(files, 0.2, seed=0)
    np.savez(held_out, slots=np.zeros((30, 3, 6), np.float32), frame_index=np.arange(30))  # 3 x 6: another model
    args = ["train", str(trajectories), "--out", str(tmp_path / "head"), "--steps", "300", *SMALL]
    assert main([*args, "--held-out", "0.2", "--seed", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{held_out}: slots of 3 x 6, but" in err and "has 4 x 8: the files come from different models" in err
    assert not (tmp_path / "head").exists()


def test_evaluating_another_models_trajectories_says_so(tmp_path, capsys):
    trajectories = _rotating(tmp_path / "trajectories", videos=3)
    config = DynamicsConfig(history=3, rollout=2, model_dim=16, layers=1, heads=2, ffn_dim=32, steps=2, held_out=0)
    fit_dynamics(trajectory_files(trajectories), tmp_path / "head", config, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    np.savez(other / "a.npz", slots=np.zeros((10, 4, 6), np.float32), frame_index=np.arange(10))
    assert main(["evaluate", str(other), "--model", str(tmp_path / "head")]) == 2
    err = capsys.readouterr().err
    assert "a.npz: slots of 4 x 6, but the head in" in err and "reads slots of width 8" in err
    assert "another model than the one it was trained on" in err


def test_a_head_saved_without_scores_over_an_earlier_one_leaves_no_chart_of_it(tmp_path):
    files = trajectory_files(_rotating(tmp_path / "trajectories", videos=3))
    config = DynamicsConfig(history=3, rollout=2, model_dim=16, layers=1, heads=2, ffn_dim=32, steps=2, held_out=0.4)
    fit_dynamics(files, tmp_path / "head", config, progress=False)
    assert (tmp_path / "head" / "rollout.png").is_file()
    unscored = DynamicsConfig(history=3, rollout=2, model_dim=16, layers=1, heads=2, ffn_dim=32, steps=2, held_out=0)
    assert fit_dynamics(files, tmp_path / "head", unscored, progress=False).scores is None
    assert not (tmp_path / "head" / "rollout.png").exists()


def test_scores_that_cannot_be_written_name_the_flag_and_path(tmp_path, capsys):
    trajectories = _rotating(tmp_path / "trajectories", videos=2)
    config = DynamicsConfig(history=3, rollout=2, model_dim=16, layers=1, heads=2, ffn_dim=32, steps=2, held_out=0)
    fit_dynamics(trajectory_files(trajectories), tmp_path / "head", config, progress=False)
    evaluate = ["evaluate", str(trajectories), "--model", str(tmp_path / "head")]
    assert main([*evaluate, "--json", str(tmp_path / "nowhere" / "s.json")]) == 2
    assert f"error: cannot write --json {tmp_path / 'nowhere' / 's.json'}: No such file or directory" in (
        capsys.readouterr().err
    )
    assert main([*evaluate, "--plot", str(tmp_path)]) == 2  # a folder
    assert f"error: cannot write --plot {tmp_path}: Is a directory" in capsys.readouterr().err
