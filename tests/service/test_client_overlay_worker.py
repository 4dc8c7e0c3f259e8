"""The ``stream`` command renders and writes its overlay off the receive loop: a slow overlay does not show up in
the ``latency_ms`` of the JSON lines, the overlay frames keep their order, and a failure to write them still stops
the run with its own error."""

from __future__ import annotations

import errno
import json
import time

import numpy as np

from service.client import __main__ as cli
from service.client import overlay
from service.client.overlay import OverlayWriter
from service.client.synthetic import synthetic_clip

SLOW_WRITE_S = 1.0


def test_a_slow_overlay_does_not_inflate_the_latency_and_keeps_the_frames_in_order(server, tmp_path, monkeypatch):
    """Each overlay frame takes 1 s to write: in the receive loop every answer after the first waited for the
    writes before it (latency_ms 1 s and more); off it, latency_ms is the server's round trip."""
    written: list[np.ndarray] = []
    write = OverlayWriter.write

    def slow_write(self: OverlayWriter, frame: np.ndarray) -> None:
        time.sleep(SLOW_WRITE_S)
        written.append(frame)
        write(self, frame)

    monkeypatch.setattr(OverlayWriter, "write", slow_write)
    monkeypatch.setattr(overlay, "render_overlay", lambda frame, segmentation, slot_ids: frame)  # the frame itself
    gif, jsonl = tmp_path / "overlay.gif", tmp_path / "results.jsonl"
    assert (
        cli.main(["stream", "synthetic:5", "--target", server.target, "--out", str(gif), "--jsonl", str(jsonl)]) == 0
    )
    latencies = [json.loads(line)["latency_ms"] for line in jsonl.read_text().splitlines()]
    assert len(latencies) == 5 and max(latencies) < SLOW_WRITE_S * 1e3 * 0.8, latencies
    assert len(written) == 5
    for frame, expected in zip(written, synthetic_clip(5), strict=True):  # in the order of the frames
        np.testing.assert_array_equal(frame, expected)


def test_an_overlay_that_cannot_be_written_stops_the_run_with_its_error(server, tmp_path, monkeypatch, capsys):
    calls = []
    write = OverlayWriter.write

    def failing_write(self: OverlayWriter, frame: np.ndarray) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, frame)

    monkeypatch.setattr(OverlayWriter, "write", failing_write)
    gif, slots = tmp_path / "overlay.gif", tmp_path / "slots.npz"
    code = cli.main(["stream", "synthetic:40", "--target", server.target, "--out", str(gif), "--slots", str(slots)])
    assert code == 2 and "error: No space left on device" in capsys.readouterr().err
    assert len(calls) == 3  # the frames after the failure are not written
    with np.load(slots) as saved:  # the slots received until the run stopped are saved all the same
        assert len(saved["frame_index"]) >= 3
