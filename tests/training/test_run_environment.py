"""``environment.json``: a run records where it trains (a resume appends its part), and its model card reports
that record, not the machine writing the card, with the batch of all processes and short wall times in seconds."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from training.configs import get_config
from training.datasets.export import write_labelled_mp4
from training.datasets.synthetic import generate_video
from training.environment import ENVIRONMENT_FILE
from training.loop import fit
from training.model_card import main as card_main


def tiny(steps: int = 4):  # type: ignore[no-untyped-def]
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)  # no evaluation: the card publishes model/
    return dataclasses.replace(config, steps=steps, data=data, checkpoint_every=2, log_every=1)


def labelled_folder(tmp_path: Path) -> Path:
    """One short labelled video, for a card that scores quickly (``--data videos:DIR``)."""
    folder = tmp_path / "labelled"
    if folder.is_dir():
        return folder
    video = generate_video("easy", 3, 4, (32, 32))
    write_labelled_mp4(folder, "clip", video.frames, video.masks)
    return folder


def card(tmp_path: Path, run: Path) -> str:
    out = tmp_path / "card"
    args = [
        "--run",
        str(run),
        "--out",
        str(out),
        "--checkpoint",
        "final",
        "--data",
        f"videos:{labelled_folder(tmp_path)}",
    ]
    assert card_main(args) == 0
    return (out / "MODEL_CARD.md").read_text()


def segment(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "from_step": 0,
        "device": "cpu",
        "gpu": None,
        "processes": 2,
        "threads_per_process": 3,
        "torch": "9.9.9",
        "python": "3.99",
        "machine": "aarch64",
        "cpu": "Test CPU 5000",
        "platform": "TestOS",
    }
    return {**base, **changes}


def test_a_run_records_where_it_trains_and_a_resume_appends_its_part(tmp_path: Path) -> None:
    fit(tiny(), tmp_path, progress=False, stop_after=2)
    (first,) = json.loads((tmp_path / ENVIRONMENT_FILE).read_text())["segments"]
    assert first["from_step"] == 0 and first["device"] == "cpu" and first["gpu"] is None
    assert first["processes"] == 1 and first["threads_per_process"] == torch.get_num_threads()
    assert first["torch"] == torch.__version__ and first["machine"]
    fit(tiny(), tmp_path, progress=False, resume=True)
    segments = json.loads((tmp_path / ENVIRONMENT_FILE).read_text())["segments"]
    assert [s["from_step"] for s in segments] == [0, 2]


def test_the_card_reports_the_runs_environment_and_batch_not_the_card_writers(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(tiny(), run, progress=False)
    (run / ENVIRONMENT_FILE).write_text(json.dumps({"segments": [segment()]}))  # as written on another machine
    text = card(tmp_path, run)
    assert "on aarch64 CPU (Test CPU 5000), 2 processes of 3 threads, torch 9.9.9." in text, text[:400]
    assert "clips of 3 frames, batch 4 (2 per process x 2 processes) |" in text
    assert re.search(r"\| wall time \| \d+(\.\d)? s of training to the published weights \|", text), text[:900]
    scores = json.loads((tmp_path / "card" / "scores.json").read_text())
    assert scores["environment"][0]["cpu"] == "Test CPU 5000"


def test_a_run_continued_elsewhere_lists_each_part_and_an_unrecorded_one_is_not_guessed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(tiny(), run, progress=False)
    parts = [segment(from_step=2), segment(from_step=3, device="cuda", gpu="Test GPU", threads_per_process=1)]
    (run / ENVIRONMENT_FILE).write_text(json.dumps({"segments": parts}))
    text = card(tmp_path, run)
    assert (
        "steps 0-2: not recorded; steps 2-3: aarch64 CPU (Test CPU 5000), 2 processes of 3 threads, torch 9.9.9; "
        "steps 3-4: Test GPU (CUDA, one per process), 2 processes of 1 thread, torch 9.9.9." in text
    ), text[:600]

    (run / ENVIRONMENT_FILE).unlink()  # a run from before environment.json
    text = card(tmp_path, run)
    assert "on a machine that was not recorded (the run predates environment.json)." in text
    assert "batch 2 per process (the number of processes was not recorded) |" in text
    assert "x86_64 CPU" not in text and torch.__version__ not in text.split("\n\n")[1]
