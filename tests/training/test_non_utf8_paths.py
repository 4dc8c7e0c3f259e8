"""Paths whose names are not UTF-8 (a folder named in Latin-1, say): a data folder of such a name trains and its
model card quotes the command; a run folder of such a name is refused up front, since TensorBoard's event files
cannot live there (the run failed after writing an empty ``command.txt``, with a message naming no path)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from training.datasets.__main__ import main as datasets_main
from training.model_card import main as card_main
from training.run import main as run_main

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file names as bytes: Linux file systems")


def _latin1(parent: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.fsencode(str(parent)) + b"/" + name))


def test_a_data_folder_named_in_latin1_trains_and_its_card_quotes_the_command(tmp_path: Path, monkeypatch) -> None:
    """The notes that name the folder print as a terminal whose locale escapes such bytes (C.UTF-8, POSIX) prints
    them; under a locale whose output refuses them, Python itself fails to print such a path."""
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape")
    monkeypatch.setattr(sys, "stdout", console)
    data = _latin1(tmp_path, b"donn\xe9es")
    generate = ["generate", "--level", "easy", "--videos", "2", "--frames", "4", "--size", "32", "--out", str(data)]
    assert datasets_main(generate) == 0
    run = tmp_path / "run"
    train = ["--config", "tiny", "--steps", "1", "--data", f"davis:{data}", "--out", str(run), "--no-progress"]
    assert run_main(train) == 0
    assert b"donn\xe9es" in (run / "command.txt").read_bytes()
    assert card_main(["--run", str(run), "--out", str(tmp_path / "card")]) == 0
    assert b"davis:" + os.fsencode(str(data)) in (tmp_path / "card" / "MODEL_CARD.md").read_bytes()
    console.flush()
    assert b"Trained with" in console.buffer.getvalue(), "the card is printed"


def test_a_run_folder_named_in_latin1_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    run = _latin1(tmp_path, b"run\xe9")
    assert run_main(["--config", "tiny", "--steps", "1", "--out", str(run), "--no-progress"]) == 2
    assert "the run folder's path is not valid UTF-8" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
