"""``plugins.files.write_atomically`` writes through a hidden temporary twin of the file, whose name repeats the
file's: for a name near the file system's 255-byte limit the twin's name was longer than the limit, and a long run
(an hour of slots, a whole video's extraction) failed at its very end, after all the work."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.files import TEMPORARY_NAME_BYTES, temporary_prefix, write_atomically


@pytest.mark.parametrize("name", ["a" * 251 + ".npz", "a" + "é" * 125 + ".npz", "short.json"])
def test_a_file_whose_name_the_file_system_takes_is_written(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    assert len(name.encode()) <= 255
    write_atomically(target, lambda temporary: temporary.write_bytes(b"content"))
    assert target.read_bytes() == b"content"
    assert [path.name for path in tmp_path.iterdir()] == [name], "no temporary twin is left"


def test_the_prefix_keeps_short_names_whole_and_cuts_long_ones_to_the_bound() -> None:
    assert temporary_prefix("slots.npz") == ".slots.npz."
    long = "b" * 300
    assert temporary_prefix(long) == "." + "b" * TEMPORARY_NAME_BYTES + "."


def test_an_output_link_is_written_through_and_a_model_files_link_is_replaced(tmp_path: Path) -> None:
    """``--slots latest.npz`` pointing at a file elsewhere: the rename replaced the link with a file of its own and
    left the target stale, where ``--jsonl`` and ``--out`` write through theirs. A model folder's linked files (a
    shared cache's, a DVC checkout's) and a shared engine cache are still replaced, never written through."""
    (tmp_path / "target").mkdir()
    target = tmp_path / "target" / "slots.npz"
    target.write_bytes(b"old")
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    write_atomically(link, lambda temporary: temporary.write_bytes(b"new"), through_links=True)
    assert link.is_symlink() and target.read_bytes() == b"new"
    write_atomically(link, lambda temporary: temporary.write_bytes(b"own"))
    assert not link.is_symlink() and link.read_bytes() == b"own" and target.read_bytes() == b"new"


def test_a_long_name_is_cut_between_characters() -> None:
    """Cut at a byte, a character of several bytes split into an invalid name (Windows refuses one outright)."""
    prefix = temporary_prefix("模" * 70 + ".npz")
    assert prefix.encode("utf-8") and len(prefix.encode()) <= TEMPORARY_NAME_BYTES + 2
