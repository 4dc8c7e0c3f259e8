"""Ctrl-C in the downstream commands: one line, ``<command>: interrupted``, and status 130, as the training
commands end; a traceback and death by SIGINT before."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from child_processes import popen_with_ctrl_c

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "service" / "models" / "default"


def _trajectories(folder: Path) -> Path:
    folder.mkdir()
    for video in range(4):
        slots = np.random.default_rng(video).normal(size=(20, 3, 8)).astype(np.float32)  # [T, K, D]
        np.savez(folder / f"v{video}.npz", slots=slots, frame_index=np.arange(20))
    return folder


def _arguments(command: str, tmp_path: Path) -> list[str]:
    if command == "dynamics":
        return ["train", str(_trajectories(tmp_path / "trajectories")), "--steps", "10000000", "--history", "3",
                "--rollout", "3", "--out", str(tmp_path / "head")]  # fmt: skip
    return ["--model", str(DEFAULT_MODEL), "--train-videos", "100000", "--out", str(tmp_path / "head")]


@pytest.mark.parametrize(("command", "working"), [("dynamics", "dynamics:"), ("probes", "match"), ("vqa", "slots")])
def test_ctrl_c_ends_a_downstream_command_with_one_line(command: str, working: str, tmp_path: Path) -> None:
    program = f"downstream.{command}"
    printed: list[str] = []
    with popen_with_ctrl_c(
        [sys.executable, "-m", program, *_arguments(command, tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:  # its pipe closed and the child waited for, however the test ends
        assert child.stderr is not None
        stderr = child.stderr
        reader = threading.Thread(target=lambda: printed.extend(iter(lambda: stderr.read(1), "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while working not in "".join(printed):  # its progress bar: the command is at work, past its imports
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                pytest.fail(f"no progress bar within 120 s, or the command ended: {''.join(printed)!r}")
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        status = child.wait(60)
        reader.join(10)
    err = "".join(printed)
    assert status == 130, err
    assert err.rstrip().endswith(f"python -m {program}: interrupted") and "Traceback" not in err, err
