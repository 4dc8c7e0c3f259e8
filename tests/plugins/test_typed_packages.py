"""Every package the distribution installs carries a ``py.typed`` marker, and the package data ships it: without
it, ``mypy`` in a project that uses slotstream skips the package's type hints (``import-untyped``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_top_level_package_is_marked_typed_and_ships_the_marker() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    included = setuptools["packages"]["find"]["include"]
    top_level = sorted({pattern.split(".")[0].rstrip("*") for pattern in included})
    assert {"plugins", "service", "training", "downstream"} <= set(top_level)
    assert [name for name in top_level if not (REPO / name / "py.typed").is_file()] == []
    assert "py.typed" in setuptools["package-data"]["*"]
