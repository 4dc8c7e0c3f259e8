"""A run records the files of its local data (``data_files.json``: name, size, frame count where known, masks), and
``--resume`` refuses a data folder whose files were added, removed or changed since, listing the differences; a
run from before the record resumes as before, and a model card gives the count of the files."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.configs import get_config
from training.data_files import DATA_FILES_FILE
from training.datasets.export import write_labelled_mp4, write_mp4, write_sequence
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.model_card import main as card_main
from training.run import main as run_main


def _recordings(folder: Path, seeds: tuple[int, ...] = (1, 2)) -> Path:
    folder.mkdir(exist_ok=True)
    for seed in seeds:
        write_mp4(folder / f"cam_{seed}.mp4", generate_video("easy", seed, 6, (32, 32)).frames)
    return folder


def _config(spec: str, steps: int = 4, **data: object) -> TrainConfig:
    tiny = get_config("tiny")
    settings = dataclasses.replace(tiny.data, spec=spec, num_workers=0, **data)  # type: ignore[arg-type]
    return dataclasses.replace(tiny, data=settings, steps=steps, eval_every=0, checkpoint_every=2)


def _record(run: Path) -> dict[str, object]:
    return dict(json.loads((run / DATA_FILES_FILE).read_text()))


def test_a_run_records_the_files_of_its_videos_folder(tmp_path: Path) -> None:
    folder = _recordings(tmp_path / "rec")
    video = generate_video("easy", 5, 6, (32, 32))
    write_labelled_mp4(folder, "labelled", video.frames, video.masks)
    (folder / ".hidden.mp4").write_bytes(b"not read")  # hidden, not a recording: the dataset skips it
    fit(_config(f"videos:{folder}", steps=1), tmp_path / "run", progress=False)
    files = [
        {"name": name, "size": (folder / name).stat().st_size, "frames": None, "masks": masks}
        for name, masks in (("cam_1.mp4", 0), ("cam_2.mp4", 0), ("labelled.mp4", 6))
    ]
    expected = {"spec": f"videos:{folder}", "uses": ["training", "validation"], "files": files}
    assert _record(tmp_path / "run") == {"sources": [expected]}


def test_a_run_records_its_davis_sequences_and_separate_validation_data(tmp_path: Path) -> None:
    davis = tmp_path / "davis"
    for seed, name in ((3, "bear"), (4, "dog")):
        write_sequence(davis, name, generate_video("easy", seed, 5, (32, 32)))
    labelled = tmp_path / "labelled"
    video = generate_video("easy", 5, 6, (32, 32))
    write_labelled_mp4(labelled, "clip", video.frames, video.masks)
    config = _config(f"davis:{davis}", steps=1, val_spec=f"videos:{labelled}", val_frames=2)
    fit(config, tmp_path / "run", progress=False)
    training, validation = _record(tmp_path / "run")["sources"]  # type: ignore[misc]
    frames = sorted((davis / "JPEGImages" / "32p" / "bear").iterdir())
    assert training["spec"] == f"davis:{davis}" and training["uses"] == ["training"]
    assert [entry["name"] for entry in training["files"]] == ["JPEGImages/32p/bear", "JPEGImages/32p/dog"]
    assert training["files"][0] == {
        "name": "JPEGImages/32p/bear",
        "size": sum(frame.stat().st_size for frame in frames),
        "frames": 5,
        "masks": 5,
    }
    assert validation["spec"] == f"videos:{labelled}" and validation["uses"] == ["validation"]
    assert [entry["name"] for entry in validation["files"]] == ["clip.mp4"]


def test_a_synthetic_run_records_no_data_files(tmp_path: Path) -> None:
    fit(_config("synthetic:easy", steps=1, val_videos=1, val_frames=2), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / DATA_FILES_FILE).exists()


def _stopped_run(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A run on two recordings stopped at its checkpoint of step 2 of 4, and the command that resumes it."""
    folder = _recordings(tmp_path / "rec")
    run = tmp_path / "run"
    fit(_config(f"videos:{folder}"), run, progress=False, stop_after=2)
    resume = ["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]
    return folder, run, resume


def test_resume_refuses_recordings_added_removed_or_changed(tmp_path: Path, capsys) -> None:
    folder, run, resume = _stopped_run(tmp_path)
    capsys.readouterr()
    _recordings(folder, seeds=(3,))  # added
    (folder / "cam_1.mp4").unlink()  # removed
    write_mp4(folder / "cam_2.mp4", generate_video("easy", 9, 8, (32, 32)).frames)  # changed
    before = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert run_main(resume) == 2
    err = capsys.readouterr().err
    assert f"error: {run} was started on other data files than its data folders hold now" in err
    assert f"({run / DATA_FILES_FILE} lists those it started on)" in err
    recorded = {entry["name"]: entry for entry in _record(run)["sources"][0]["files"]}  # type: ignore[index]
    sizes = f"size {recorded['cam_2.mp4']['size']} -> {(folder / 'cam_2.mp4').stat().st_size}"
    assert (
        f"videos:{folder} (training and validation data): added cam_3.mp4; removed cam_1.mp4; changed cam_2.mp4 "
        f"({sizes})"
    ) in err
    assert "Put the files back as they were to resume" in err
    assert f"delete {run / DATA_FILES_FILE} and --resume: the run records them anew" in err
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == before  # the run was not touched


def test_resume_continues_once_the_files_are_back(tmp_path: Path, capsys) -> None:
    folder, run, resume = _stopped_run(tmp_path)
    shutil.move(folder / "cam_2.mp4", tmp_path / "cam_2.mp4")
    assert run_main(resume) == 2
    assert "removed cam_2.mp4" in capsys.readouterr().err
    shutil.move(tmp_path / "cam_2.mp4", folder / "cam_2.mp4")
    assert run_main(resume) == 0
    assert (run / "model" / "model.safetensors").is_file()


def test_masks_added_to_a_training_only_folder_do_not_stop_a_resume(tmp_path: Path) -> None:
    """Training reads only frames: masks matter to the validation data alone."""
    folder = _recordings(tmp_path / "rec")
    labelled = tmp_path / "labelled"
    video = generate_video("easy", 5, 6, (32, 32))
    write_labelled_mp4(labelled, "clip", video.frames, video.masks)
    config = _config(f"videos:{folder}", val_spec=f"videos:{labelled}", val_frames=2)
    fit(config, tmp_path / "run", progress=False, stop_after=2)
    masks = folder / "cam_1"
    masks.mkdir()
    shutil.copy(labelled / "clip" / "00000.png", masks / "00000.png")
    assert fit(config, tmp_path / "run", progress=False, resume=True).step == 4
    (labelled / "clip" / "00005.png").unlink()  # the validation video loses a mask: refused as changed
    with pytest.raises(ValueError, match=r"\(validation data\): changed clip.mp4 \(masks 6 -> 5\)"):
        fit(config, tmp_path / "run", progress=False, resume=True)


def test_a_run_without_a_checkpoint_starts_again_on_the_files_there_now(tmp_path: Path) -> None:
    folder, run, resume = _stopped_run(tmp_path)
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint: --resume starts it from step 0
    _recordings(folder, seeds=(3,))
    assert run_main(resume) == 0
    names = [entry["name"] for entry in _record(run)["sources"][0]["files"]]  # type: ignore[index]
    assert names == ["cam_1.mp4", "cam_2.mp4", "cam_3.mp4"]  # recorded again by the new start


def test_a_run_without_its_record_resumes_on_the_files_there_now_and_records_them(tmp_path: Path, capsys) -> None:
    """A run from before the record, or one whose record was deleted to accept changed files (after a file failed
    mid-run, say), resumes unchecked and records the files it goes on with."""
    folder, run, resume = _stopped_run(tmp_path)
    (run / DATA_FILES_FILE).unlink()
    _recordings(folder, seeds=(3,))
    assert run_main(resume) == 0
    assert "data files" not in capsys.readouterr().err
    names = [entry["name"] for entry in _record(run)["sources"][0]["files"]]  # type: ignore[index]
    assert names == ["cam_1.mp4", "cam_2.mp4", "cam_3.mp4"]


def test_a_model_card_gives_the_count_of_the_recorded_files(tmp_path: Path) -> None:
    folder = _recordings(tmp_path / "rec", seeds=(1, 2, 3))
    fit(_config(f"videos:{folder}", steps=2), tmp_path / "run", progress=False)
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "card")]) == 0
    card = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    row = f"| data | `videos:{folder}`, clips of 3 frames, batch 2"
    assert f"{row}; 3 files, listed in the run's `{DATA_FILES_FILE}` |" in card
    (tmp_path / "run" / DATA_FILES_FILE).unlink()  # a run from before the record: no count
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "card")]) == 0
    assert f"{row} |" in (tmp_path / "card" / "MODEL_CARD.md").read_text()


def test_a_run_moved_with_its_data_resumes_on_the_new_folder_once_told_it(tmp_path: Path, capsys) -> None:
    folder, run, resume = _stopped_run(tmp_path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(folder, moved / "rec")
    shutil.move(run, moved / "run")
    folder, run = moved / "rec", moved / "run"
    resume = ["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]
    capsys.readouterr()
    assert run_main(resume) == 2
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'rec'} does not exist; if the run's data moved" in err, err
    assert "resume with --data (or --val-data) naming its new folder" in err
    assert run_main([*resume, "--data", f"videos:{folder}"]) == 0
    note = capsys.readouterr()
    assert f"the run's data moved: videos:{tmp_path / 'rec'} (now given as videos:{folder})" in note.out + note.err
    assert (run / "model" / "model.safetensors").is_file()
    assert json.loads((run / "train_config.json").read_text())["data"]["spec"] == f"videos:{folder}"
    assert [source["spec"] for source in _record(run)["sources"]] == [f"videos:{folder}"]  # type: ignore[index]


def test_a_moved_folder_must_hold_the_files_the_run_started_on(tmp_path: Path, capsys) -> None:
    _, run, resume = _stopped_run(tmp_path)
    other = _recordings(tmp_path / "other", seeds=(1, 5))
    before = (run / "train_config.json").read_text()
    capsys.readouterr()
    assert run_main([*resume, "--data", f"videos:{other}"]) == 2
    err = capsys.readouterr().err
    assert "was started on other data files than its data folders hold now" in err
    assert "added cam_5.mp4; removed cam_2.mp4" in err
    assert (run / "train_config.json").read_text() == before  # nothing recorded


def test_a_sequence_the_split_no_longer_reads_is_named_as_left_out_not_removed(tmp_path: Path, capsys) -> None:
    """A davis: folder given a val list after the run started: its training split leaves that sequence out, while
    its files are all still there, which "removed" would misreport."""
    davis = tmp_path / "davis"
    for seed, name in ((3, "bear"), (4, "dog")):
        write_sequence(davis, name, generate_video("easy", seed, 5, (32, 32)))
    run = tmp_path / "run"
    fit(_config(f"davis:{davis}", val_frames=2), run, progress=False, stop_after=2)
    (davis / "ImageSets").mkdir()
    (davis / "ImageSets" / "val.txt").write_text("dog\n")
    capsys.readouterr()
    assert run_main(["--config", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        "left out of the split though still in the folder (the data's ImageSets lists decide) JPEGImages/32p/dog"
        in (err)
    )
    assert "removed JPEGImages" not in err
