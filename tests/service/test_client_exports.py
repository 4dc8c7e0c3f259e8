"""``service.client`` exports every slotstream type its public API names, so a caller can annotate what a call
returns or takes (``StreamOpened`` from ``ClientStream.reconnect``, ``ModelCard`` from ``Client.describe``...)
without reaching into the package's private modules."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Iterator
from typing import Any

import service.client
from service.client import Client

_TYPE_CHECKING_NAMES = {"Client": Client}
"""Names that modules of the client import only for annotations (``if TYPE_CHECKING:``)."""


def _hints(target: Any) -> dict[str, Any]:
    """The resolved annotations of a function or a class's fields."""
    return typing.get_type_hints(target, localns=_TYPE_CHECKING_NAMES)


def _classes(annotation: Any) -> Iterator[type]:
    """Every class an annotation names, inside unions, optionals and generics (``list[FrameResponse | ...]``)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _classes(argument)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        yield origin


def _in_function(function: Any, label: str) -> Iterator[tuple[str, type]]:
    """The classes named in ``function``'s parameters and result, each with where: ``label(parameter)`` or
    ``label -> result``."""
    for name, annotation in _hints(function).items():
        where = f"{label} -> result" if name == "return" else f"{label}({name})"
        for cls in _classes(annotation):
            yield where, cls


def _named_by(owner: Any) -> Iterator[tuple[str, type]]:
    """The classes named in ``owner``'s public signature: a function's parameters and result; a class's public
    methods and properties (and ``__init__``, but a dataclass's generated one: its fields instead)."""
    if inspect.isfunction(owner):
        yield from _in_function(owner, owner.__name__)
        return
    if dataclasses.is_dataclass(owner):
        for name, annotation in _hints(owner).items():
            for cls in _classes(annotation):
                yield f"{owner.__name__}.{name}", cls
    for name, member in vars(owner).items():
        if name.startswith("_") and (name != "__init__" or dataclasses.is_dataclass(owner)):
            continue
        function = member.fget if isinstance(member, property) else member
        if inspect.isfunction(function):
            yield from _in_function(function, f"{owner.__name__}.{name}")


def _public_types() -> dict[type, str]:
    """Every slotstream class reachable from ``service.client.__all__`` through public signatures and fields,
    with where it was first met."""
    found: dict[type, str] = {}
    pending = [getattr(service.client, name) for name in service.client.__all__]
    pending = [item for item in pending if inspect.isclass(item) or inspect.isfunction(item)]
    seen: set[Any] = set()
    while pending:
        owner = pending.pop()
        if owner in seen:
            continue
        seen.add(owner)
        for where, cls in _named_by(owner):
            if cls.__module__.split(".")[0] == "service" and cls not in found:
                found[cls] = where
                pending.append(cls)
    return found


def test_every_slotstream_type_in_the_public_client_api_is_exported():
    exported = {getattr(service.client, name) for name in service.client.__all__}
    found = _public_types()
    missing = {f"{cls.__name__} (in {where})" for cls, where in found.items() if cls not in exported}
    assert not missing, f"named in the public API but not exported by service.client: {sorted(missing)}"
    assert {"StreamOpened", "ModelCard", "EncodedImage", "LatencyBreakdown"} <= {cls.__name__ for cls in found}


def test_the_walk_reaches_the_types_it_is_meant_to_check():
    """The check above is only as good as its walk: the types reached through signatures, unions, generics and
    dataclass fields are the ones expected, so a walk that silently finds nothing cannot pass it."""
    found = {cls.__name__: where for cls, where in _public_types().items()}
    assert found["StreamOpened"] == "ClientStream.reconnect -> result", found
    assert found["ModelCard"] == "Client.describe -> result", found
    assert found["LatencyBreakdown"] == "FrameResult.latency", found
    assert found["OpenKind"] == "StreamOpened.kind", found
    assert "EncodedImage" in found and "ImageEncoding" in found, found
