"""Export a recurrent slot model to ONNX for the ``onnx`` and ``tensorrt`` serving backends.

``python -m training.export --model DIR --out DIR`` writes ``first_step.onnx``, ``step.onnx`` and
``manifest.json`` (plus a copy of the source model files) after checking the tracing (no tensor value frozen
into a Python constant, :mod:`training.export.tracing`), the graphs with ``onnx.checker``, against TensorRT's
operator support matrix, and for parity with PyTorch on a 50-frame video fed recurrently.

Example:
    >>> from training.export import export_model
    >>> manifest = export_model("runs/tiny/model", "exports/tiny")  # doctest: +SKIP
    >>> manifest.parity["onnxruntime"].passed  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from service.backends.manifest import Manifest, ManifestError, ParityReport, read_manifest
    from training.export.exporter import ExportError, ExportOptions, export_model
    from training.export.graphs import export_graph
    from training.export.operators import (
        TENSORRT_OPS_SOURCE,
        TENSORRT_SUPPORTED_OPS,
        OperatorReport,
        check_operators,
    )
    from training.export.tracing import ALLOWED_CONVERSIONS, FrozenValueError, UnsupportedOperatorError

# Imported on first use, so `python -m training.export` can refuse in one line when the `export` extra is missing
# (its __main__ runs after this package is imported).
_EXPORTS = {
    "ALLOWED_CONVERSIONS": "training.export.tracing",
    "TENSORRT_OPS_SOURCE": "training.export.operators",
    "TENSORRT_SUPPORTED_OPS": "training.export.operators",
    "ExportError": "training.export.exporter",
    "ExportOptions": "training.export.exporter",
    "FrozenValueError": "training.export.tracing",
    "Manifest": "service.backends.manifest",
    "ManifestError": "service.backends.manifest",
    "OperatorReport": "training.export.operators",
    "ParityReport": "service.backends.manifest",
    "UnsupportedOperatorError": "training.export.tracing",
    "check_operators": "training.export.operators",
    "export_graph": "training.export.graphs",
    "export_model": "training.export.exporter",
    "read_manifest": "service.backends.manifest",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "ALLOWED_CONVERSIONS",
    "TENSORRT_OPS_SOURCE",
    "TENSORRT_SUPPORTED_OPS",
    "ExportError",
    "ExportOptions",
    "FrozenValueError",
    "Manifest",
    "ManifestError",
    "OperatorReport",
    "ParityReport",
    "UnsupportedOperatorError",
    "check_operators",
    "export_graph",
    "export_model",
    "read_manifest",
]
