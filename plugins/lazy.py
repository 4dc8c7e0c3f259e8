"""Package attributes imported on first use (PEP 562), so importing a package, or any light module in it, does not
import its heavy modules (torch, the server) until one of their names is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: Mapping[str, object]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's module-level ``__getattr__`` and ``__dir__`` for ``exports``.

    Args:
        package: the package's name, for the error of a missing attribute.
        exports: public name -> the module that defines it.
        namespace: the package's ``globals()``, whose names ``__dir__`` lists too.

    Returns:
        ``(__getattr__, __dir__)``: ``__getattr__(name)`` imports ``exports[name]`` and returns its attribute
        (the package's globals cache nothing: the module system caches the import), raising ``AttributeError``
        for a name not exported; ``__dir__()`` lists the package's own names (``__all__``, loaded submodules...)
        and the exported ones.
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
