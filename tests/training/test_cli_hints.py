"""Messages and help that carry the obvious next step: a card of an unlabelled run names ``--data SPEC``,
``evaluate --model RUN`` names the run's models, a partly labelled folder says which videos evaluations leave out,
a card labels data given to it as such, and ``--help`` explains every flag and shows the defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.configs import get_config
from training.datasets.__main__ import main as datasets_main
from training.datasets.export import write_labelled_mp4, write_mp4
from training.datasets.synthetic import generate_video
from training.evaluate import main as evaluate_main
from training.loop import fit
from training.model_card import main as card_main


def video_folder(folder: Path, stems: dict[str, bool]) -> Path:
    """4-frame videos named by ``stems``, with masks where the value is True."""
    folder.mkdir()
    for seed, (stem, has_masks) in enumerate(stems.items()):
        video = generate_video("easy", seed, 4, (32, 32))
        if has_masks:
            write_labelled_mp4(folder, stem, video.frames, video.masks)
        else:
            write_mp4(folder / f"{stem}.mp4", video.frames)
    return folder


def tiny_on(spec: str, steps: int = 1):  # type: ignore[no-untyped-def]
    config = get_config("tiny")
    data = dataclasses.replace(config.data, spec=spec, val_frames=2)
    return dataclasses.replace(config, steps=steps, data=data)


def test_a_card_of_an_unlabelled_run_names_data_and_labels_it_as_given(tmp_path: Path, capsys) -> None:
    recordings = video_folder(tmp_path / "recordings", {"cam1": False, "cam2": False})
    fit(tiny_on(f"videos:{recordings}"), tmp_path / "run", progress=False)
    capsys.readouterr()
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "card")]) == 0  # published unscored
    assert "--data SPEC" in (err := capsys.readouterr().err), err  # the note says how to score it
    assert "## Not scored" in (tmp_path / "card" / "MODEL_CARD.md").read_text()
    labelled = video_folder(tmp_path / "labelled", {"clip": True})
    args = ["--run", str(tmp_path / "run"), "--out", str(tmp_path / "card"), "--data", f"videos:{labelled}"]
    assert card_main(args) == 0
    card = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert f"| videos:{labelled} (given with --data) |" in card and "(validation)" not in card


def test_evaluate_given_a_run_folder_names_its_models(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    fit(tiny_on("synthetic:easy", steps=2), run, progress=False)
    assert evaluate_main(["--model", str(run), "--data", "synthetic:easy"]) == 2
    err = capsys.readouterr().err
    assert "config.json not found" in err and f"pass --model {run / 'best'} (its best" in err
    assert f"or {run / 'model'} (its final model)" in err

    assert evaluate_main(["--model", str(tmp_path / "empty"), "--data", "synthetic:easy"]) == 2
    err = capsys.readouterr().err
    assert "empty does not exist" in err and "training run" not in err  # no models there to suggest
    (tmp_path / "empty").mkdir()
    assert evaluate_main(["--model", str(tmp_path / "empty"), "--data", "synthetic:easy"]) == 2
    err = capsys.readouterr().err
    assert "config.json not found" in err and "training run" not in err


def test_training_on_a_partly_labelled_folder_says_which_videos_evaluations_leave_out(tmp_path: Path, capsys) -> None:
    folder = video_folder(tmp_path / "videos", {"A": False, "b": True, "C": False})
    fit(tiny_on(f"videos:{folder}"), tmp_path / "run", progress=False)
    out = capsys.readouterr().out
    assert (
        f"note: 2 video(s) of videos:{folder} have no masks and are left out of the evaluations during training" in out
    )


def test_evaluate_help_explains_the_mask_source_and_background(capsys) -> None:
    with pytest.raises(SystemExit):
        evaluate_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "which masks are scored" in text and "(default: decoder)" in text
    assert "the background is no segment in mBO/mIoU" in text and "(default: ignore)" in text


def test_generate_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        datasets_main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("difficulty level (default: medium)", "frames per video (default: 24)", "default: 64)"):
        assert default in text, text
