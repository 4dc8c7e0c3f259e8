"""``training.evaluate`` and ``training.model_card``: a published card's numbers are reproducible."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from training.configs import get_config
from training.evaluate import main as evaluate_main
from training.loop import fit
from training.model_card import main as card_main


def test_model_card_numbers_are_reproduced_by_evaluate(tmp_path: Path) -> None:
    config = get_config("tiny")
    config = dataclasses.replace(config, steps=2, data=dataclasses.replace(config.data, val_videos=1, val_frames=2))
    fit(config, tmp_path / "run", progress=False)
    published = tmp_path / "published"
    assert card_main(["--run", str(tmp_path / "run"), "--out", str(published)]) == 0
    card = (published / "MODEL_CARD.md").read_text()
    assert "video FG-ARI" in card and "synthetic:easy" in card and (published / "sample.png").is_file()
    assert config.eval_every > config.steps and "the run's evaluations (one, at the end)" in card
    all_scores = json.loads((published / "scores.json").read_text())
    card_scores = all_scores["synthetic:easy (validation)"]
    (ceiling,) = (value for label, value in all_scores.items() if "the ceiling" in label)
    assert "slots: the ceiling" in card and ceiling["num_videos"] == 64
    assert "](object_recall.png)" in card and (published / "object_recall.png").is_file()
    assert card_scores["video_mbo"] <= ceiling["video_mbo"] <= 1.0

    out = tmp_path / "scores.json"
    assert evaluate_main(["--model", str(published), "--data", "synthetic:easy", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    for key in ("video_ari", "video_fg_ari", "video_mbo", "video_miou", "image_fg_ari", "num_videos"):
        assert scores[key] == card_scores[key]
    assert scores["num_videos"] == 64


def test_evaluate_reports_a_missing_model(tmp_path: Path, capsys) -> None:
    assert evaluate_main(["--model", str(tmp_path), "--data", "synthetic:easy"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_evaluate_rejects_an_empty_selection(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        evaluate_main(["--model", str(tmp_path), "--data", "synthetic:easy", "--videos", "0"])
    assert exited.value.code == 2 and "--videos must be at least 1, got 0" in capsys.readouterr().err


def test_the_model_card_calls_fg_ari_degenerate_only_for_single_object_data() -> None:
    """DAVIS 2016 has one object per sequence (FG-ARI is degenerate there); DAVIS 2017 has several."""
    import torch

    from training.card_videos import most_objects
    from training.datasets.clips import VideoClip

    def clip(*ids: int) -> VideoClip:
        masks = torch.zeros(2, 4, 4, dtype=torch.long)  # [T, H, W]
        for index, value in enumerate(ids):
            masks[index % 2, index, :] = value
        return VideoClip(frames=torch.zeros(2, 3, 4, 4), masks=masks, name="v")

    assert most_objects([clip(), clip(1)]) == 1  # type: ignore[arg-type]
    assert most_objects([clip(1), clip(3, 7, 9)]) == 3  # type: ignore[arg-type]
    assert most_objects([]) == 0  # type: ignore[arg-type]


def test_a_model_with_non_finite_weights_is_an_error_not_a_score(tmp_path: Path, capsys) -> None:
    """NaN masks would pass the argmax as finite labels and give meaningless scores."""
    import torch

    from plugins import VideoSlotModel
    from plugins.testing import TINY_MODEL

    model = VideoSlotModel(**TINY_MODEL)
    with torch.no_grad():
        next(model.decoder.parameters()).fill_(float("nan"))
    model.save_pretrained(tmp_path / "diverged")
    argv = ["--model", str(tmp_path / "diverged"), "--data", "synthetic:easy", "--videos", "1", "--frames", "2"]
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err
    assert "contain NaN or infinite values" in err and "Traceback" not in err


def test_evaluate_notes_that_fg_ari_is_degenerate_when_no_video_has_two_objects(tmp_path: Path, capsys) -> None:
    import numpy as np

    from plugins import VideoSlotModel
    from plugins.testing import TINY_MODEL
    from training.datasets.export import resolution_name, write_mask_png, write_sequence
    from training.datasets.synthetic import generate_video

    model = VideoSlotModel(**TINY_MODEL)
    model.save_pretrained(tmp_path / "model")
    video = generate_video("medium", 3, 2, model.image_size)
    assert len(video.metadata.objects) >= 2
    for folder in ("several", "single"):
        write_sequence(tmp_path / folder, "seq", video)
    first = video.metadata.objects[0].object_id
    for t, ids in enumerate(video.masks):  # keep one object: the others become background
        path = tmp_path / "single" / "Annotations" / resolution_name(video.metadata.height) / "seq" / f"{t:05d}.png"
        write_mask_png(path, np.where(ids == first, first, 0))
    note = "no video has more than one object"
    assert evaluate_main(["--model", str(tmp_path / "model"), "--data", f"davis:{tmp_path / 'several'}"]) == 0
    assert note not in capsys.readouterr().err
    assert evaluate_main(["--model", str(tmp_path / "model"), "--data", f"davis:{tmp_path / 'single'}"]) == 0
    assert note in capsys.readouterr().err
