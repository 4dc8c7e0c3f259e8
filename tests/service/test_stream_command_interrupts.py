"""``python -m service.client stream`` stopped at awkward moments keeps what it promises: a source stalled in a read
does not hold up Ctrl-C or SIGTERM, a second Ctrl-C while the slots are saved does not lose them, and a Ctrl-C
while the overlay lags behind leaves the overlay, the JSON lines and the slots holding the same frames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from child_processes import popen_with_ctrl_c
from PIL import Image
from service_helpers import wait_for_child

from service.client.overlay import OVERLAY_QUEUE

REPO = Path(__file__).resolve().parents[2]

SECOND_SIGINT_WHILE_SAVING = """
import signal, sys
from service.client import trajectory_writer as trajectory
from service.client.__main__ import main

save = trajectory.SlotTrajectory.save

def save_during_a_second_sigint(self):
    trajectory.SlotTrajectory.save = save
    signal.raise_signal(signal.SIGINT)  # lands as a second Ctrl-C would, just as the save starts
    save(self)

trajectory.SlotTrajectory.save = save_during_a_second_sigint
sys.exit(main(sys.argv[1:]))
"""
"""``python -c`` this with the command line's arguments: the client, with a second SIGINT raised at the start of
the (real) slots save, as ``timeout -s INT`` sends one to the process and then one to its group."""

SIGINT_WHILE_THE_OVERLAY_LAGS = """
import signal, sys, threading
from service.client.__main__ import main
from service.client.overlay import OVERLAY_QUEUE, OverlayWorker, OverlayWriter

finishing = threading.Event()
write, wait_for_room, close = OverlayWriter.write, OverlayWorker.wait_for_room, OverlayWorker.close

def write_once_finishing(self, frame):
    finishing.wait()  # the overlay lags behind the stream until the run stops
    write(self, frame)

async def wait_for_room_after_sigint_when_full(self):
    if self._waiting >= OVERLAY_QUEUE:  # the sending loop is about to wait for the overlay: Ctrl-C now
        signal.raise_signal(signal.SIGINT)
    await wait_for_room(self)

async def close_finishing(self):
    finishing.set()
    await close(self)

OverlayWriter.write = write_once_finishing
OverlayWorker.wait_for_room = wait_for_room_after_sigint_when_full
OverlayWorker.close = close_finishing
sys.exit(main(sys.argv[1:]))
"""
"""``python -c`` this with the command line's arguments: the client, with an overlay that writes nothing until the
run stops, so that its queue fills, and a SIGINT raised as the sending loop starts waiting for room in it (the
receive loop goes on recording the answers to the frames in flight meanwhile)."""


def _start(command: list[str]) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONFAULTHANDLER": "1", "OMP_NUM_THREADS": "1"}
    return popen_with_ctrl_c(command, cwd=REPO, stderr=subprocess.PIPE, text=True, env=environment)


def _lines(jsonl: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.is_file() else []


def _stop(process: subprocess.Popen[str], stop: signal.Signals, within_s: float) -> str:
    """Send ``stop`` and return the client's stderr once it exits; fail with its threads' stacks if it does not
    within ``within_s``."""
    process.send_signal(stop)
    try:
        _, stderr = process.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, stacks = process.communicate(timeout=30)
        pytest.fail(f"still running {within_s:g} s after {stop.name}:\n{stacks[-6000:]}")
    return stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_source_stalled_in_a_read_does_not_hold_up_a_stop(server, tmp_path: Path, stop: signal.Signals) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        Image.new("RGB", (32, 24), (40 * index, 90, 160)).save(frames / f"{index:05d}.jpg")
    os.mkfifo(frames / "00003.jpg")  # the next frame never comes: opening it waits for a writer
    jsonl, slots, overlay = tmp_path / "results.jsonl", tmp_path / "slots.npz", tmp_path / "overlay.gif"
    command = [sys.executable, "-m", "service.client", "stream", str(frames), "--target", server.target]
    command += ["--jsonl", str(jsonl), "--slots", str(slots), "--out", str(overlay)]
    with _start(command) as process:
        try:
            wait_for_child(process, lambda: len(_lines(jsonl)) == 3, "the three frames answered")
            time.sleep(0.3)  # the reader is in the FIFO's open by now
            started = time.monotonic()
            stderr = _stop(process, stop, within_s=15)
            took_s = time.monotonic() - started
        finally:
            process.kill()
    assert process.returncode == 128 + stop, stderr  # 130 after Ctrl-C, 143 after SIGTERM
    assert took_s < 10, f"exited {took_s:.1f} s after {stop.name}"
    assert f"interrupted; slots of 3 frames saved to {slots}" in stderr and "Traceback" not in stderr
    with np.load(slots) as saved:
        assert saved["frame_index"].tolist() == [0, 1, 2]
    with Image.open(overlay) as gif:
        assert gif.n_frames == 3


def test_a_second_sigint_while_the_slots_are_saved_does_not_lose_them(server, tmp_path: Path) -> None:
    jsonl, slots, overlay = tmp_path / "results.jsonl", tmp_path / "slots.npz", tmp_path / "overlay.gif"
    command = [sys.executable, "-c", SECOND_SIGINT_WHILE_SAVING, "stream", "synthetic:1000", "--fps", "20"]
    command += ["--target", server.target, "--jsonl", str(jsonl), "--slots", str(slots), "--out", str(overlay)]
    with _start(command) as process:
        try:
            wait_for_child(process, lambda: len(_lines(jsonl)) >= 3, "three frames answered")
            stderr = _stop(process, signal.SIGINT, within_s=60)
        finally:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted; slots of" in stderr and "Traceback" not in stderr, stderr
    with np.load(slots) as saved:
        assert saved["frame_index"].tolist() == [line["frame_index"] for line in _lines(jsonl)]
    with Image.open(overlay) as gif:  # the overlay is finished too
        assert gif.n_frames == len(_lines(jsonl))


def test_a_stop_while_the_overlay_lags_keeps_the_three_outputs_in_step(server, tmp_path: Path) -> None:
    jsonl, slots, overlay = tmp_path / "results.jsonl", tmp_path / "slots.npz", tmp_path / "overlay.gif"
    command = [sys.executable, "-c", SIGINT_WHILE_THE_OVERLAY_LAGS, "stream", "synthetic:1000"]
    command += ["--target", server.target, "--jsonl", str(jsonl), "--slots", str(slots), "--out", str(overlay)]
    with _start(command) as process:
        try:
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted; slots of" in stderr and "Traceback" not in stderr, stderr
    answered = [line["frame_index"] for line in _lines(jsonl)]
    assert len(answered) >= OVERLAY_QUEUE, "the overlay's queue was full when Ctrl-C came"
    with np.load(slots) as saved:
        assert saved["frame_index"].tolist() == answered
    with Image.open(overlay) as gif:
        assert gif.n_frames == len(answered)
