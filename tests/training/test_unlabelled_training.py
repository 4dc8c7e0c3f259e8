"""Training on unlabelled recordings (``videos:<dir>`` without masks): the run trains without evaluating, says so
and draws its samples from the first video; evaluation data asked for explicitly must have labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.configs import get_config
from training.datasets.export import write_labelled_mp4, write_mp4
from training.datasets.synthetic import generate_video
from training.loop import fit


def _recordings(tmp_path: Path) -> Path:
    folder = tmp_path / "recordings"
    folder.mkdir()
    for seed in (1, 2):
        write_mp4(folder / f"cam_{seed}.mp4", generate_video("easy", seed, 8, (32, 64)).frames)
    return folder


def _config(spec: str, val_spec: str | None = None):  # type: ignore[no-untyped-def]
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=spec, val_spec=val_spec, num_workers=0)
    return dataclasses.replace(tiny, data=data, steps=2, eval_every=1, checkpoint_every=2)


def test_unlabelled_training_videos_train_without_evaluation(tmp_path: Path, capsys) -> None:
    result = fit(_config(f"videos:{_recordings(tmp_path)}"), tmp_path / "run", progress=False)
    assert result.step == 2 and result.scores is None
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "best").exists()
    samples = sorted(path.name for path in (tmp_path / "run" / "samples").iterdir())  # pictures of the first video
    assert samples == ["step-00000001.png", "step-00000002.png"]
    assert "has masks, so this run is not evaluated: no best/ (model/ is the result)" in capsys.readouterr().out


def test_a_model_card_of_an_unlabelled_run_is_scored_on_data_given_to_it(tmp_path: Path) -> None:
    from training.model_card import main as card_main

    fit(_config(f"videos:{_recordings(tmp_path)}"), tmp_path / "run", progress=False)
    labelled = tmp_path / "labelled"
    video = generate_video("easy", 7, 6, (32, 32))
    write_labelled_mp4(labelled, "clip", video.frames, video.masks)
    assert (
        card_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "card"), "--data", f"videos:{labelled}"])
        == 0
    )
    card = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert f"| videos:{labelled} (given with --data) |" in card and f"--data videos:{labelled}`" in card
