"""Ctrl-C stops a training run with data workers at once: the terminal sends SIGINT to the whole process group,
workers included, and the run must neither hang on its workers nor lose its message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKERS = 3


def _default_sigint() -> None:
    """Give the run Ctrl-C's default action (a background job, as under `make test &`, inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _trained_steps(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    lines = metrics.read_text().split("\n")[:-1]  # the text after the last newline may be a row being written
    rows = [json.loads(line) for line in lines if line.strip()]
    return max((row["step"] for row in rows if row["kind"] == "train"), default=0)


def test_ctrl_c_to_the_process_group_stops_a_run_with_workers_promptly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.run", "--config", "tiny", "--steps", "100000"]
    command += ["--workers", str(WORKERS)]
    command += ["--eval-every", "0", "--val-videos", "0", "--no-progress", "--out", str(out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    with subprocess.Popen(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=_default_sigint,
        start_new_session=True,  # its own process group, so the signal reaches the workers as a terminal's would
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while _trained_steps(out / "metrics.jsonl") < 20:  # workers running and batches queued
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "no training steps within 120 s"
                time.sleep(0.2)
            os.killpg(process.pid, signal.SIGINT)
            interrupted = time.monotonic()
            _, stderr = process.communicate(timeout=120)
            took = time.monotonic() - interrupted
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    # A worker that took the interrupt itself could not exit, and the DataLoader waited 5 s for each (15 s here).
    assert took < 10, f"the run took {took:.1f} s to stop after Ctrl-C"
