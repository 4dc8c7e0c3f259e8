"""``python -m service.extract`` over sources that fail: a video without frames is reported and the next source
still extracted; a video cut short keeps the rows of the frames decoded before the damage, as a stream's
``--slots`` does, and the message names the file, the frame and the saved file."""

from __future__ import annotations

import numpy as np
from PIL import Image
from service_helpers import make_video
from test_client_video_sources import cut_video, header_only_video

from service.extract import main as extract_main


def test_failed_sources_are_reported_their_rows_kept_and_the_others_extracted(model_dir, tmp_path, capsys):
    empty = header_only_video(tmp_path / "empty.mkv")
    cut = cut_video(tmp_path / "cut.mp4")
    folder = tmp_path / "walk"
    folder.mkdir()
    for index, frame in enumerate(make_video(seed=95, frames=2)):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    out = tmp_path / "out"
    flags = ["--model", str(model_dir), "--out", str(out), "--quiet"]
    assert extract_main([str(empty), str(cut), str(folder), *flags]) == 1
    captured = capsys.readouterr()
    assert f"slotstream extract: {empty}: cannot read it as a video" in captured.err
    assert "camera:N" not in captured.err, "extract refuses cameras: its messages must not suggest one"
    assert not (out / "empty.npz").exists()
    with np.load(out / "cut.npz") as trajectory:
        rows = len(trajectory["frame_index"])
        np.testing.assert_array_equal(trajectory["frame_index"], np.arange(rows))
    assert 0 < rows < 40
    assert (
        f"slotstream extract: {cut}: frame {rows}: cannot decode it, the file is corrupt or cut short" in captured.err
    )
    assert f"; slots of the {rows} frames before it saved to {out / 'cut.npz'}" in captured.err
    assert f"{folder}: 2 frames -> {out / 'walk.npz'}" in captured.out
