"""Where the tests that read the real DAVIS 2016 sample look for it: ``$SLOTSTREAM_DAVIS_ROOT`` alone when set, else
``shared/`` inside the repository (a copy of the working tree may carry it there), else ``shared/`` beside it."""

from __future__ import annotations

from pathlib import Path

from davis_sample import find_davis_root


def _sample(base: Path) -> Path:
    path = base / "shared" / "data" / "davis2016"
    path.mkdir(parents=True)
    return path


def test_the_sample_inside_the_repository_is_found_and_comes_first(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    inside = _sample(repo)
    assert find_davis_root({}, repo) == inside
    _sample(tmp_path)  # beside the repository too
    assert find_davis_root({}, repo) == inside


def test_the_sample_beside_the_repository_is_found(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    assert find_davis_root({}, repo) is None
    beside = _sample(tmp_path)
    assert find_davis_root({}, repo) == beside


def test_slotstream_davis_root_is_the_only_place_looked_at_when_set(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    _sample(repo)
    chosen = tmp_path / "elsewhere"
    environ = {"SLOTSTREAM_DAVIS_ROOT": str(chosen)}
    assert find_davis_root(environ, repo) is None, "a missing chosen folder must not fall back to another sample"
    chosen.mkdir()
    assert find_davis_root(environ, repo) == chosen
    assert find_davis_root({"SLOTSTREAM_DAVIS_ROOT": ""}, repo) == repo / "shared" / "data" / "davis2016"
