"""Where training metrics go: JSON lines (always) and TensorBoard event files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any

from training.checkpoint import cannot_write

METRICS_FILE = "metrics.jsonl"
"""The run directory's JSON-lines metric log."""


class MetricSinks:
    """Appends metric records to ``metrics.jsonl`` and mirrors scalars to TensorBoard under ``tensorboard/``.

    Args:
        run_dir: the run directory.
        start_step: the step the run continues from (0 for a fresh run). Records of later steps, written by a run
            that was stopped after its last checkpoint, are dropped from both sinks, so a resumed run logs each
            step once; a run from step 0 drops every record (an attempt killed before its first checkpoint).
    """

    def __init__(self, run_dir: Path, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        path = run_dir / METRICS_FILE
        # A run from step 0 logs everything anew: what is there came from an attempt killed before its first
        # checkpoint (its step-0 evaluation included). A resumed run keeps the records up to its checkpoint's step.
        keep_until = start_step if start_step > 0 else -1
        if path.is_file():
            _drop_records_after(path, keep_until)
        self.jsonl = path.open("a", encoding="utf-8")
        self._failed = False  # a write failed: close() does not raise the same error again
        self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=keep_until + 1)

    def write(self, step: int, kind: str, values: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        """Record ``values`` (floats, ints, strings, None) for ``step`` under ``kind`` (``train``, ``eval``); the
        numbers among them also go to TensorBoard. ``settings`` (how the values were measured, such as an
        evaluation's frame fit) go to the JSON line only.

        Raises:
            OSError: the line cannot be written (a full disk: :func:`~training.checkpoint.cannot_write`, naming the
                run folder).
        """
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        try:
            self.jsonl.write(json.dumps({"step": step, "kind": kind, **clean, **(settings or {})}) + "\n")
            self.jsonl.flush()
        except OSError as error:
            self._failed = True
            raise cannot_write(f"the metrics ({METRICS_FILE})", self.run_dir, error) from error
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.tensorboard.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Flush and close both sinks (TensorBoard's too when the JSON lines cannot be flushed).

        Raises:
            OSError: the JSON lines cannot be flushed (:func:`~training.checkpoint.cannot_write`), unless a
                :meth:`write` already failed so: the run stops with that first error, not this repeat of it.
        """
        try:
            self.jsonl.close()
        except OSError as error:
            if not self._failed:
                raise cannot_write(f"the metrics ({METRICS_FILE})", self.run_dir, error) from error
        finally:
            self.tensorboard.close()

    def __enter__(self) -> MetricSinks:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrite the JSON-lines file ``path`` without the records of steps after ``step`` (atomically).

    Lines that are not JSON (a record cut off when the run was killed) are dropped too.
    """
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if (record := parsed_line(line)) is not None and record.get("step", 0) <= step]
    if len(kept) == len(lines):
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(kept), encoding="utf-8")
    temporary.replace(path)


def parsed_line(line: str) -> dict[str, Any] | None:
    """The JSON object on ``line``, or None for a blank, cut-off or non-object line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
