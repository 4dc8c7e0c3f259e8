"""``python -m service.client synth``: a frame size beyond the server's default pixel limit, or beyond what the
codec encodes, is refused before any frame is drawn (a frame's drawing takes about 100 bytes a pixel: 9000 x 9000
ended in a ``MemoryError`` traceback)."""

from __future__ import annotations

import pytest

import service.client.__main__ as client_cli
from service.client.overlay import MAX_SIDE, OverlayWriter


def _no_frames(*args, **kwargs):
    pytest.fail("frames were drawn for a refused size")


def test_a_size_beyond_the_servers_default_pixel_limit_is_refused_before_drawing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(client_cli, "synthetic_frames", _no_frames)
    out = tmp_path / "s.mp4"
    assert client_cli.main(["synth", str(out), "--size", "9000"]) == 2
    err = capsys.readouterr().err
    assert "error: --size must be at most 4096 pixels a side" in err and "got 9000" in err
    assert not out.exists()


def test_a_size_the_codec_cannot_encode_is_refused_before_drawing(tmp_path, capsys, monkeypatch):
    """A GIF encoder of 64 pixels a side stands for a codec whose limit is below the size asked for."""
    monkeypatch.setitem(MAX_SIDE, "gif", 64)
    monkeypatch.setattr(client_cli, "synthetic_frames", _no_frames)
    out = tmp_path / "s.gif"
    assert client_cli.main(["synth", str(out), "--size", "100"]) == 2
    assert "frames of 100x100 pixels are too large for the clip (gif encodes at most 64" in capsys.readouterr().err
    assert not out.exists()


def test_the_largest_size_fits_every_codec_the_writer_uses(tmp_path):
    for name in ("clip.mp4", "clip.gif"):
        OverlayWriter(tmp_path / name, fps=15.0).check_size(4096, 4095)  # an odd side is padded for MP4: still within
    assert not list(tmp_path.iterdir())
