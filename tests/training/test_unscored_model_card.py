"""A model trained on unlabelled recordings is published with a card that says it is not scored and why, with no
table of scores, a sample picture of the run's first video and everything else the card records; the published
folder loads in the service and exports. Data given with ``--data`` is still refused when it has no labels
either."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from plugins import VideoSlotModel
from service.backends.torch_backend import load_engine
from training.card_videos import first_video
from training.config import TrainConfig
from training.configs import get_config
from training.datasets.export import write_mp4, write_sequence
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.model_card import main as card_main
from training.visualize import save_overlay


def _recordings(folder: Path) -> Path:
    """A ``videos:`` folder of two unlabelled recordings of 10 frames (the first, ``cam_1``, is shown)."""
    folder.mkdir()
    for seed in (1, 2):
        write_mp4(folder / f"cam_{seed}.mp4", generate_video("easy", seed, 10, (32, 48)).frames)
    return folder


def _config(spec: str) -> TrainConfig:
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=spec, num_workers=0)
    return dataclasses.replace(tiny, data=data, steps=2, eval_every=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on unlabelled recordings (no evaluation, so no best/: model/ is published)."""
    root = tmp_path_factory.mktemp("unlabelled")
    fit(_config(f"videos:{_recordings(root / 'recordings')}"), root / "run", progress=False, command="train it")
    return root / "run"


def test_an_unlabelled_run_is_published_unscored_and_says_why(unlabelled_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "published"
    spec = f"videos:{unlabelled_run.parent / 'recordings'}"
    assert card_main(["--run", str(unlabelled_run), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: no video of {spec} (the run's data) has masks: the model is published without scores" in err
    assert "pass --data SPEC with labelled videos" in err
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Not scored" in card and f"The run's data (`{spec}`) has no labels (no video has masks)" in card
    assert "`--data SPEC` naming labelled videos" in card
    # No table of scores, no ceiling, nothing to reproduce: nothing that reads as a result.
    assert "## Object discovery" not in card and "video FG-ARI" not in card and "ceiling" not in card
    assert "Reproduce" not in card and "| --- | --- | --- |" not in card
    # Everything else the card records is there.
    assert "Trained with `train it` on" in card and "1 process of" in card
    assert f"| data | `{spec}`, clips of 3 frames, batch 2" in card
    assert "| steps | 2; the final model |" in card and "| wall time |" in card and "| parameters |" in card
    assert "![frames, reconstruction, slot masks, overlay](sample.png)" in card
    scores = json.loads((out / "scores.json").read_text())
    assert scores["not_scored"] == {"data": spec, "reason": "no video has masks"}
    assert set(scores) == {"not_scored", "wall_time_s", "selected_step", "environment"}
    assert scores["selected_step"] is None and scores["environment"][0]["processes"] == 1


def test_the_unscored_sample_shows_the_runs_first_video(unlabelled_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "published"
    assert card_main(["--run", str(unlabelled_run), "--out", str(out)]) == 0
    model = VideoSlotModel.from_pretrained(out)
    shown = first_video(f"videos:{unlabelled_run.parent / 'recordings'}", model.image_size, center_crop=True)
    assert shown.name == "cam_1" and shown.frames.shape[0] == 8  # its first 8 frames, as the run's samples
    with torch.inference_mode():
        frames = shown.frames.unsqueeze(0)
        output = model(frames)
    save_overlay(frames, output, tmp_path / "expected.png", target_kind=model.decoder.target_kind)
    assert (out / "sample.png").read_bytes() == (tmp_path / "expected.png").read_bytes()


def test_an_unscored_model_loads_in_the_service_and_exports(unlabelled_run: Path, tmp_path: Path) -> None:
    from training.export.exporter import ExportOptions, export_model

    out = tmp_path / "published"
    assert card_main(["--run", str(unlabelled_run), "--out", str(out)]) == 0
    engine = load_engine(out, name="recordings", device="cpu", max_batch_size=1)
    assert engine.card.image_size == (32, 32) and engine.card.frame_fit == "crop"
    exported = tmp_path / "exported"
    export_model(out, exported, ExportOptions(parity_frames=1, batch_sizes=()))
    assert (exported / "manifest.json").is_file()
    assert (exported / "MODEL_CARD.md").read_text() == (out / "MODEL_CARD.md").read_text()


def test_unlabelled_data_given_with_data_is_refused(unlabelled_run: Path, tmp_path: Path, capsys) -> None:
    others = _recordings(tmp_path / "others")
    out = tmp_path / "published"
    assert card_main(["--run", str(unlabelled_run), "--out", str(out), "--data", f"videos:{others}"]) == 2
    assert f"videos:{others}: no video has masks to evaluate on" in capsys.readouterr().err
    assert not out.exists()


def test_an_unlabelled_run_published_with_davis_is_scored_on_davis_only(unlabelled_run: Path, tmp_path: Path) -> None:
    davis = tmp_path / "davis"
    write_sequence(davis, "seq", generate_video("medium", 3, 4, (32, 32)))
    out = tmp_path / "published"
    assert card_main(["--run", str(unlabelled_run), "--out", str(out), "--davis", str(davis)]) == 0
    card = (out / "MODEL_CARD.md").read_text()
    spec = f"videos:{unlabelled_run.parent / 'recordings'}"
    assert "## Object discovery" in card and "| DAVIS davis (1 sequences) |" in card
    assert (
        f"The run's data (`{spec}`) has no labels (no video has masks), so the model is scored on DAVIS only" in card
    )
    assert "ceiling" not in card and "(validation)" not in card
    assert f"--data davis:{davis}`" in card
    scores = json.loads((out / "scores.json").read_text())
    assert "DAVIS davis (1 sequences)" in scores and scores["not_scored"]["data"] == spec
