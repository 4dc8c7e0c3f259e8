"""deploy/freeze_constraints.py: the runtime closure it pins, and whether deploy/constraints.txt is what it writes.

The constraints are meant to be the versions the test suite passed with, and ``make`` installs the development
environment under them, so the file and the environment running these tests agree; a package upgraded by hand, or a
constraints file not regenerated after an upgrade, fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from deploy_scripts import load_freeze_constraints

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def freeze() -> ModuleType:
    return load_freeze_constraints()


def _distribution(site: Path, name: str, requires: list[str], extras: tuple[str, ...] = ()) -> None:
    """An installed-looking distribution ``name`` 1.0 under ``site``."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    lines += [f"Requires-Dist: {text}" for text in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_an_extra_reached_after_its_package_brings_its_requirements(
    freeze: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project needs A and B, and B needs A[fast]: A's ``fast`` requirements belong to the closure even though A
    was reached first without the extra."""
    _distribution(tmp_path, "fzproject", ["fza", "fzb"])
    _distribution(tmp_path, "fza", ['fzc; extra == "fast"'], extras=("fast",))
    _distribution(tmp_path, "fzb", ["fza[fast]"])
    _distribution(tmp_path, "fzc", [])
    monkeypatch.syspath_prepend(str(tmp_path))
    for order in (("fza", "fzb"), ("fzb", "fza")):
        (tmp_path / "fzproject-1.0.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: fzproject\nVersion: 1.0\n" + "".join(f"Requires-Dist: {n}\n" for n in order)
        )
        assert sorted(freeze.runtime_closure("fzproject", ())) == ["fza", "fzb", "fzc"], order


def test_constraints_are_the_tested_environment(freeze: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/constraints.txt is exactly what freeze_constraints.py writes for the environment running the tests."""
    assert freeze.main() == 0
    written = capsys.readouterr().out.splitlines()
    committed = (REPO / "deploy" / "constraints.txt").read_text().splitlines()
    changed = sorted(set(written) ^ set(committed))
    assert not changed, (
        f"deploy/constraints.txt and this environment differ in {changed} ({sys.prefix}): install with "
        "`make` (which applies the constraints) or, after an upgrade whose tests pass, regenerate it with "
        "`.venv/bin/python deploy/freeze_constraints.py > deploy/constraints.txt`"
    )
