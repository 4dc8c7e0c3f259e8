"""The exception every failed export check raises (its own module, so the graph code and the exporter share it)."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An export failed a check; the message says which check and by how much."""
