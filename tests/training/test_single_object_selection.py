"""Choosing the best model when every evaluation video has one object (DAVIS-style labels): FG-ARI is 1 for any
model that keeps the object in one slot, also one with every pixel in one slot, so the default selection
(FG-ARI + mBO) leaves FG-ARI out there, says so at the run's start and records why in ``selection.json``; a
configuration that sets its own metrics keeps them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_best_model import scores

from plugins import VideoSlotModel
from training.best import BEST_MODEL_DIR, SELECTION_FILE, read_selection, run_selection_metrics, update_best
from training.config import DEFAULT_SELECT_METRICS
from training.configs import get_config
from training.datasets.export import write_labelled_mp4
from training.datasets.synthetic import generate_video
from training.loop import fit

SINGLE_OBJECT_NOTE = "no evaluation video has more than one object, so FG-ARI"


def _labelled_videos(tmp_path: Path, objects: int) -> str:
    """Two labelled videos whose masks hold ``objects`` objects each (ids 1..objects in vertical bands)."""
    folder = tmp_path / f"videos_{objects}"
    for seed in (1, 2):
        video = generate_video("easy", seed, 6, (32, 32))
        masks = np.zeros((6, 32, 32), np.uint8)  # [T, H, W]
        for object_id in range(1, objects + 1):
            masks[:, 8:24, object_id * 6 : object_id * 6 + 4] = object_id
        write_labelled_mp4(folder, f"clip_{seed}", video.frames, masks)
    return f"videos:{folder}"


def _config(spec: str, **changes):  # type: ignore[no-untyped-def]
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=spec, num_workers=0)
    return dataclasses.replace(tiny, data=data, **{"steps": 2, "eval_every": 1, "checkpoint_every": 2, **changes})


def test_single_object_videos_select_the_best_model_by_mbo_alone_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fit(_config(_labelled_videos(tmp_path, 1)), tmp_path / "run", progress=False)
    out = capsys.readouterr().out
    assert sum(SINGLE_OBJECT_NOTE in line for line in out.splitlines()) == 1  # said once, at the start
    record = json.loads((tmp_path / "run" / BEST_MODEL_DIR / SELECTION_FILE).read_text())
    assert record["metrics"] == ["video_mbo"] and SINGLE_OBJECT_NOTE in record["reason"]
    assert record["score"] == pytest.approx(record["scores"]["video_mbo"])
    from training.best import read_selection
    from training.card_text import _steps  # the card's line on which weights it publishes, and why

    config = _config(_labelled_videos(tmp_path / "again", 1))
    assert SINGLE_OBJECT_NOTE in _steps(config, read_selection(tmp_path / "run"), config.steps)


def test_videos_with_several_objects_keep_the_default_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fit(_config(_labelled_videos(tmp_path, 2)), tmp_path / "run", progress=False)
    assert SINGLE_OBJECT_NOTE not in capsys.readouterr().out
    selection = read_selection(tmp_path / "run")
    assert selection is not None and selection.metrics == DEFAULT_SELECT_METRICS and selection.reason is None


def test_metrics_a_configuration_sets_are_kept_with_single_object_videos(tmp_path: Path) -> None:
    config = _config(_labelled_videos(tmp_path, 1), select_metrics=["video_fg_ari", "video_miou"])
    fit(config, tmp_path / "run", progress=False)
    selection = read_selection(tmp_path / "run")
    assert selection is not None and selection.metrics == ("video_fg_ari", "video_miou")


def test_run_selection_metrics() -> None:
    metrics, reason = run_selection_metrics(list(DEFAULT_SELECT_METRICS), 1)
    assert metrics == ("video_mbo",) and reason is not None and "chosen by video_mbo" in reason
    assert run_selection_metrics(list(DEFAULT_SELECT_METRICS), 0)[0] == ("video_mbo",)  # no object at all
    assert run_selection_metrics(list(DEFAULT_SELECT_METRICS), 3) == (DEFAULT_SELECT_METRICS, None)
    assert run_selection_metrics(["video_fg_ari"], 1) == (("video_fg_ari",), None)


def test_a_best_model_chosen_by_other_metrics_is_compared_by_the_run_s_metrics(tmp_path: Path) -> None:
    """A run resumed under the single-object rule scores the best model recorded by FG-ARI + mBO by mBO."""
    torch.manual_seed(0)
    model = VideoSlotModel(**get_config("tiny").model)
    assert update_best(tmp_path, model, 2, scores(1.0, 0.3), DEFAULT_SELECT_METRICS) is not None
    assert update_best(tmp_path, model, 4, scores(0.2, 0.5), ("video_mbo",), "single object") is not None
    selection = read_selection(tmp_path)
    assert selection is not None and (selection.step, selection.reason) == (4, "single object")
    assert update_best(tmp_path, model, 6, scores(0.9, 0.4), ("video_mbo",)) is None
