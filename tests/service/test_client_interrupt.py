"""Stopping the command-line client mid-stream (Ctrl-C or SIGTERM, as a process supervisor stops it) keeps what
it has: the overlay, the JSON lines and the slots of the frames answered so far are written, and it exits with
status 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from child_processes import popen_with_ctrl_c
from PIL import Image
from service_helpers import wait_for_child

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_run_keeps_its_slots(start_server, tmp_path: Path, stop: signal.Signals) -> None:
    server = start_server()
    jsonl, slots, overlay = tmp_path / "results.jsonl", tmp_path / "slots.npz", tmp_path / "overlay.gif"
    command = [sys.executable, "-m", "service.client", "stream", "synthetic:1000", "--fps", "20"]
    command += ["--target", server.target, "--jsonl", str(jsonl), "--slots", str(slots), "--out", str(overlay)]
    environment = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack
    with popen_with_ctrl_c(command, cwd=REPO, stderr=subprocess.PIPE, text=True, env=environment) as process:
        try:
            wait_for_child(process, lambda: jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 3, "no results")
            process.send_signal(stop)
            try:
                _, stderr = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # show where it hangs
                process.send_signal(signal.SIGABRT)
                _, stacks = process.communicate(timeout=30)
                pytest.fail(f"still running 60 s after {stop.name}:\n{stacks[-8000:]}")
        finally:
            process.kill()  # a no-op once it has exited
    assert process.returncode == 128 + stop, stderr  # 130 after Ctrl-C, 143 after SIGTERM, as shells report them
    assert "interrupted; slots of" in stderr and "Traceback" not in stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    with np.load(slots) as saved:
        assert 3 <= len(saved["frame_index"]) < 1000
        assert saved["frame_index"].tolist() == [line["frame_index"] for line in lines]
    with Image.open(overlay) as gif:  # finished, with a frame for every answer
        assert gif.n_frames == len(lines)
