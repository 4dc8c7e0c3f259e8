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

from service.backends.manifest import Manifest, ManifestError, ParityReport, read_manifest
from training.export.exporter import ExportError, ExportOptions, export_model
from training.export.graphs import export_graph
from training.export.operators import TENSORRT_OPS_SOURCE, TENSORRT_SUPPORTED_OPS, OperatorReport, check_operators
from training.export.tracing import ALLOWED_CONVERSIONS, FrozenValueError, UnsupportedOperatorError

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
