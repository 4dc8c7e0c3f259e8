"""Latency summaries for the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize(latencies_ms: Sequence[float]) -> dict[str, float]:
    """``count``, ``mean``, ``p50``, ``p95``, ``p99`` and ``max`` of latencies in milliseconds."""
    if not latencies_ms:
        return {"count": 0}
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "count": int(values.size),
        "mean": round(float(values.mean()), 3),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(values.max()), 3),
    }
