"""The training loop: exact resume, atomic checkpoints, the schedule, metric files, torchrun data parallelism."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torchrun_jobs import TORCHRUN_TWO_PROCESSES, torchrun_env

from plugins import VideoSlotModel
from training.checkpoint import list_checkpoints, load_trainer_state
from training.configs import get_config
from training.loop import fit
from training.run import apply_overrides, parse_args
from training.schedule import warmup_cosine

REPO = Path(__file__).resolve().parents[2]


def tiny(steps: int = 6, **data_overrides) -> object:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, **{"val_videos": 1, "val_frames": 2, **data_overrides})
    return dataclasses.replace(config, steps=steps, data=data, eval_every=3, checkpoint_every=2, log_every=1)


@pytest.mark.parametrize("workers", [0, 1])
def test_interrupted_and_resumed_run_reaches_the_same_weights(tmp_path: Path, workers: int) -> None:
    config = tiny(num_workers=workers)
    straight = fit(config, tmp_path / "straight", progress=False)
    stopped = fit(config, tmp_path / "resumed", progress=False, stop_after=3)
    assert stopped.step == 3 and stopped.model_dir is None
    resumed = fit(config, tmp_path / "resumed", progress=False, resume=True)
    assert resumed.step == config.steps
    expected = load_file(str(straight.model_dir / "model.safetensors"))
    actual = load_file(str(resumed.model_dir / "model.safetensors"))
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not (expected[key] == actual[key]).all()]
    assert not different, f"weights differ after resume: {different[:5]}"


def test_existing_run_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    fit(tiny(steps=2), tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        fit(tiny(steps=2), tmp_path, progress=False)


def test_a_folder_of_other_files_is_refused_as_out_and_left_as_it_was(tmp_path: Path) -> None:
    """A new run clears samples/ and best/ and writes over metrics.jsonl and command.txt: in a folder that holds no
    run, those would be someone else's files."""
    project = tmp_path / "project"
    (project / "samples").mkdir(parents=True)
    (project / "samples" / "holiday.png").write_bytes(b"a picture")
    (project / "metrics.jsonl").write_text("mine\n")
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    for resume in (False, True):
        with pytest.raises(FileExistsError, match=r"holds files \(metrics\.jsonl, samples\) but no training run"):
            fit(tiny(steps=1), project, progress=False, resume=resume)
    assert {path: path.read_bytes() for path in project.rglob("*") if path.is_file()} == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fit(tiny(steps=1), empty, progress=False).step == 1, "an empty folder is a fine --out"


def test_hidden_entries_and_lost_and_found_do_not_make_a_folder_foreign(tmp_path: Path) -> None:
    """A volume's root (lost+found) or a folder a desktop touched (.DS_Store) holds no one's work a run would touch;
    one visible file does."""
    from training.run_folder import check_foreign_folder

    (tmp_path / "lost+found").mkdir()
    (tmp_path / ".DS_Store").write_bytes(b"")
    check_foreign_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files \(notes\.txt\)"):
        check_foreign_folder(tmp_path)


def test_a_first_step_that_fails_on_local_data_leaves_no_record_of_its_files(tmp_path: Path) -> None:
    """The record of the data files (written for davis: and videos: data) is part of what a run that never trained
    removes: left behind, it made the folder one of other files, and the run could not be started again there."""
    from training.datasets.__main__ import main as datasets_main
    from training.run_folder import existing_run_entries, remove_created

    data = tmp_path / "data"
    assert datasets_main(["generate", "--videos", "2", "--frames", "4", "--size", "32", "--out", str(data)]) == 0
    run = tmp_path / "run"
    config = tiny(steps=1, spec=f"davis:{data}")
    fit(config, run, progress=False)
    assert (run / "data_files.json").is_file()
    fresh = tmp_path / "fresh"
    existed = existing_run_entries(fresh)
    fresh.mkdir()
    shutil.copy(run / "data_files.json", fresh / "data_files.json")  # as a started run leaves it
    remove_created(fresh, existed)
    assert not fresh.exists()


def test_a_new_run_does_not_inherit_a_killed_runs_best_model(tmp_path: Path) -> None:
    """A run killed after its first evaluation but before its first checkpoint leaves ``best/``; a new run in
    that directory (maybe another configuration) must select among its own evaluations only."""
    fit(tiny(steps=3), tmp_path, progress=False)
    shutil.rmtree(tmp_path / "checkpoints")
    shutil.rmtree(tmp_path / "model")
    selection = tmp_path / "best" / "selection.json"
    selection.write_text(json.dumps({**json.loads(selection.read_text()), "score": 100.0}))  # unbeatable
    result = fit(dataclasses.replace(tiny(steps=3), seed=7), tmp_path, progress=False)
    assert result.best is not None and result.best.score < 100


def _video_folder(folder: Path, labelled: dict[str, int]) -> Path:
    """mp4 videos named by ``labelled`` (stem -> frames); a stem in upper case gets no masks."""
    from training.datasets.export import write_mask_png, write_mp4
    from training.datasets.synthetic import generate_video

    folder.mkdir()
    for seed, (stem, frames) in enumerate(labelled.items()):
        video = generate_video("easy", seed, frames, (32, 32))
        write_mp4(folder / f"{stem}.mp4", video.frames)
        if stem.islower():
            (folder / stem).mkdir()
            for t, ids in enumerate(video.masks):
                write_mask_png(folder / stem / f"{t:05d}.png", ids)
    return folder


def test_a_partly_labelled_video_folder_trains_and_evaluates_on_its_labelled_videos(tmp_path: Path, capsys) -> None:
    from training.model_card import main as card_main

    folder = _video_folder(tmp_path / "videos", {"A": 6, "b": 6, "C": 6})
    config = dataclasses.replace(tiny(steps=3), data=dataclasses.replace(tiny().data, spec=f"videos:{folder}"))
    result = fit(config, tmp_path / "run", progress=False)
    assert result.step == 3 and result.scores is not None
    # Its model card too is scored on the labelled videos, with a note on those left out.
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "card")]) == 0
    assert "2 video(s) of videos:" in capsys.readouterr().err
    assert json.loads((tmp_path / "card" / "scores.json").read_text())


def test_the_evaluation_tools_score_the_labelled_videos_of_a_folder_up_to_frames(tmp_path: Path, capsys) -> None:
    """As training does: unlabelled videos are left out with a note; ``--frames`` caps, it does not require."""
    from training.ceiling import main as ceiling_main
    from training.evaluate import main as evaluate_main

    folder = _video_folder(tmp_path / "videos", {"A": 6, "b": 6, "c": 3})
    model = tmp_path / "model"
    VideoSlotModel(**get_config("tiny").model).save_pretrained(model)
    out = tmp_path / "scores.json"
    args = ["--model", str(model), "--data", f"videos:{folder}", "--frames", "5", "--json", str(out)]
    assert evaluate_main(args) == 0
    scores = json.loads(out.read_text())
    assert scores["num_videos"] == 2 and scores["num_frames"] == 5 + 3
    assert "1 video(s) of videos:" in capsys.readouterr().err
    assert ceiling_main(["--data", f"videos:{folder}", "--mask-size", "8", "--image-size", "32"]) == 0


@pytest.mark.parametrize(
    ("videos", "problem"),
    [({"a": 1, "b": 6}, r"a\.mp4.*fewer than")],
    ids=["too short"],
)
def test_unusable_validation_data_fails_the_run_before_its_first_step(tmp_path: Path, videos, problem) -> None:
    """Not at the first evaluation, hundreds of steps (and maybe no checkpoint) later."""
    from training.datasets import DatasetError

    folder = _video_folder(tmp_path / "videos", videos)
    data = dataclasses.replace(tiny().data, spec="synthetic:easy", val_spec=f"videos:{folder}", val_frames=2)
    with pytest.raises(DatasetError, match=problem):
        fit(dataclasses.replace(tiny(steps=3), data=data), tmp_path / "run", progress=False)
    assert (
        not (tmp_path / "run" / "metrics.jsonl").exists()
        or "train" not in (tmp_path / "run" / "metrics.jsonl").read_text()
    )


def test_run_writes_metrics_tensorboard_and_pruned_checkpoints(tmp_path: Path) -> None:
    fit(tiny(steps=6), tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "reconstruction_mse", "preheat_mse", "lr", "clips_per_s", "grad_norm"} <= set(train[0])
    assert [r["step"] for r in evals] == [3, 6] and "video_fg_ari" in evals[0]
    optim = get_config("tiny").optim
    applied = [optim.lr * warmup_cosine(s, 6, optim.warmup_fraction, optim.final_lr_fraction) for s in range(6)]
    assert [r["lr"] for r in train] == pytest.approx(applied), "each line logs the rate its step used"
    assert any((tmp_path / "tensorboard").iterdir())
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000006"]
    assert load_trainer_state(list_checkpoints(tmp_path)[-1]).step == 6
    VideoSlotModel.from_pretrained(list_checkpoints(tmp_path)[-1])


def test_a_killed_run_leaves_readable_checkpoints_and_resumes(tmp_path: Path) -> None:
    """SIGKILL at a random moment (most likely between checkpoints), then ``--resume`` finishes the run. A kill
    in the middle of a checkpoint write is covered deterministically by
    ``test_a_checkpoint_that_cannot_be_written_is_an_error_naming_the_folder`` (no partial checkpoint is left)."""
    command = [sys.executable, "-m", "training.run", "--config", "tiny", "--steps", "60", "--out", str(tmp_path)]
    process = subprocess.Popen(
        [*command, "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(list_checkpoints(tmp_path)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoints = list_checkpoints(tmp_path)
    assert checkpoints, "no checkpoint was written before the kill"
    for checkpoint in checkpoints:
        VideoSlotModel.from_pretrained(checkpoint)
        assert load_trainer_state(checkpoint).step > 0
    if load_trainer_state(checkpoints[-1]).step >= 60:
        pytest.skip("the run finished before it was killed; nothing left to resume")
    finished = subprocess.run([*command, "--resume", "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_a_resumed_run_logs_each_step_once(tmp_path: Path) -> None:
    """Steps logged after the last checkpoint of a stopped run are logged again on resume, so the first copies go."""
    config = tiny(steps=6)
    fit(config, tmp_path, progress=False, stop_after=3)
    last = list_checkpoints(tmp_path)[-1]
    assert load_trainer_state(last).step == 3
    shutil.rmtree(last)  # as if killed after logging step 3 (and its evaluation) but before checkpointing it
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 4, "kind": "tr')  # and while writing the next line
    fit(config, tmp_path, progress=False, resume=True)  # continues from step 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]


def test_config_rejects_non_positive_intervals() -> None:
    with pytest.raises(ValueError, match=r"checkpoint_every=0, log_every=0"):
        dataclasses.replace(tiny(), checkpoint_every=0, log_every=0)


def test_resume_refuses_a_changed_configuration_and_names_the_change(tmp_path: Path) -> None:
    fit(tiny(steps=6), tmp_path, progress=False, stop_after=2)
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.001 -> 0\.01; steps: 6 -> 4") as raised:
        fit(
            dataclasses.replace(tiny(steps=4), optim=dataclasses.replace(tiny().optim, lr=0.01)), tmp_path, resume=True
        )
    assert "--resume" in str(raised.value)
    assert json.loads((tmp_path / "train_config.json").read_text())["steps"] == 6, "the saved configuration stays"
    assert fit(tiny(steps=6, num_workers=1), tmp_path, progress=False, resume=True).step == 6  # workers may change


def test_cli_resume_continues_with_the_configuration_the_run_started_with(tmp_path: Path) -> None:
    """``--resume`` without flags takes the saved configuration, not the experiment's defaults (20 steps)."""
    from training.run import main

    fit(tiny(steps=6), tmp_path, progress=False, stop_after=2)
    assert main(["--config", "tiny", "--out", str(tmp_path), "--resume", "--no-progress"]) == 0
    assert load_trainer_state(list_checkpoints(tmp_path)[-1]).step == 6
    assert main(["--config", "tiny", "--out", str(tmp_path), "--resume", "--steps", "9", "--no-progress"]) == 2
    assert main(["--config", "smoothsa_cnn", "--out", str(tmp_path), "--resume", "--no-progress"]) == 2


def test_cli_resume_may_change_checkpoint_and_log_cadence_without_changing_the_weights(tmp_path: Path) -> None:
    """``--checkpoint-every``, ``--keep-checkpoints`` and ``--log-every`` change what a run keeps, not what it
    computes: a resume may change them, and reaches the weights of the run that kept its cadence."""
    from training.run import main

    common = ["--config", "tiny", "--steps", "6", "--no-progress"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*common, "--out", str(straight)]) == 0
    fit(apply_overrides(get_config("tiny"), parse_args(common)), resumed, progress=False, stop_after=2)
    cadence = ["--checkpoint-every", "1", "--keep-checkpoints", "1", "--log-every", "4"]
    assert main([*common, "--out", str(resumed), "--resume", *cadence]) == 0
    assert [path.name for path in list_checkpoints(resumed)] == ["step-00000006"], "one kept, the newest"
    logged = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if row["kind"] == "train" and row["step"] > 2] == [4, 6]
    expected, actual = _weights(straight / "model"), _weights(resumed / "model")
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    saved = json.loads((resumed / "train_config.json").read_text())
    assert saved["checkpoint_every"] == get_config("tiny").checkpoint_every, "the run's record keeps its start"


@pytest.mark.parametrize("flag", ["--checkpoint-every", "--keep-checkpoints", "--log-every"])
def test_cadence_flags_below_one_are_refused_naming_the_flag(flag: str) -> None:
    with pytest.raises(ValueError, match=f"{flag} must be at least 1, got 0"):
        apply_overrides(get_config("tiny"), parse_args(["--config", "tiny", flag, "0"]))


def test_cli_resume_before_the_first_checkpoint_keeps_the_runs_configuration(tmp_path: Path, capsys) -> None:
    """A run killed before it wrote a checkpoint starts again, but as it was started: not with the experiment's
    defaults, and without replacing the command that started it."""
    from training.run import main

    run = tmp_path / "run"
    assert main(["--config", "tiny", "--out", str(run), "--steps", "3", "--lr", "0.005", "--no-progress"]) == 0
    started = json.loads((run / "train_config.json").read_text())
    command = (run / "command.txt").read_text()
    for leftover in ("checkpoints", "model", "best"):
        shutil.rmtree(run / leftover, ignore_errors=True)  # as if killed before step 1's checkpoint
    assert main(["--config", "tiny", "--out", str(run), "--resume", "--steps", "9", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert load_trainer_state(list_checkpoints(run)[-1]).step == 3
    assert json.loads((run / "train_config.json").read_text()) == started
    assert (run / "command.txt").read_text() == command

    (run / "train_config.json").write_text('{"name": "tiny", "optim": {"old_field": 1}')
    assert main(["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert f"{run / 'train_config.json'} cannot be read" in capsys.readouterr().err


@pytest.mark.parametrize("below", ["", "sub"], ids=["the file itself", "a folder below it"])
def test_cli_refuses_an_out_that_is_a_file(tmp_path: Path, capsys, below: str) -> None:
    from training.run import main

    (tmp_path / "a_file").write_text("")
    assert main(["--config", "tiny", "--out", str(tmp_path / "a_file" / below), "--no-progress"]) == 2
    assert f"{tmp_path / 'a_file'} is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize("lr", ["0", "-1", "inf", "nan"])
def test_cli_refuses_a_learning_rate_that_cannot_train(tmp_path: Path, capsys, lr: str) -> None:
    from training.run import main

    assert main(["--config", "tiny", "--lr", lr, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"--lr must be a finite number above 0, got {float(lr)}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_data_that_cannot_be_read_leaves_no_run_behind(tmp_path: Path, capsys) -> None:
    """Nothing is written before the data is checked: a corrected command (also with --resume) starts afresh."""
    from training.run import main

    run = tmp_path / "run"
    assert main(["--config", "tiny", "--data", f"davis:{tmp_path / 'nowhere'}", "--out", str(run)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not run.exists() or not any(run.iterdir())
    assert main(["--config", "tiny", "--steps", "1", "--out", str(run), "--resume", "--no-progress"]) == 0


def test_a_bad_frame_met_in_a_worker_process_is_reported_in_one_line(tmp_path: Path, capsys) -> None:
    """The DataLoader wraps a worker's error in the worker's traceback; the run reports the error itself."""
    from PIL import Image

    from training.datasets.synthetic import generate_video
    from training.run import main

    frames = tmp_path / "davis" / "JPEGImages" / "480p" / "clip"
    frames.mkdir(parents=True)
    for t, frame in enumerate(generate_video("easy", 0, 6, (32, 32)).frames):
        Image.fromarray(frame).save(frames / f"{t:05d}.jpg")
    for t in (1, 4):  # one damaged frame in each of the two 3-frame training chunks
        (frames / f"{t:05d}.jpg").write_bytes(b"not a jpeg")
    data = ["--data", f"davis:{tmp_path / 'davis'}", "--val-data", "synthetic:easy", "--workers", "1"]
    assert main(["--config", "tiny", *data, "--steps", "2", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "clip" in err and "0000" in err, err
    assert "Traceback" not in err and "worker process" not in err, err


def test_a_diverging_run_stops_before_checkpointing_non_finite_weights(tmp_path: Path) -> None:
    config = dataclasses.replace(tiny(steps=6), optim=dataclasses.replace(tiny().optim, lr=1e30))
    with pytest.raises(FloatingPointError, match=r"the loss is (nan|inf|-inf) at step \d+: training diverged"):
        fit(config, tmp_path, progress=False)
    for checkpoint in list_checkpoints(tmp_path):
        weights = load_file(str(checkpoint / "model.safetensors"))
        assert all(torch.isfinite(tensor).all() for tensor in weights.values()), checkpoint.name
    assert not (tmp_path / "model").exists()


def test_the_divergence_error_names_a_way_on_that_works(tmp_path: Path, monkeypatch) -> None:
    """A --resume replays the same steps (and refuses another --lr), so the error points to a lower rate, and to the
    newest checkpoint's weights through --init-from when there is one."""
    import training.loop as loop

    real_step = loop.optimisation_step

    def nan_from_step_three(config, run, frames, device):  # the weights stay finite; only the loss is NaN
        terms = real_step(config, run, frames, device)
        return {**terms, "loss": float("nan")} if run.step >= 2 else terms

    monkeypatch.setattr(loop, "optimisation_step", nan_from_step_three)
    with pytest.raises(FloatingPointError) as raised:
        fit(tiny(steps=6), tmp_path / "run", progress=False)
    message = str(raised.value)
    assert "at step 3" in message and "A --resume would repeat the same steps" in message, message
    newest = list_checkpoints(tmp_path / "run")[-1]
    assert newest.name == "step-00000002"
    assert f"--init-from {newest} and a lower --lr" in message, message

    monkeypatch.setattr(loop, "optimisation_step", lambda *args: {**real_step(*args), "loss": float("nan")})
    with pytest.raises(FloatingPointError) as raised:
        fit(tiny(steps=6), tmp_path / "other", progress=False)
    message = str(raised.value)  # no update yet: neither the learning rate nor a checkpoint to name
    assert "before any update of the weights" in message and "--lr" not in message and "--init-from" not in message


def test_schedule_warms_up_linearly_then_decays_to_the_final_fraction() -> None:
    values = [warmup_cosine(s, 100, 0.05, 1e-3) for s in range(100)]
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert values[5] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(values[5:]))


def test_cli_rejects_an_unknown_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.run", "--config", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2 and "smoothsa_cnn" in result.stderr


def test_cli_flags_override_the_config() -> None:
    args = parse_args(["--config", "tiny", "--steps", "7", "--lr", "0.01", "--num-slots", "5", "--batch-size", "3"])
    config = apply_overrides(get_config("tiny"), args)
    assert (config.steps, config.optim.lr, config.model["num_slots"], config.data.batch_size) == (7, 0.01, 5, 3)
    untouched = apply_overrides(get_config("tiny"), parse_args(["--config", "tiny"]))
    assert untouched == get_config("tiny")
    evaluation = apply_overrides(
        get_config("tiny"), parse_args(["--config", "tiny", "--val-videos", "0", "--eval-every", "3"])
    )
    assert (evaluation.data.val_videos, evaluation.eval_every) == (0, 3)


@pytest.mark.parametrize("flag", ["--val-videos", "--eval-every"])
def test_cli_rejects_negative_evaluation_settings(flag: str) -> None:
    with pytest.raises(ValueError, match=f"{flag} must be 0 or more, got -1"):
        apply_overrides(get_config("tiny"), parse_args(["--config", "tiny", flag, "-1"]))


@pytest.mark.parametrize("slots", ["0", "257"])
def test_cli_rejects_a_slot_count_outside_what_the_service_can_segment(slots: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.run", "--config", "tiny", "--num-slots", slots],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 2 and "--num-slots must be in [1, 256] (the service's segmentation map" in result.stderr
    )
    assert result.stderr.rstrip().endswith(f"got {slots}"), result.stderr


@pytest.mark.parametrize("clip_length", [3, 1], ids=["clips", "single-frames"])
def test_torchrun_trains_with_two_cpu_processes(tmp_path: Path, clip_length: int) -> None:
    """Single-frame clips never run the transition (which must then be frozen: a transition that would train on
    them is refused); with longer clips every parameter is used, and DDP must not warn that searching for unused
    ones was wasted."""
    run_dir = tmp_path / "run"
    env = torchrun_env(tmp_path)
    command = [*TORCHRUN_TWO_PROCESSES, "-m", "training.run", "--config", "tiny", "--steps", "4"]
    command += ["--out", str(run_dir), "--no-progress"]
    command += ["--clip-length", str(clip_length)]
    if clip_length == 1:
        command += ["--train-only", "encoder", "initializer", "aggregator", "decoder"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "find_unused_parameters" not in result.stderr, result.stderr[-3000:]
    assert (run_dir / "model" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train[-1]["step"] == 4
    assert train[-1]["clips_per_s"] > 0
    recorded = (run_dir / "command.txt").read_text()
    assert recorded.startswith("torchrun --nnodes 1 --nproc-per-node 2 -m training.run --config tiny"), recorded


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_training_on_cuda_follows_the_schedule_without_warnings(tmp_path: Path) -> None:
    """fp16 autocast + gradient scaling: the scaler skips its first steps (inf gradients at the initial scale),
    which must neither warn about the scheduler nor shift the learning-rate schedule."""
    config = tiny(steps=6)
    assert config.optim.mixed_precision
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(config, tmp_path, device="cuda", progress=False)
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    assert result.step == 6 and result.model_dir is not None
    train = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r["kind"] == "train"]
    optim = config.optim
    applied = [optim.lr * warmup_cosine(s, 6, optim.warmup_fraction, optim.final_lr_fraction) for s in range(6)]
    assert [r["lr"] for r in train] == pytest.approx(applied)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_a_finished_run_whose_checkpoints_were_deleted_is_not_replaced(tmp_path: Path) -> None:
    """Deleting checkpoints to save disk must not turn a finished run into one that a new run overwrites."""
    fit(tiny(steps=2), tmp_path / "run", progress=False)
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    before = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}
    for resume in (False, True):
        with pytest.raises(FileExistsError, match=r"finished run .* without checkpoints"):
            fit(tiny(steps=2), tmp_path / "run", progress=False, resume=resume)
    assert {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()} == before


def test_a_damaged_init_from_model_is_named_before_the_run_writes_anything(tmp_path: Path) -> None:
    source = fit(tiny(steps=2), tmp_path / "source", progress=False).model_dir
    assert source is not None
    weights = source / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    config = dataclasses.replace(tiny(steps=2), init_from=str(source))
    with pytest.raises(ValueError, match=r"--init-from .*model\.safetensors cannot be read"):
        fit(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_resume_skips_a_damaged_newest_checkpoint_and_continues_exactly_from_the_one_before(
    tmp_path: Path, capsys
) -> None:
    """A crash of the machine can leave the newest checkpoint's files cut short; the run resumes from the
    previous one (with a warning) and still reaches the weights of an uninterrupted run."""
    config = tiny(steps=6)
    straight = fit(config, tmp_path / "straight", progress=False)
    fit(config, tmp_path / "run", progress=False, stop_after=4)
    *_, previous, newest = list_checkpoints(tmp_path / "run")
    state = newest / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    resumed = fit(config, tmp_path / "run", progress=False, resume=True)
    assert straight.model_dir is not None and resumed.model_dir is not None
    expected, actual = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(expected[key], actual[key]) for key in expected), "not continued from " + previous.name
    said = capsys.readouterr()
    assert f"resumed from {previous} (step 2) instead" in said.out + said.err
    for checkpoint in list_checkpoints(tmp_path / "run"):
        (checkpoint / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="no checkpoint of the run can be read"):
        fit(dataclasses.replace(config, steps=6), tmp_path / "run", progress=False, resume=True)


def test_resume_refuses_another_number_of_training_processes(tmp_path: Path) -> None:
    """Each process draws its own clips: a run written by 2 processes does not continue exactly in 1."""
    config = tiny(steps=6)
    fit(config, tmp_path / "run", progress=False, stop_after=2)
    (checkpoint,) = list_checkpoints(tmp_path / "run")
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 1
    torch.save({**state, "world_size": 2}, checkpoint / "trainer_state.pt")  # as torchrun with 2 processes wrote
    with pytest.raises(ValueError, match=r"written by 2 training process\(es\), and this resume runs 1"):
        fit(config, tmp_path / "run", progress=False, resume=True)


def test_saved_models_are_readable_by_other_users_and_numpy_randomness_resumes_exactly(tmp_path: Path) -> None:
    import stat

    import numpy as np

    from training.checkpoint import capture_rng, restore_rng

    old_umask = os.umask(0o022)
    try:
        model_dir = fit(tiny(steps=2), tmp_path / "run", progress=False).model_dir
    finally:
        os.umask(old_umask)
    assert model_dir is not None
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((model_dir / name).stat().st_mode) == 0o644, name

    saved = np.random.get_state()  # the global generator is what capture_rng reads: put it back for later tests
    try:
        np.random.seed(0)
        np.random.randn()  # leaves the second deviate of a Box-Muller pair cached
        state = capture_rng()
        expected = np.random.randn(3)
        restore_rng(state)
        np.testing.assert_array_equal(np.random.randn(3), expected)
    finally:
        np.random.set_state(saved)


def test_a_checkpoint_that_cannot_be_written_is_an_error_naming_the_folder(tmp_path: Path, monkeypatch) -> None:
    """torch reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``."""
    import training.checkpoint as checkpoint

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 593728 vs 593616")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError, match=r"cannot write the checkpoint in .*checkpoints .*is the disk full\?"):
        fit(tiny(steps=2), tmp_path / "run", progress=False)
    assert list_checkpoints(tmp_path / "run") == [] and not list((tmp_path / "run" / "checkpoints").iterdir())


def test_a_data_worker_dying_while_a_checkpoint_is_written_is_not_called_a_full_disk(tmp_path: Path, monkeypatch):
    """torch raises a dead data worker's ``RuntimeError`` wherever the main process is (its SIGCHLD check): during
    the checkpoint's ``torch.save`` it is that error, not a disk problem."""
    import training.checkpoint as checkpoint

    def worker_died(*args, **kwargs):
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Terminated. ")

    monkeypatch.setattr(checkpoint.torch, "save", worker_died)
    with pytest.raises(RuntimeError, match=r"^DataLoader worker \(pid 4242\) is killed") as error:
        fit(tiny(steps=2), tmp_path / "run", progress=False)
    assert "disk" not in str(error.value)


def test_a_warm_started_run_resumes_after_its_init_from_model_is_gone(tmp_path: Path) -> None:
    """``init_from`` is read when the run starts only; a resume must not need it."""
    source = fit(tiny(steps=2), tmp_path / "source", progress=False).model_dir
    assert source is not None
    config = dataclasses.replace(tiny(steps=4), init_from=str(source))
    fit(config, tmp_path / "run", progress=False, stop_after=2)
    shutil.rmtree(tmp_path / "source")
    assert fit(config, tmp_path / "run", progress=False, resume=True).step == 4


def test_cli_says_what_a_resume_does_and_how_to_continue_an_interrupted_run(tmp_path: Path, capsys, monkeypatch):
    """A mistyped --out with --resume would otherwise start a new run silently; a finished run is not re-saved;
    Ctrl-C says where the run can continue from."""
    import training.run as run_cli

    run = tmp_path / "run"
    argv = ["--config", "tiny", "--out", str(run), "--steps", "4", "--no-progress"]
    assert run_cli.main([*argv, "--resume"]) == 0
    assert f"note: {run} holds no run to resume: starting a new one" in capsys.readouterr().err
    model_file = run / "model" / "model.safetensors"
    finished_at = model_file.stat().st_mtime_ns
    assert run_cli.main(["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert f"{run} has finished all 4 steps" in capsys.readouterr().out
    assert model_file.stat().st_mtime_ns == finished_at, "a finished run's model was written again"
    assert run_cli.main(["--config", "tiny", "--out", str(run), "--resume", "--lr", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Differences (started with -> requested): optim.lr" in err, "a changed flag was ignored on a finished run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cli, "fit", interrupted)
    assert run_cli.main(["--config", "tiny", "--out", str(tmp_path / "other"), "--no-progress"]) == 130
    assert "interrupted: no checkpoint yet: running the command again starts from step 0" in (capsys.readouterr().err)


def test_a_resume_with_other_flags_is_refused_before_anything_is_said_of_the_run(tmp_path: Path, capsys) -> None:
    from training.run import main

    fit(tiny(steps=6), tmp_path, progress=False, stop_after=2)
    capsys.readouterr()
    assert main(["--config", "tiny", "--out", str(tmp_path), "--resume", "--steps", "9", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "resuming" not in error and "Differences (started with -> requested): steps: 6 -> 9" in error, error
    assert f"--init-from a model or checkpoint of {tmp_path} starts it from those weights" in error
