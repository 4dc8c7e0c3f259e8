"""Command-line pieces the ``python -m service.bench`` modes share."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def backend_names(text: str) -> list[str]:
    """``"torch, onnx"`` -> ``["torch", "onnx"]`` (blank entries dropped)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def usage_error(mode: str, problems: Sequence[str]) -> int:
    """Print every problem with the flags of ``mode`` (e.g. ``--local``) on one line; returns exit status 2."""
    print(f"python -m service.bench {mode}: " + "; ".join(problems), file=sys.stderr)
    return 2
