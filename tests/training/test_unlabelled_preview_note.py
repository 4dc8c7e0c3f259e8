"""The note a run on unlabelled ``videos:`` prints says what ``--val-videos 0`` turns off: the note, and samples/
with it (such a run has no evaluation data, so nothing to draw its samples from)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.configs import get_config
from training.datasets.export import write_mp4
from training.datasets.synthetic import generate_video
from training.loop import fit
from training.run_data import validation_data


def _recordings(tmp_path: Path) -> Path:
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_mp4(folder / "cam_1.mp4", generate_video("easy", 1, 8, (32, 32)).frames)
    return folder


def test_the_note_on_unlabelled_videos_says_that_val_videos_0_also_drops_the_samples(tmp_path: Path, capsys) -> None:
    tiny = get_config("tiny")
    data = dataclasses.replace(tiny.data, spec=f"videos:{_recordings(tmp_path)}", num_workers=0)
    config = dataclasses.replace(tiny, data=data, steps=1, eval_every=1)
    validation_data(config)
    note = capsys.readouterr().out
    assert "samples/ show its first video" in note
    assert "--val-videos 0 to silence this note (and draw no samples/ either)" in note, note

    silenced = dataclasses.replace(config, data=dataclasses.replace(data, val_videos=0))
    fit(silenced, tmp_path / "run", progress=False)  # what the note says the flag does
    assert "silence this note" not in capsys.readouterr().out
    assert not (tmp_path / "run" / "samples").exists()
