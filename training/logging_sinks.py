"""Where training metrics go: JSON lines (always) and TensorBoard event files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any


class MetricSinks:
    """Appends metric records to ``metrics.jsonl`` and mirrors scalars to TensorBoard under ``tensorboard/``."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.jsonl = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")
        self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, step: int, kind: str, values: dict[str, Any]) -> None:
        """Record ``values`` (floats, ints, strings, None) for ``step`` under ``kind`` (``train``, ``eval``)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        self.jsonl.write(json.dumps({"step": step, "kind": kind, **clean}) + "\n")
        self.jsonl.flush()
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.tensorboard.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Flush and close both sinks."""
        self.jsonl.close()
        self.tensorboard.close()

    def __enter__(self) -> MetricSinks:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
