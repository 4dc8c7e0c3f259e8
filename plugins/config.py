"""How a model names its components: ``ComponentSpec`` and its JSON form."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True)
class ComponentSpec:
    """A registry name plus the component's own constructor arguments.

    JSON form: ``{"name": "slot_attention", "kwargs": {"epsilon": 1e-5}}``; the string ``"slot_attention"``
    is short for no kwargs.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: ComponentSpecLike) -> ComponentSpec:
        """Accept a spec, a bare name, or the JSON mapping form.

        Raises:
            TypeError: for anything else, or a mapping with keys other than ``name`` and ``kwargs``.
        """
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            extra = set(value) - {"name", "kwargs"}
            if "name" not in value or extra:
                raise TypeError(
                    f"a component spec mapping has the keys 'name' and optionally 'kwargs'; got {sorted(value)}"
                )
            spec = cls(str(value["name"]), dict(value.get("kwargs", {})))
            spec.check_jsonable()
            return spec
        raise TypeError(f"cannot read a component spec from {value!r}")

    def check_jsonable(self) -> None:
        """Check that the kwargs can be saved in ``config.json`` (at build time, not after a training run).

        Raises:
            TypeError: a value is not a JSON value (paths are turned into strings, tuples into lists).
        """
        try:
            json.dumps(_jsonable(self.kwargs))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"component {self.name!r}: its kwargs are saved in config.json, so they must be JSON values "
                f"(numbers, strings, lists, mappings): {error}"
            ) from error

    def to_json(self) -> dict[str, Any]:
        """The JSON mapping form, with tuples turned into lists."""
        return {"name": self.name, "kwargs": _jsonable(self.kwargs)}


ComponentSpecLike: TypeAlias = "ComponentSpec | str | Mapping[str, Any]"


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
