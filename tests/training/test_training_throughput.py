"""``clips_per_s`` in ``metrics.jsonl`` is the training throughput since the previous training line: the time
of evaluations and checkpoints in between is left out, so the line after an evaluation is not slowed by it."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

import training.loop
import training.run_folder
from training.configs import get_config
from training.loop import fit

PAUSE_S = 1.5


def test_the_throughput_leaves_out_evaluations_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluate, save_checkpoint = training.loop.evaluate, training.run_folder.save_checkpoint

    def slow_evaluate(*args: Any, **kwargs: Any) -> Any:
        time.sleep(PAUSE_S)
        return evaluate(*args, **kwargs)

    def slow_checkpoint(*args: Any, **kwargs: Any) -> Any:
        time.sleep(PAUSE_S)
        return save_checkpoint(*args, **kwargs)

    monkeypatch.setattr(training.loop, "evaluate", slow_evaluate)
    monkeypatch.setattr(training.run_folder, "save_checkpoint", slow_checkpoint)
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    config = dataclasses.replace(config, steps=3, data=data, log_every=1, eval_every=2, checkpoint_every=2)
    fit(config, tmp_path, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = [line["clips_per_s"] for line in lines if line["kind"] == "train"]
    assert len(rates) == 3
    # Step 3 follows an evaluation and a checkpoint: counting their 2 x PAUSE_S would make it last over 2 x PAUSE_S,
    # under batch / (2 x PAUSE_S) clips/s; a step of the tiny model alone takes a small fraction of that, even on a
    # loaded machine. (Step 1's rate counts the first batch's loading too: it is not compared.)
    assert rates[2] > config.data.batch_size / (2 * PAUSE_S), rates
