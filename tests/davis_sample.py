"""Where the tests find the real DAVIS 2016 sample, which the tests that read it need (they skip without it).

The sample is looked for at ``$SLOTSTREAM_DAVIS_ROOT`` when that is set (there alone), else at
``shared/data/davis2016`` inside the repository (where a copy of the working tree may carry ``shared/``), else
beside the repository (``../shared/data/davis2016``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENT_VARIABLE = "SLOTSTREAM_DAVIS_ROOT"
SAMPLE = Path("shared") / "data" / "davis2016"


def davis_candidates(environ: Mapping[str, str] | None = None, repo: Path = REPO) -> list[Path]:
    """The places looked at, in order: ``$SLOTSTREAM_DAVIS_ROOT`` alone when set (and not empty), else the
    repository's ``shared/`` then the one beside it."""
    environ = os.environ if environ is None else environ
    if environ.get(ENVIRONMENT_VARIABLE):
        return [Path(environ[ENVIRONMENT_VARIABLE])]
    return [repo / SAMPLE, repo.parent / SAMPLE]


def find_davis_root(environ: Mapping[str, str] | None = None, repo: Path = REPO) -> Path | None:
    """The first of :func:`davis_candidates` that is a folder, or ``None``."""
    return next((path for path in davis_candidates(environ, repo) if path.is_dir()), None)


def _missing_reason() -> str:
    places = " or ".join(str(path) for path in davis_candidates())
    return f"DAVIS 2016 sample not found at {places} (set {ENVIRONMENT_VARIABLE})"


#: Marks a test that reads the sample: skipped, saying where the sample was looked for, when there is none.
needs_davis = pytest.mark.skipif(find_davis_root() is None, reason=_missing_reason())


def davis_root() -> Path:
    """The DAVIS 2016 sample's folder, for a test marked :data:`needs_davis` (skips the test when there is none)."""
    root = find_davis_root()
    if root is None:
        pytest.skip(_missing_reason())
    return root
