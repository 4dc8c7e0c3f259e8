"""The scripts under deploy/, loaded as modules for tests (they are not part of a package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_freeze_constraints() -> ModuleType:
    """``deploy/freeze_constraints.py`` as a module."""
    spec = importlib.util.spec_from_file_location("freeze_constraints", REPO / "deploy" / "freeze_constraints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
