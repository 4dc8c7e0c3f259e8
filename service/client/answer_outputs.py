"""Where the ``stream`` command's answers go: :func:`record_answer` records one answer in the run's summary and in each
output (the overlay, the ``--jsonl`` lines, the slot trajectory: a result's row, or why a frame has none), and
:class:`JsonLines` is the ``--jsonl`` sink."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from service.client.overlay import OverlayWorker
from service.client.segmentation_geometry import slot_areas, slot_geometry
from service.client.trajectory import frame_dropped, frame_refused
from service.client.trajectory_writer import SlotTrajectory
from service.types import FrameDropped, FrameError, FrameResponse, FrameResult


def record_answer(
    answer: FrameResponse,
    frame: np.ndarray,
    latency_ms: float,
    summary: dict[str, Any],
    overlay: OverlayWorker | None,
    out: TextIO | None,
    trajectory: SlotTrajectory | None = None,
) -> None:
    """Record one answer in ``summary`` and in each output: the overlay, the JSON lines (``out``) and the
    trajectory (a result's row; a drop or a refusal as a missing frame with its reason), in all of them or in none.
    Nothing here waits (queueing the overlay frame never does: the sending loop waits for the overlay's room
    instead), so a cancellation (Ctrl-C while the overlay lags behind) comes before or after an answer's recording,
    never within it; and the overlay frame is queued before anything is recorded, so an earlier overlay frame's
    failure leaves this answer out of every output.

    Raises:
        Exception: what rendering or writing an earlier overlay frame raised.
        OSError: the JSON line could not be written (naming the file).
    """
    line: dict[str, Any] = {
        "frame_index": answer.frame_index,
        "capture_time_ns": answer.capture_time_ns,
        "model_version": answer.model_version,  # "" on a drop or error from a server older than the field
        "latency_ms": round(latency_ms, 3),
    }
    if isinstance(answer, FrameResult) and answer.segmentation is not None:
        # the geometry's pixel counts give the areas too: one pass over the masks
        size = (frame.shape[0], frame.shape[1])
        geometry = slot_geometry(answer.segmentation, len(answer.slot_ids), size) if trajectory is not None else None
        areas = geometry.areas if geometry is not None else slot_areas(answer.segmentation, len(answer.slot_ids))
        line |= {
            "outcome": "result",
            "slot_ids": list(answer.slot_ids),
            "areas": [round(float(area), 5) for area in areas],  # [K]
            "server_latency_ms": {k: round(v, 3) for k, v in asdict(answer.latency).items() if k != "batch_size"},
            "batch_size": answer.latency.batch_size,
        }
        if overlay is not None:  # raises an earlier frame's failure: before anything is recorded
            overlay.put(frame, answer.segmentation, answer.slot_ids)
        summary["results"] += 1
        if trajectory is not None and geometry is not None:
            trajectory.add(answer, areas, geometry)
    elif isinstance(answer, FrameDropped):
        summary["dropped"] += 1
        line |= {"outcome": "dropped", "reason": answer.reason.name, "message": answer.message}
        if trajectory is not None:
            trajectory.add_missing(answer.frame_index, frame_dropped(answer.reason))
    elif isinstance(answer, FrameError):
        summary["errors"] += 1
        line |= {"outcome": "error", "code": answer.code.name, "message": answer.message}
        if trajectory is not None:
            trajectory.add_missing(answer.frame_index, frame_refused(answer.code))
    summary["frames"] += 1
    if out is not None:
        _write_line(out, line)


def _write_line(out: TextIO, line: dict[str, Any]) -> None:
    """Write ``line`` to ``out`` as one JSON line.

    Raises:
        OSError: it could not be written (a full disk), naming the file.
    """
    try:
        out.write(json.dumps(line) + "\n")
    except OSError as error:  # a full disk: name the file, which a failed write() leaves out
        if error.filename is not None or out is sys.stdout:
            raise
        raise OSError(error.errno, error.strerror or str(error), getattr(out, "name", None)) from error


class JsonLines:
    """Where ``--jsonl`` lines go: nowhere, stdout (``-``) or a file opened on demand."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: TextIO | None = None

    def open(self) -> TextIO | None:
        """Open (truncating a file) and return the sink; ``None`` when no ``--jsonl`` was given."""
        if self.path is None:
            return None
        if str(self.path) == "-":
            return sys.stdout
        if self._file is None:
            self._file = self.path.open("w", buffering=1)  # line-buffered: a crash keeps every line written
        return self._file

    def close(self) -> None:
        """Close the file, if one was opened.

        Raises:
            OSError: the last lines could not be written (a full disk), naming the file.
        """
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from error
