"""A training run stopped before its first evaluation holds only ``checkpoints/step-<N>/``: the tools given its
folder where a model is expected name its newest checkpoint (a model directory) and ``--resume``, and none of them
loads the checkpoint by itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from plugins import VideoSlotModel
from plugins.model_files import RUN_CHECKPOINTS_DIR, run_folder_hint, run_folder_models
from service.config import ConfigError, ServiceConfig
from training.checkpoint import CHECKPOINT_DIR
from training.configs import get_config
from training.loop import fit
from training.model_card import main as model_card_main

COMMAND = "python -m training.run --config tiny --steps 3 --val-videos 0"


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 3 steps stopped after 2, a checkpoint after each, never evaluated."""
    run = tmp_path_factory.mktemp("interrupted") / "run"
    tiny = get_config("tiny")
    config = dataclasses.replace(tiny, steps=3, checkpoint_every=1, data=dataclasses.replace(tiny.data, val_videos=0))
    fit(config, run, stop_after=2, progress=False, command=COMMAND)
    assert not (run / "model").exists() and not (run / "best").exists()
    return run


def newest(run: Path) -> Path:
    return run / CHECKPOINT_DIR / "step-00000002"


def test_the_run_folder_names_its_newest_checkpoint_and_resume(interrupted: Path) -> None:
    assert RUN_CHECKPOINTS_DIR == CHECKPOINT_DIR
    assert run_folder_models(interrupted) == [newest(interrupted)]
    hint = run_folder_hint(interrupted, "--model-dir")
    assert "looks like a training run that has not finished (no best/ or model/ yet)" in hint
    assert "--resume" in hint and f"--model-dir {newest(interrupted)} (its newest checkpoint" in hint
    VideoSlotModel.from_pretrained(newest(interrupted))  # what the hint suggests is a model directory


def test_loading_the_run_folder_suggests_the_checkpoint_without_loading_it(interrupted: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json not found") as refused:
        VideoSlotModel.from_pretrained(interrupted)
    assert f"--model {newest(interrupted)}" in str(refused.value)
    with pytest.raises(ConfigError) as served:
        ServiceConfig(model_dir=interrupted).check_files()
    assert f"--model-dir {newest(interrupted)}" in str(served.value) and "--resume" in str(served.value)


def test_the_model_card_says_how_to_finish_the_run(interrupted: Path, tmp_path: Path, capsys) -> None:
    assert model_card_main(["--run", str(interrupted), "--out", str(tmp_path / "card")]) == 2
    err = capsys.readouterr().err
    assert "holds no model: the run has neither finished nor evaluated; it stopped at its checkpoint of step 2" in err
    assert f"finish it with `{COMMAND} --resume`" in err and str(newest(interrupted)) in err
    assert not (tmp_path / "card").exists()
