"""Reading ``manifest.json``'s objects into the records of :mod:`service.backends.manifest_records`.

Each function takes one JSON value (or the object holding it) and returns it checked and typed, or raises
:class:`~service.backends.manifest_records.ManifestError` naming the value's place in the manifest.
:meth:`service.backends.manifest.Manifest.from_json` puts them together. Keys this version does not know are
ignored in every object, and a field with a default may be missing (the compatibility policy in
:mod:`service.backends.manifest`); a field without one may not.

Only the standard library is imported here (and :mod:`plugins.frame_fit` and the records).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from plugins.frame_fit import FRAME_FITS
from service.backends.manifest_records import (
    PRECISIONS,
    Float64Reference,
    GraphSpec,
    InputSpec,
    ManifestError,
    ParityReport,
    TensorSpec,
)


def known_fields(cls: type[Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``raw`` that name a field of the dataclass ``cls``: those a newer exporter adds are left out
    (the compatibility policy in :mod:`service.backends.manifest`)."""
    known = {spec.name for spec in dataclasses.fields(cls)}
    return {key: value for key, value in raw.items() if key in known}


def required_fields(cls: type[Any]) -> list[str]:
    """The fields of the dataclass ``cls`` without a default: those every manifest has."""
    return [
        spec.name
        for spec in dataclasses.fields(cls)
        if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    ]


def require(raw: Any, names: list[str], where: str) -> dict[str, Any]:
    """``raw``, checked to be an object holding every key of ``names``.

    Args:
        raw: a JSON object of the manifest.
        names: the keys it must hold.
        where: its dotted path in the manifest (``""`` for the top level), for the message.

    Raises:
        ManifestError: ``raw`` is not an object, or lacks a key (the message names the first, with its path).
    """
    if not isinstance(raw, dict):
        raise ManifestError(f"malformed manifest: {where or 'the manifest'} must be an object, got {raw!r}")
    missing = [name for name in names if name not in raw]
    if missing:
        fields = ", ".join(repr(f"{where}.{name}" if where else name) for name in missing)
        plural, it = ("s", "them") if len(missing) > 1 else ("", "it")
        raise ManifestError(
            f"missing field{plural} {fields}: every manifest python -m training.export writes has {it}; re-run "
            f"python -m training.export (or restore {it})"
        )
    return raw


def parity_reports(raw: dict[str, Any]) -> dict[str, ParityReport]:
    """The parity records. Fields this version does not know are ignored (a newer exporter's additions); a
    record without a field this version needs is an error, since a backend may refuse to serve on its result.
    Fields with a default (``build``) are optional: older exports lack them."""
    required = set(required_fields(ParityReport))
    reports = {}
    for name, report in raw.items():
        missing = sorted(required - set(report))
        if missing:
            raise ManifestError(
                f"the {name!r} parity record lacks {', '.join(missing)}; re-run python -m training.export"
            )
        if not isinstance(report.get("build", {}), dict):
            raise ManifestError(f"the {name!r} parity record's build must be an object, got {report['build']!r}")
        known = known_fields(ParityReport, report)
        known["float64_reference"] = _float64_reference(report.get("float64_reference"), name)
        reports[name] = ParityReport(**known)
    return reports


def _float64_reference(raw: Any, name: str) -> Float64Reference | None:
    """The ``float64_reference`` object of the parity record ``name`` (``None``: null or absent); keys this
    version does not know are ignored.

    Raises:
        ManifestError: it is neither an object nor null, or lacks a field.
    """
    if raw is None:
        return None
    where = f"parity.{name}.float64_reference"
    return Float64Reference(**known_fields(Float64Reference, require(raw, required_fields(Float64Reference), where)))


def json_object(value: Any, key: str) -> dict[str, Any]:
    """A copy of ``value``, checked to be an object; ``key`` names it in the message."""
    if not isinstance(value, dict):
        raise ManifestError(f"{key} must be an object, got {value!r}")
    return dict(value)


def string_list(value: Any, key: str) -> list[str]:
    """A copy of ``value``, checked to be a list of strings; ``key`` names it in the message."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ManifestError(f"{key} must be a list of strings, got {value!r}")
    return list(value)


def positive_int(raw: dict[str, Any], key: str) -> int:
    """``raw[key]``, checked to be a whole number >= 1 (not a bool)."""
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(f"{key} must be a whole number >= 1, got {value!r}")
    return value


def int_pair(value: Any, key: str) -> tuple[int, int]:
    """``value``, checked to be a list of two whole numbers >= 1, as a tuple; ``key`` names it in the message."""
    if not isinstance(value, list) or len(value) != 2:
        raise ManifestError(f"{key} must be a list of two whole numbers, got {value!r}")
    first, second = (positive_int({key: item}, key) for item in value)
    return first, second


def precision(value: Any) -> str:
    """``value``, checked to be one of :data:`~service.backends.manifest_records.PRECISIONS`."""
    if value not in PRECISIONS:
        raise ManifestError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return str(value)


def input_spec(raw: dict[str, Any]) -> InputSpec:
    """The ``input`` object; keys this version does not know are ignored (a newer exporter's additions)."""
    require(raw, required_fields(InputSpec), "input")
    low, high = raw.get("value_range", (0.0, 1.0))
    fit = raw.get("frame_fit")
    if fit is not None and fit not in FRAME_FITS:
        raise ManifestError(f"input.frame_fit must be one of {', '.join(FRAME_FITS)} or null, got {fit!r}")
    return InputSpec(**{**known_fields(InputSpec, raw), "value_range": (float(low), float(high))})


def graph_spec(raw: dict[str, Any], where: str) -> GraphSpec:
    """The graph object at ``where`` (``graphs.<name>``); keys this version does not know are ignored. Its
    ``file`` is checked by :func:`graph_file`."""
    require(raw, required_fields(GraphSpec), where)
    return GraphSpec(
        file=graph_file(raw["file"], f"{where}.file"),
        sha256=str(raw["sha256"]),
        inputs=[_tensor_spec(spec, f"{where}.inputs[{index}]") for index, spec in enumerate(raw["inputs"])],
        outputs=[_tensor_spec(spec, f"{where}.outputs[{index}]") for index, spec in enumerate(raw["outputs"])],
        operators={str(k): int(v) for k, v in raw["operators"].items()},
    )


def graph_file(value: Any, key: str) -> str:
    """``value``, checked to be a bare file name: the backends open it inside the export directory, so it holds no
    path separator (``/`` or ``\\``; an absolute path has one) and no NUL, and is not empty, ``.`` or ``..``. A
    manifest that names ``../x.onnx`` or ``/tmp/x.onnx`` would have a server load a graph from outside the
    directory; ``key`` (``graphs.step.file``) names the field in the message."""
    if not isinstance(value, str) or value in ("", ".", "..") or any(part in value for part in ("/", "\\", "\0")):
        raise ManifestError(
            f"{key} must be the name of a file in the export directory, without a path (no '/' or '\\', not '.' or "
            f"'..'), got {value!r}; re-run python -m training.export"
        )
    return value


def _tensor_spec(raw: Any, where: str) -> TensorSpec:
    """The tensor object at ``where``; keys this version does not know are ignored."""
    return TensorSpec(**known_fields(TensorSpec, require(raw, required_fields(TensorSpec), where)))
