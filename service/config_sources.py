"""Where a ``ServiceConfig`` comes from: the ``python -m service`` flags and the ``SLOTSTREAM_*`` environment
variables, both made from the config's fields (a field ``some_name`` is ``--some-name`` and ``SLOTSTREAM_SOME_NAME``,
converted to the field's type). :meth:`ServiceConfig.from_sources <service.config.ServiceConfig.from_sources>` puts
them together.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import sys
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from plugins.files import user_path
from service.config import _BACKEND_OPTION_FIELDS, ConfigError, ServiceConfig, flag_name, parse_bool

ENV_PREFIX = "SLOTSTREAM_"

# Logged as the config's own warnings, under the name ``python -m service`` logs the notes it collects with.
_log = logging.getLogger("service.config")


_ALIASES: dict[str, tuple[str, ...]] = {"model_dir": ("--model",)}
"""Extra spellings of some flags (``--model DIR`` is how the rest of the project names a model directory)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m service`` argument parser (every flag defaults to "not given"); its usage line says
    ``slotstream`` when the server was started by that command (the installed entry point)."""
    parser = argparse.ArgumentParser(
        prog="slotstream" if Path(sys.argv[0]).name == "slotstream" else "python -m service",
        description="Serve a slot model over gRPC. Every flag --x-y can also be set as SLOTSTREAM_X_Y "
        "(--no-x-y as SLOTSTREAM_NO_X_Y=1).",
    )
    for spec in dataclasses.fields(ServiceConfig):
        kind = _field_types()[spec.name]
        default = spec.default
        help_text = f"{spec.metadata['help']} (default: {'hidden' if spec.name == 'auth_token' else default})"
        kwargs: dict[str, Any] = {"dest": spec.name, "default": None, "help": help_text}
        if kind is bool:
            parser.add_argument(f"--{flag_name(spec.name)}", action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if "choices" in spec.metadata:
            kwargs["choices"] = spec.metadata["choices"]
        flags = [f"--{flag_name(spec.name)}", *_ALIASES.get(spec.name, ())]
        parser.add_argument(*flags, type=_converter(kind), **kwargs)
    return parser


def environ_values(
    environ: Mapping[str, str], notes: list[str] | None = None, fields: Collection[str] | None = None
) -> dict[str, Any]:
    """The settings that ``SLOTSTREAM_*`` variables of ``environ`` set, by field name, converted to the fields'
    types. Each flag has its variable, extra spellings included (``--model`` is ``SLOTSTREAM_MODEL``), and a
    ``--no-x`` flag is ``SLOTSTREAM_NO_X`` (``SLOTSTREAM_NO_WARMUP=1`` is ``SLOTSTREAM_WARMUP=0``); a path has its
    ``~`` expanded. A ``SLOTSTREAM_*`` variable that looks like a misspelt setting is noted in ``notes`` (logged
    when ``None``) and otherwise ignored.

    Args:
        environ: the environment.
        notes: where misspelt names are noted; ``None``: log them.
        fields: read only the variables of these settings (the others, correct or not, are neither read nor
            noted, except a misspelling of one of these); ``None``: every setting.

    Raises:
        ConfigError: a value does not convert, or two variables set one setting to different values (the message
            lists every such variable).
    """
    types = _field_types()
    every = _variables(types)
    known = every if fields is None else {key: value for key, value in every.items() if value[0] in fields}
    values: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    problems = []
    for key, raw in sorted(environ.items()):
        if key in known:
            name, negated = known[key]
            try:
                value = _converter(types[name])(raw)
            except (TypeError, ValueError) as error:
                problems.append(f"{key}={raw!r}: {error}")
                continue
            value = not value if negated else value
            if name in values and values[name] != value:
                problems.append(f"{key}={raw!r} contradicts {set_by[name]}={environ[set_by[name]]!r}")
                continue
            values[name], set_by[name] = value, key
        elif key not in every and key.startswith(ENV_PREFIX) and (suggestion := _looks_like_ours(key, known)):
            note = f"ignoring unknown variable {key} (did you mean {suggestion}?)"
            if notes is None:
                _log.warning(note)
            else:
                notes.append(note)
    if problems:
        raise ConfigError("invalid environment:\n  " + "\n  ".join(problems))
    return values


def backend_environ_options(backend: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The options of ``backend`` that ``SLOTSTREAM_*`` variables of ``environ`` set, as keyword arguments of its
    options class (those :meth:`ServiceConfig.backend_options <service.config.ServiceConfig.backend_options>`
    gives), read exactly as the server reads them (:func:`environ_values`): what ``OnnxOptions.from_environ`` and
    ``TensorRTOptions.from_environ`` return for library callers that pass no options. Empty for a backend without
    options.

    Raises:
        ConfigError: a variable of these options does not convert, or two set one option to different values.
    """
    options = _BACKEND_OPTION_FIELDS.get(backend, {})
    values = environ_values(environ, fields=set(options.values()))
    return {option: values[name] for option, name in options.items() if name in values}


def _variables(types: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Every ``SLOTSTREAM_*`` variable name: the field it sets and whether it sets the negation (``NO_*``)."""
    known = {ENV_PREFIX + name.upper(): (name, False) for name in types}
    for name, flags in _ALIASES.items():
        known |= {ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper(): (name, False) for flag in flags}
    known |= {ENV_PREFIX + "NO_" + name.upper(): (name, True) for name, kind in types.items() if kind is bool}
    return known


def _looks_like_ours(key: str, known: Mapping[str, object]) -> str | None:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.85)
    return close[0] if close and close[0] != key else None


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(ServiceConfig)
    return {spec.name: _strip_optional(hints[spec.name]) for spec in dataclasses.fields(ServiceConfig)}


def _strip_optional(kind: Any) -> Any:
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return args[0] if typing.get_args(kind) and len(args) == 1 else kind


def _converter(kind: Any) -> Any:
    if kind is bool:
        return parse_bool
    if kind is Path:
        return user_path
    return kind
