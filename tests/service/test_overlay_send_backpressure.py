"""A lagging overlay holds the ``stream`` command's sending back, not its receive loop: the answers are read and
timestamped as they come (``latency_ms`` stays the round trip, however far the overlay is behind), while the frames
sent stay within :data:`OVERLAY_QUEUE` plus the window of the frames written; and a write that fails while the
sender waits for room wakes it with the error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.client import __main__ as cli
from service.client.overlay import OVERLAY_QUEUE, OverlayWorker, OverlayWriter
from service.client.stream import ClientStream

GATE_S = 2.0
"""The latency bound's scale: a receive loop that waited for the overlay would show latencies of about
:data:`STALL_S` and more."""
STALL_S = 1.5
"""The overlay writes nothing until the sending has stalled this long (it waits for room), so the test does not
depend on how fast a loaded machine sends the first frames."""
FRAMES = 40
WINDOW = 4


def test_a_lagging_overlay_slows_the_sending_but_not_the_latency(server, tmp_path: Path, monkeypatch) -> None:
    """The overlay writes nothing until the sending has stalled for 1.5 s: had the receive loop waited for it once 16
    frames queued, the answers arriving meanwhile would have waited in gRPC and shown a latency_ms of 1.5 s and
    more."""
    gate, first = threading.Event(), threading.Event()
    written: list[int] = []  # one entry per frame written, appended once the write returned
    write = OverlayWriter.write
    sends: list[int] = []  # the frames written when each frame was sent

    def open_when_sending_stalls() -> None:
        seen, since = -1, time.monotonic()
        while not gate.is_set() and time.monotonic() - since < STALL_S:
            if len(sends) != seen:
                seen, since = len(sends), time.monotonic()
            time.sleep(0.02)
        gate.set()

    def gated_write(self: OverlayWriter, frame: np.ndarray) -> None:
        if not first.is_set():
            first.set()
            threading.Thread(target=open_when_sending_stalls, daemon=True).start()
        gate.wait()
        write(self, frame)
        written.append(1)

    send = ClientStream.send

    async def counted_send(self: ClientStream, *args: Any, **kwargs: Any) -> None:
        sends.append(len(written))
        await send(self, *args, **kwargs)

    monkeypatch.setattr(OverlayWriter, "write", gated_write)
    monkeypatch.setattr(ClientStream, "send", counted_send)
    gif, jsonl = tmp_path / "overlay.gif", tmp_path / "results.jsonl"
    command = ["stream", f"synthetic:{FRAMES}", "--target", server.target, "--window", str(WINDOW)]
    assert cli.main([*command, "--out", str(gif), "--jsonl", str(jsonl)]) == 0
    gate.set()

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(FRAMES))
    latencies = [line["latency_ms"] for line in lines]
    assert max(latencies) < GATE_S * 1e3 / 2, latencies
    for sent, written_then in enumerate(sends, start=1):  # the stream still waited for the overlay
        assert sent <= written_then + OVERLAY_QUEUE + WINDOW, sends
    sent_while_lagging = sends.count(0)
    assert OVERLAY_QUEUE < sent_while_lagging <= OVERLAY_QUEUE + WINDOW, sends
    with Image.open(gif) as overlay:
        assert overlay.n_frames == FRAMES


class _GatedWriter(OverlayWriter):
    """An overlay writer whose writes wait for ``gate`` first."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        super().__init__(path, fps=10.0)
        self.gate = gate

    def write(self, frame: np.ndarray) -> None:
        self.gate.wait()
        super().write(frame)


def _queue_full(worker: OverlayWorker) -> None:
    frame, segmentation = np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((8, 8), dtype=np.uint8)
    for _ in range(OVERLAY_QUEUE):
        worker.put(frame, segmentation, (0,))  # never waits


def test_room_comes_once_the_overlay_catches_up(tmp_path: Path) -> None:
    gate = threading.Event()

    async def scenario() -> None:
        worker = OverlayWorker(_GatedWriter(tmp_path / "overlay.gif", gate))
        _queue_full(worker)
        waiting = asyncio.ensure_future(worker.wait_for_room())
        await asyncio.sleep(0.2)
        assert not waiting.done(), "16 frames wait: no room"
        gate.set()
        await asyncio.wait_for(waiting, 30)
        await worker.close()

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
    with Image.open(tmp_path / "overlay.gif") as overlay:
        assert overlay.n_frames == OVERLAY_QUEUE


def test_a_failed_write_wakes_a_sender_waiting_for_room(tmp_path: Path) -> None:
    """The first write fails (its folder does not exist) while the sender waits: it gets the error, not a hang."""
    gate = threading.Event()
    path = tmp_path / "missing" / "overlay.gif"

    async def scenario() -> None:
        worker = OverlayWorker(_GatedWriter(path, gate))
        _queue_full(worker)
        waiting = asyncio.ensure_future(worker.wait_for_room())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        gate.set()
        with pytest.raises(OSError) as raised:
            await asyncio.wait_for(waiting, 30)
        assert str(path) in str(raised.value)
        with pytest.raises(OSError):
            worker.put(np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((8, 8), dtype=np.uint8), (0,))
        with pytest.raises(OSError):
            await worker.close()

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
